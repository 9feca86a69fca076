"""Decision quality across sites: every built-in policy and every baseline on every
scenario, under the same guards, against the hindsight oracle's feasible schedule.

Each scenario is one `hashpivot backtest` run (the product's own entry point, with its
report folder); this script only reads each run's `summary.json` and `ledger.csv` back
and prints one table of scenario x policy x capture, with the oracle's bound and gap and
whether the goal holds:

- ASIC-only sites: the best built-in reaches >= 99% of the feasible hindsight optimum;
- mixed sites (ASICs and GPUs under one power cap): >= 97%;
- every site: the best built-in is above every baseline.

Capture is recomputed here from the run's ledger (sum of net USD per policy) over the
oracle's feasible value, so the table cannot drift from what the run recorded.

    python scripts/scenario_table.py                        # bundled sites + examples/scenarios
    python scripts/scenario_table.py examples/scenarios/asic-hall.yaml --from 2025-01-01 \\
        --to 2025-02-01 --json table.json
    python scripts/scenario_table.py --price-known          # + the hour's price known (what-if)
    python scripts/scenario_table.py --no-run               # re-print from reports/scenarios
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILT_INS = ("greedy", "hysteresis", "power-capped", "lookahead", "receding-horizon")
#: The bundled example sites; every file in examples/scenarios/ follows them.
BUNDLED_SITES = (
    "examples/west-texas/site.yaml",
    "examples/mixed-site/site.yaml",
    "examples/gpu-only/site.yaml",
)
#: Goal per site kind: the share of the feasible optimum the best built-in must reach.
GOALS = {"ASIC-only": 0.99, "mixed": 0.97}


@dataclass
class Row:
    policy: str
    baseline: bool
    guards: str
    net_usd: float
    capture: float | None
    ai_revenue_usd: float


@dataclass
class Scenario:
    name: str
    config: str
    kind: str
    period: str
    nodes: int
    feasible_usd: float
    bound_usd: float
    gap: float
    oracle: str
    rows: list[Row] = field(default_factory=list)
    #: AI revenue of the oracle's schedule as the simulated site ran it (None: not given).
    oracle_ai_revenue_usd: float | None = None
    best: str = ""
    best_capture: float | None = None
    #: The best built-in's net over the oracle's bound: a floor on its share of the optimum.
    best_of_bound: float | None = None
    target: float | None = None
    above_baselines: bool = False
    goal_met: bool | None = None
    #: A what-if run (the hour's power price known when deciding): no goal applies.
    diagnostic: bool = False


def scenario_name(config: Path) -> str:
    """The scenario's name: its file name, or its folder's for a `site.yaml`."""
    return config.stem if config.stem != "site" else config.parent.name


def site_kind(config: Path) -> str:
    """ASIC-only, GPU-only or mixed, from the profiles of the site's simulated fleet."""
    from orchestrator.models.build import profile_catalog
    from orchestrator.models.config import load_config

    cfg = load_config(config)
    catalog = profile_catalog(cfg)
    gpu = {catalog[f.profile].gpus > 0 for f in cfg.fleet if f.count > 0}
    return "mixed" if gpu == {True, False} else "GPU-only" if gpu == {True} else "ASIC-only"


def ledger_net(path: Path) -> dict[str, float]:
    """Net USD per policy, summed over the run's ledger."""
    totals: dict[str, float] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            totals[row["policy"]] = totals.get(row["policy"], 0.0) + float(row["net_usd"])
    return totals


def run_scenario(config: Path, out: Path, extra: list[str], *, run: bool = True) -> None:
    """One `hashpivot backtest` of every built-in and baseline, report into `out`."""
    if not run:
        return
    exe = Path(sys.executable).with_name("hashpivot")
    cmd = [str(exe) if exe.exists() else "hashpivot", "backtest", "-c", str(config),
           "--report", str(out), *(a for p in BUILT_INS for a in ("-p", p)), *extra]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{config}: hashpivot backtest failed (exit {done.returncode})")


