"""Backtest report: summary.json, PNG plots and a self-contained report.html."""

from __future__ import annotations

import base64
import functools
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from orchestrator.backtest.ledger_csv import DR_COLUMNS, write_ledgers_csv
from orchestrator.backtest.runner import BacktestResult, ignored_label

MODE_COLORS = {"idle": "#9e9e9e", "mine": "#f7931a", "ai": "#3f51b5"}


def _dates(times_s: np.ndarray) -> np.ndarray:
    return times_s.astype("datetime64[s]")


def _date_axis(ax: Any) -> None:
    """Ticks that suit the period shown: hours for a day, days for a month, months for
    years; each label says only what changed."""
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def best_policy(result: BacktestResult) -> str:
    """The non-baseline policy with the highest net (or the best run when all are baselines)."""
    runs = [r for r in result.runs if not r.baseline] or result.runs
    return max(runs, key=lambda r: float(r.ledger.net.sum())).name


def plot_cumulative_net(result: BacktestResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5))
    t = _dates(result.known.times_s)
    for run in result.runs:
        style = "--" if run.baseline else "-"
        ax.plot(t, np.cumsum(run.ledger.net) / 1e3, style, label=run.name, linewidth=1.4)
    if result.oracle is not None:
        ax.plot(
            t,
            np.cumsum(result.oracle.net_per_step) / 1e3,
            ":",
            color="black",
            label=f"hindsight optimum (feasible; gap to bound {result.oracle.gap:.2%})",
            linewidth=1.6,
        )
    ax.set_ylabel("cumulative net, thousand USD")
    ax.set_title("Cumulative net profit vs the hindsight oracle")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _date_axis(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_modes(result: BacktestResult, policy: str, path: Path) -> None:
    run = next(r for r in result.runs if r.name == policy)
    fig, ax = plt.subplots(figsize=(10, 4))
    times = result.known.times_s
    modes = run.ledger.modes.astype(np.float64)
    title = f"Nodes per mode over time: {policy}"
    if times.shape[0] > 24 * 60:
        # Hourly switching over years is a blur: show daily means instead.
        day = (times // 86_400).astype(np.int64)
        days, inverse, counts = np.unique(day, return_inverse=True, return_counts=True)
        modes = np.stack(
            [np.bincount(inverse, weights=modes[:, m]) / counts for m in range(3)], axis=1
        )
        times = (days * 86_400.0).astype(np.float64)
        title += " (daily mean)"
    ax.stackplot(
        _dates(times), modes.T, labels=list(MODE_COLORS), colors=list(MODE_COLORS.values()),
        step="post",
    )
    ax.set_ylabel("nodes")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    _date_axis(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_market(result: BacktestResult, path: Path) -> None:
    fig, ax1 = plt.subplots(figsize=(10, 4))
    t = _dates(result.realized.times_s)
    ax1.plot(t, result.realized.hashprice_usd_ph_day, color="#f7931a", linewidth=1.0)
    ax1.set_ylabel("hashprice, USD/PH/day", color="#f7931a")
    ax2 = ax1.twinx()
    ax2.plot(t, result.realized.power_usd_mwh[:, 0], color="#1e88e5", linewidth=0.4, alpha=0.7)
    ax2.set_ylabel("power price, USD/MWh", color="#1e88e5")
    hi = float(np.nanpercentile(result.realized.power_usd_mwh[:, 0], 99.5))
    ax2.set_ylim(min(0.0, float(np.nanmin(result.realized.power_usd_mwh[:, 0]))), max(hi, 1.0))
    ax1.set_title("Market: hashprice and power price (top 0.5% of power prices clipped)")
    _date_axis(ax1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_switches_per_node(result: BacktestResult, path: Path) -> None:
    """How the switches spread over the fleet, per policy: a few nodes switching all the
    time wear out; the same count spread thin does not."""
    runs = [r for r in result.runs if not r.baseline] or result.runs
    fig, ax = plt.subplots(figsize=(10, 4))
    top = max(int(r.ledger.node_switches.max(initial=0)) for r in runs)
    bins = [k - 0.5 for k in range(top + 2)]
    for run in runs:
        ax.hist(run.ledger.node_switches, bins=bins, histtype="step", linewidth=1.4,
                label=run.name)
    ax.set_xlabel("switches per node over the period")
    ax.set_ylabel("nodes")
    ax.set_title("Switches per node")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_ledger_csv(result: BacktestResult, path: Path) -> None:
    """Every run's ledger, one row per run and step (UTC times), for spreadsheets."""
    write_ledgers_csv([(run.name, run.baseline, run.ledger) for run in result.runs], path)


#: What a power contract's programs are worth, as (summary key, label, sign): a charge
#: avoided counts +1 when lower, a credit earned +1 when higher.
PROGRAM_LINES = (("demand_charge_usd", "demand charges avoided", -1),
                 ("coincident_peak_charge_usd", "coincident-peak charges avoided", -1),
                 ("dr_shortfall_penalty_usd", "demand-response penalties avoided", -1),
                 ("dr_availability_payment_usd", "availability payments earned", 1),
                 ("dr_energy_payment_usd", "demand-response energy payments earned", 1),
                 ("curtailment_credit_usd", "curtailment credits earned", 1),
                 ("resale_revenue_usd", "resale earned", 1))


def programs_gained(policies: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per policy run both ways (`--ignore-programs`): what deciding with the contract's
    programs in sight changed against the same policy deciding without them, USD (charges
    avoided and credits earned, positive when the program-aware run did better, and the
    difference in net)."""
    out = {}
    for name, run in policies.items():
        ignored = policies.get(ignored_label(name))
        if ignored is None or "coincident_peak_charge_usd" not in run:
            continue
        # + 0.0: a zero difference reads 0, not -0.
        gained = {key: sign * (run[key] - ignored[key]) + 0.0 for key, _, sign in PROGRAM_LINES
                  if key in run and key in ignored}
        gained["net_usd"] = run["net_usd"] - ignored["net_usd"] + 0.0
        out[name] = gained
    return out


def programs_text(name: str, gained: dict[str, float]) -> str:
    parts = [f"{label} {gained[key]:,.0f} USD" for key, label, _ in PROGRAM_LINES
             if key in gained]
    return (f"{name} against {ignored_label(name)}: " + ", ".join(parts)
            + f"; net {gained['net_usd']:+,.0f} USD")


AVOIDED_AGAINST = "always-mine"


def contract_avoided(policies: dict[str, Any], best: str) -> dict[str, float] | None:
    """What `best` saved on the power contract against always-mine, USD: the demand
    and coincident-peak charges it avoided and the resale it earned beyond always-mine's,
    and with grid programs the demand-response penalties avoided and energy payments and
    curtailment credits earned (None without a contract, an always-mine run, or when
    `best` is always-mine)."""
    base, run = policies.get(AVOIDED_AGAINST), policies.get(best)
    if base is None or run is None or best == AVOIDED_AGAINST or (
            "coincident_peak_charge_usd" not in run):
        return None
    return {
        "demand_charge_usd": base["demand_charge_usd"] - run["demand_charge_usd"],
        "coincident_peak_charge_usd": (base["coincident_peak_charge_usd"]
                                       - run["coincident_peak_charge_usd"]),
        "resale_revenue_usd": run["resale_revenue_usd"] - base["resale_revenue_usd"],
        # Grid programs, where a site has one: penalties avoided, payments earned.
        **{key: sign * (run[key] - base[key]) + 0.0 for key, _, sign in PROGRAM_LINES
           if key in _VERSUS_PROGRAMS and key in run and key in base},
    }


def avoided_text(best: str, avoided: dict[str, float]) -> str:
    return (f"{best} against {AVOIDED_AGAINST}: coincident-peak charges avoided "
            f"{avoided['coincident_peak_charge_usd']:,.0f} USD, demand charges avoided "
            f"{avoided['demand_charge_usd']:,.0f} USD, resale earned "
            f"{avoided['resale_revenue_usd']:,.0f} USD more"
            + "".join(f", {label} {avoided[key]:,.0f} USD" for key, label, _ in PROGRAM_LINES
                      if key in _VERSUS_PROGRAMS and key in avoided))


#: The program lines the comparison against always-mine adds (availability is paid the
#: same whatever the policy does).
_VERSUS_PROGRAMS = ("dr_shortfall_penalty_usd", "dr_energy_payment_usd", "curtailment_credit_usd")


def _contract_section(policies: dict[str, Any], best: str) -> str:
    """The power contract's lines per policy (empty when no site has a contract)."""
    rows = []
    for name, p in policies.items():
        if "coincident_peak_charge_usd" not in p:
            continue
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{p['energy_cost_usd']:,.0f}</td>"
            f"<td>{p['contract_unused_energy_usd']:,.0f}</td>"
            f"<td>{p['resale_revenue_usd']:,.0f}</td><td>{p['demand_charge_usd']:,.0f}</td>"
            f"<td>{p['coincident_peak_charge_usd']:,.0f}</td>"
            + ("".join(f"<td>{p.get(key, 0.0):,.0f}</td>" for key in DR_COLUMNS)
               if any("dr_availability_payment_usd" in q for q in policies.values()) else "")
            + "</tr>")
    if not rows:
        return ""
    avoided = contract_avoided(policies, best)
    versus = "" if avoided is None else f"<p>{html.escape(avoided_text(best, avoided))}.</p>"
    versus += "".join(f"<p>{html.escape(programs_text(name, gained))}.</p>"
                      for name, gained in programs_gained(policies).items())
    dr = any("dr_availability_payment_usd" in p for p in policies.values())
    dr_head = ("<th>DR availability USD</th><th>DR energy USD</th><th>DR shortfall USD</th>"
               "<th>curtailment credits USD</th>" if dr else "")
    return (f"<h2>Power contract</h2>{versus}<p>Energy at the contract price (the power column "
            "above), contracted energy paid but not used, its resale at spot, demand "
            "charges on the realised monthly peak and coincident-peak charges on the "
            "realised draw in the alerted intervals; net USD includes them all. The "
            "hindsight oracle plans at the contract's prices and event caps; its bound "
            "counts every line (docs/contracts.md).</p><table><thead><tr><th>policy</th>"
            "<th>energy USD</th>"
            "<th>unused contracted energy USD</th><th>resale revenue USD</th>"
            "<th>demand charges USD</th><th>coincident-peak charges USD</th>"
            f"{dr_head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _detail_rows(policies: dict[str, Any]) -> tuple[str, str]:
    """The per-policy detail table and the per-month net table, as HTML rows."""
    detail, months = [], []
    all_months = sorted({m for p in policies.values() for m in p["analysis"]["net_by_month_usd"]})
    for name, p in policies.items():
        a = p["analysis"]
        params = ", ".join(f"{k}={v}" for k, v in (p.get("params") or {}).items()) or "defaults"
        holds = p.get("guard_holds") or {}
        top = ", ".join(f"{k.removeprefix('GUARD_').lower()} {v:,}" for k, v in
                        sorted(holds.items(), key=lambda kv: -kv[1])[:3]) or "none"
        detail.append(
            "<tr>"
            f"<td>{html.escape(name)}</td><td>{html.escape(params)}</td>"
            f"<td>{a['max_drawdown_usd']:,.0f}</td>"
            f"<td>{html.escape(a['worst_day'])}: {a['worst_day_usd']:,.0f}</td>"
            f"<td>{a['spike_steps']:,} steps ≥ {a['spike_price_usd_mwh']:,.0f} USD/MWh: "
            f"power {a['spike_power_cost_usd']:,.0f}, net {a['spike_net_usd']:,.0f}</td>"
            f"<td>{a['idle_node_hours']:,.0f}</td>"
            f"<td>{sum(holds.values()):,} ({html.escape(top)})</td>"
            "</tr>"
        )
        cells = "".join(f"<td>{a['net_by_month_usd'].get(m, 0.0):,.0f}</td>" for m in all_months)
        months.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    head = "".join(f"<th>{m}</th>" for m in all_months)
    month_table = (f"<table><thead><tr><th>policy</th>{head}</tr></thead>"
                   f"<tbody>{''.join(months)}</tbody></table>")
    return "".join(detail), month_table


def write_report(result: BacktestResult, out_dir: Path) -> Path:
    """Write summary.json, the plots and report.html into `out_dir`; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    best = best_policy(result)
    plots: dict[str, Callable[[Path], None]] = {
        "cumulative_net.png": lambda p: plot_cumulative_net(result, p),
        "modes_over_time.png": lambda p: plot_modes(result, best, p),
    }
    others = [r.name for r in result.runs if not r.baseline and r.name != best]
    for k, name in enumerate(others):
        plots[f"modes_over_time_{k + 2}.png"] = functools.partial(plot_modes, result, name)
    plots["switches_per_node.png"] = lambda p: plot_switches_per_node(result, p)
    plots["market.png"] = lambda p: plot_market(result, p)
    write_ledger_csv(result, out_dir / "ledger.csv")
    images = []
    for name, draw in plots.items():
        draw(out_dir / name)
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        images.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"></figure>')
    rows = []
    policies = summary["policies"]
    assert isinstance(policies, dict)
    for name, p in policies.items():
        capture = "—" if p["capture_ratio"] is None else f"{p['capture_ratio']:.1%}"
        kind = f"{'baseline' if p['baseline'] else 'policy'}, {html.escape(str(p['guards']))}"
        rows.append(
            "<tr>"
            f"<td>{html.escape(name)}</td><td>{kind}</td>"
            f"<td>{p['revenue_usd']:,.0f}</td><td>{p['power_cost_usd']:,.0f}</td>"
            f"<td>{p['switching_cost_usd']:,.0f}</td><td><b>{p['net_usd']:,.0f}</b></td>"
            f"<td>{p['switches']:,}</td><td>{p['sla_misses']:,}</td><td>{capture}</td>"
            "</tr>"
        )
    oracle = summary["oracle"]
    oracle_line = (
        "No oracle was run."
        if not isinstance(oracle, dict)
        else f"Hindsight optimum: a feasible schedule worth {oracle['feasible_usd']:,.0f} USD"
        f"{' as the simulated site ran it' if oracle.get('on_site_ledger') else ''}; "
        f"no schedule can beat {oracle['bound_usd']:,.0f} USD (gap {oracle['gap']:.2%}, "
        f"{oracle['iterations']} of {oracle['max_iterations']} iterations, tolerance "
        f"{oracle['tolerance']:.2%})."
    )
    period = summary["period"]
    assert isinstance(period, dict)
    detail_rows, month_table = _detail_rows(policies)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hashpivot backtest report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3rem .7rem; text-align: right; }}
td:first-child, th:first-child, td:nth-child(2) {{ text-align: left; }}
tr:nth-child(even) {{ background: #f5f5f5; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>hashpivot backtest</h1>
<p>Period {html.escape(str(period["start"]))} → {html.escape(str(period["end"]))},
{period["steps"]:,} steps of {period["step_s"]:.0f} s; {result.fleet.n:,} nodes.
Best policy: <b>{html.escape(best)}</b>. {oracle_line}
Capture ratio = net profit ÷ the feasible hindsight schedule's net.</p>
<table><thead><tr><th>policy</th><th>kind</th><th>revenue USD</th><th>power USD</th>
<th>switching USD</th><th>net USD</th><th>switches</th><th>SLA misses</th><th>capture</th>
</tr></thead><tbody>{"".join(rows)}</tbody></table>
{_contract_section(policies, best)}
<h2>Risk, parameters and guard interventions</h2>
<table><thead><tr><th>policy</th><th>parameters</th><th>max drawdown USD</th>
<th>worst day, net USD</th><th>power-price spikes</th><th>idle node-hours</th>
<th>guard interventions (node-steps)</th></tr></thead><tbody>{detail_rows}</tbody></table>
<h2>Net USD per month</h2>
{month_table}
<p>Every step of every run: <a href="ledger.csv">ledger.csv</a>.</p>
{"".join(images)}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
