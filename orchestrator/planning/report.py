"""Plan report: summary.json, the NPV-versus-MW frontier as PNG, and a self-contained
report.html (the PNG inlined), like the backtest report."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from orchestrator.planning.run import PlanResult


def plot_frontier(result: PlanResult, path: Path) -> None:
    """NPV against converted MW, one line per scenario, the bootstrap P10-P90 band and
    the recommended size marked."""
    fig, ax = plt.subplots(figsize=(10, 5.5))
    sizes = [s.size_mw for s in result.sizes]
    for sc in result.scenarios:
        by = {o.size_mw: o.npv_usd for o in result.outcomes if o.scenario == sc.name}
        style = "-" if sc.kind == "recorded" else "--"
        ax.plot(sizes, [by[s] / 1e6 for s in sizes], style, marker="o", ms=3, label=sc.name)
    if result.bootstrap:
        lo = [np.percentile(result.bootstrap[s], 10) / 1e6 for s in sizes]
        hi = [np.percentile(result.bootstrap[s], 90) / 1e6 for s in sizes]
        ax.fill_between(sizes, lo, hi, color="grey", alpha=0.25, label="bootstrap P10-P90")
    ax.plot(
        sizes,
        [s.npv_mean / 1e6 for s in result.sizes],
        color="black",
        lw=2.2,
        label="mean over scenarios",
    )
    rec = result.recommendation.size_mw
    ax.axvline(rec, color="#2e7d32", ls=":", lw=1.5, label=f"recommended: {rec:g} MW")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("MW converted to GPU hosting")
    ax.set_ylabel("site NPV, million USD")
    ax.set_title("NPV of the site against the MW converted, per scenario")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _money(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{'−' if x < 0 else ''}${abs(x) / 1e6:,.1f}M"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def write_report(result: PlanResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    png = out_dir / "frontier.png"
    plot_frontier(result, png)
    img = base64.b64encode(png.read_bytes()).decode("ascii")
    rows = []
    for s in result.sizes:
        hp = s.breakeven_hashprice
        rows.append(
            [
                f"{s.size_mw:g}",
                _money(s.npv_mean),
                f"{_money(s.npv_min)} … {_money(s.npv_max)}",
                f"{_money(s.bootstrap_p10)} … {_money(s.bootstrap_p90)}",
                _money(s.delta_npv_mean) if s.size_mw else "—",
                _pct(s.irr_median),
                _num(s.payback_years_median, ".1f"),
                _money(s.revenue_usd_per_year),
                _money(s.value_per_mw),
                _num(s.breakeven_gpu_rent, ".2f"),
                "below 0" if hp is not None and hp < 0 else _num(hp, ".1f"),
                _money(s.capex_usd),
            ]
        )
    sizes_table = _table(
        [
            "MW",
            "mean NPV",
            "NPV range (scenarios)",
            "bootstrap P10 … P90",
            "vs mining",
            "IRR (median)",
            "payback, years",
            "revenue / year",
            "NPV per site MW",
            "break-even rent, USD/GPU-h",
            "break-even hashprice, USD/PH/day",
            "capex",
        ],
        rows,
    )
    scen_table = _table(
        ["scenario", "assumptions"],
        [[s["name"], s["assumptions"]] for s in summary["scenarios"]],
    )
    val: dict[str, Any] = summary["valuations"]
    conv_rows = [[f"{k} MW", _money(v)] for k, v in val["converted_usd_per_mw"].items()]
    val_table = _table(
        ["", "this plan", "quoted"],
        [
            [
                "mining MW (hall kept mining)",
                _money(val["mining_usd_per_mw"]),
                _money(val["quoted_mining_usd_per_mw"]),
            ]
        ]
        + [[f"converted MW, {r[0]}", r[1], _money(val["quoted_ai_usd_per_mw"])] for r in conv_rows],
    )
    rec = result.recommendation
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>hashpivot plan</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
font-size:13px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>Conversion plan: {result.plan.source and html.escape(Path(result.plan.source).name)}</h1>
<h2>Recommended: {rec.size_mw:g} MW</h2><p>{html.escape(rec.why)}</p>
<img src="data:image/png;base64,{img}" alt="NPV frontier">
<h2>Per size</h2>{sizes_table}
<p>NPV is the whole site's over {result.plan.file.financing.horizon_years:g} years at
{result.plan.file.financing.discount_rate:.1%} a year; "vs mining" is the difference with
keeping the hall as it is in the same scenario; IRR and payback are the conversion's own
(its flows minus the kept hall's). Break-even rent and hashprice are first order, on the
first recorded scenario: the price at which converting neither gains nor loses with the
site's decisions held as simulated: converting pays above the break-even rent and below the
break-even hashprice ("below 0": no hashprice, however low, makes it pay).</p>
<h2>Value per MW</h2>{val_table}
<p>A mining MW here is the kept hall's NPV per MW; a converted MW is what its cash flows
are worth before its capex, per MW.</p>
<h2>Scenarios</h2>{scen_table}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