def price_known_copy(config: Path, out: Path) -> Path:
    """A copy of `config` whose power prices are known when the hour begins (observed lag
    0): the same site and data, with the one-hour wait for real-time prices removed, to
    show how much of a shortfall is the price not being known yet rather than the policy.
    Relative paths are made absolute, since the copy lives elsewhere."""
    import yaml

    doc = yaml.safe_load(config.read_text(encoding="utf-8"))

    def absolute(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if (key == "path" and isinstance(value, str) and ":" not in value
                        and not Path(value).is_absolute()):
                    node[key] = str((config.parent / value).resolve())
                else:
                    absolute(value)
        elif isinstance(node, list):
            for item in node:
                absolute(item)

    absolute(doc)
    for series in doc["market"]["power_usd_mwh"].values():
        if isinstance(series, dict):
            series["observed_lag_s"] = 0
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{scenario_name(config)}-price-known.yaml"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return copy


def read_scenario(config: Path, out: Path, name: str | None = None) -> Scenario:
    """The table's rows for one finished run: capture from its ledger and oracle."""
    if not (out / "summary.json").is_file() or not (out / "ledger.csv").is_file():
        raise SystemExit(f"{config}: no backtest report in {out} (run without --no-run)")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    oracle = summary["oracle"]
    if oracle is None:
        raise SystemExit(f"{config}: the run has no hindsight oracle (baselines were off)")
    net = ledger_net(out / "ledger.csv")
    feasible = float(oracle["feasible_usd"])
    period = summary["period"]
    sc = Scenario(
        name=name or scenario_name(config),
        config=str(config), kind=site_kind(config),
        period=f"{period['start'][:10]} → {period['end'][:10]}",
        nodes=int(summary["fleet"]["nodes"]), feasible_usd=feasible,
        bound_usd=float(oracle["bound_usd"]), gap=float(oracle["gap"]), oracle=oracle["kind"],
        oracle_ai_revenue_usd=oracle.get("ai_revenue_usd"),
    )
    for label, p in summary["policies"].items():
        capture = net[label] / feasible if feasible > 0 else None
        sc.rows.append(Row(label, bool(p["baseline"]), p["guards"], net[label], capture,
                           float(p["ai_revenue_usd"])))
    built = [r for r in sc.rows if not r.baseline]
    base = [r for r in sc.rows if r.baseline]
    best = max(built, key=lambda r: r.net_usd)
    sc.best, sc.best_capture = best.policy, best.capture
    sc.best_of_bound = best.net_usd / sc.bound_usd if sc.bound_usd > 0 else None
    sc.above_baselines = all(best.net_usd > b.net_usd for b in base)
    sc.target = GOALS.get(sc.kind)
    if sc.target is not None:
        sc.goal_met = (best.capture is not None and best.capture >= sc.target
                       and sc.above_baselines)
    else:
        sc.goal_met = sc.above_baselines
    return sc


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.2%}"


def markdown(scenarios: list[Scenario]) -> str:
    """The table of scenario x policy x capture, then one goal line per scenario; what-if
    runs (the hour's power price known) appear as one row and in the goal lines."""
    main = [sc for sc in scenarios if not sc.diagnostic]
    what_if = {sc.name: sc for sc in scenarios if sc.diagnostic}
    twins = [what_if.get(f"{sc.name} (price known)") for sc in main]
    policies: list[str] = []
    for sc in main:
        policies += [r.policy for r in sc.rows if r.policy not in policies]
    head = "| policy | " + " | ".join(sc.name for sc in main) + " |"
    lines = [head, "|---|" + "---:|" * len(main)]
    for name in policies:
        cells = []
        for sc in main:
            row = next((r for r in sc.rows if r.policy == name), None)
            cells.append("" if row is None else _pct(row.capture))
        label = name
        first = next(r for sc in main for r in sc.rows if r.policy == name)
        if first.baseline:
            label = f"{name} (baseline)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| oracle feasible, USD | " + " | ".join(
        f"{sc.feasible_usd:,.0f}" for sc in main) + " |")
    lines.append("| oracle bound (gap) | " + " | ".join(
        f"{sc.bound_usd:,.0f} ({sc.gap:.2%})" for sc in main) + " |")
    # The true optimum lies between the feasible schedule and the bound, so the best
    # built-in's share of the bound is a floor on its share of the optimum.
    lines.append("| best built-in ÷ bound | " + " | ".join(
        _pct(sc.best_of_bound) for sc in main) + " |")
    if any(twins):
        lines.append("| best built-in, hour's price known (what-if) | " + " | ".join(
            "" if t is None else _pct(t.best_capture) for t in twins) + " |")
    lines.append("")
    for sc, twin in zip(main, twins, strict=True):
        guards = sorted({r.guards for r in sc.rows})
        target = ("above every baseline" if sc.target is None
                  else f"≥ {sc.target:.0%} and above every baseline")
        verdict = "met" if sc.goal_met else "MISSED"
        ai = [r.ai_revenue_usd for r in sc.rows if not r.baseline]
        served = [r.ai_revenue_usd for r in sc.rows if r.policy == "always-ai-else-idle"]
        # AI revenue is set by the jobs the site can serve: when every row, even the one
        # offering every GPU to AI all the time, earns the same, no mode choice moves it.
        ai_note = "" if max(ai, default=0.0) <= 0 else (
            f"; AI revenue: built-ins {min(ai):,.0f}–{max(ai):,.0f} USD"
            + (f", always-ai-else-idle {served[0]:,.0f} USD" if served else "")
            + (f", the oracle's schedule {sc.oracle_ai_revenue_usd:,.0f} USD"
               if sc.oracle_ai_revenue_usd is not None else ""))
        known = "" if twin is None else (
            f"; with the hour's price known (what-if): {twin.best} "
            f"{_pct(twin.best_capture)}, "
            f"{'above' if twin.above_baselines else 'NOT above'} every baseline")
        lines.append(
            f"- {sc.name} ({sc.kind}, {sc.nodes:,} nodes, {sc.period}; rows under "
            f"{', '.join(guards)}): best built-in {sc.best} {_pct(sc.best_capture)}, "
            f"{'above' if sc.above_baselines else 'NOT above'} every baseline; goal "
            f"({target}): {verdict}{ai_note}{known}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", type=Path, help="Site files (default: every scenario).")
    ap.add_argument("--out", type=Path, default=Path("reports/scenarios"),
                    help="Folder for each scenario's backtest report.")
    ap.add_argument("--from", dest="start", help="Start for every scenario (ISO, UTC).")
    ap.add_argument("--to", dest="end", help="End for every scenario (ISO, UTC).")
    ap.add_argument("--oracle-iterations", type=int, help="Oracle iteration limit.")
    ap.add_argument("--oracle-gap", type=float, help="Oracle gap tolerance (0.005 = 0.5%%).")
    ap.add_argument("--ray", action="store_true", help="Run each scenario's policies on Ray.")
    ap.add_argument("--unguarded-baselines", action="store_true",
                    help="Also run each baseline without dwell or switch budgets (labelled).")
    ap.add_argument("--price-known", action="store_true",
                    help="Also run each scenario with the hour's power price known when "
                         "deciding (a what-if row, no goal).")
    ap.add_argument("--no-run", action="store_true",
                    help="Print the table from the reports already in --out (no backtests).")
    ap.add_argument("--json", type=Path, help="Also write the table as JSON here.")
    ap.add_argument("--check", action="store_true",
                    help="Exit with status 1 when a scenario misses its goal.")
    args = ap.parse_args(argv)
    configs = args.configs or [
        *(ROOT / c for c in BUNDLED_SITES),
        *sorted((ROOT / "examples" / "scenarios").glob("*.yaml")),
    ]
    extra = [] if args.ray else ["--no-ray"]
    for flag, value in (("--from", args.start), ("--to", args.end),
                        ("--oracle-iterations", args.oracle_iterations),
                        ("--oracle-gap", args.oracle_gap)):
        if value is not None:
            extra += [flag, str(value)]
    if args.unguarded_baselines:
        extra.append("--unguarded-baselines")
    scenarios = []
    for config in configs:
        name = scenario_name(config)
        out = args.out / name
        run_scenario(config, out, extra, run=not args.no_run)
        scenarios.append(read_scenario(config, out))
        if args.price_known:
            known = price_known_copy(config, args.out)
            run_scenario(known, args.out / f"{name}-price-known", extra, run=not args.no_run)
            what_if = read_scenario(known, args.out / f"{name}-price-known",
                                    f"{name} (price known)")
            what_if.kind, what_if.diagnostic = scenarios[-1].kind, True
            what_if.target = what_if.goal_met = None
            scenarios.append(what_if)
    print(markdown(scenarios))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(s) for s in scenarios], indent=2) + "\n",
                             encoding="utf-8")
    goals = [s.goal_met for s in scenarios if not s.diagnostic]
    return 1 if args.check and not all(goals) else 0


if __name__ == "__main__":
    raise SystemExit(main())
