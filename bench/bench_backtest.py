"""Backtest throughput: node-steps per second for the hysteresis policy, and the oracle's
time, on the West Texas site scaled to 1k and 10k nodes over all bundled hourly data. A short
warm-up run first loads the compiled loops, so the figures are steady-state throughput.

Each backtest runs `--repeat` times and the fastest run is the figure, with the median
beside it: on a shared machine other work only ever adds time, and one run of a few
seconds can land in a busy spell.

    python -m bench.bench_backtest [--nodes 1000 10000] [--days N] [--repeat 3] [--no-cap]
                                   [--no-oracle]

`--no-cap` lifts the site's power cap: the decision path without the cap allocation, the
figure to compare when only the path around the policy changed. `--no-oracle` times the
policy's backtest only (the oracle takes 4-10x as long and is not on the decision path).
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from bench.summary import record
from orchestrator.backtest.runner import PolicySpec, prepare_backtest, run_oracle, run_policy
from orchestrator.models.config import HashpivotConfig, load_config

SITE = Path(__file__).parents[1] / "examples" / "west-texas" / "site.yaml"


def scaled(config: HashpivotConfig, nodes: int, capped: bool = True) -> HashpivotConfig:
    base = sum(g.count for g in config.fleet)
    factor = nodes / base
    fleet = [g.model_copy(update={"count": max(1, round(g.count * factor))}) for g in config.fleet]
    sites = [s.model_copy(update={"power_cap_kw": ((s.power_cap_kw or 0) * factor or None)
                                  if capped else None})
             for s in config.sites]
    # Power at the published price: the figures compare with code from before the nowcast
    # (the site file turns it on; it adds the market history to every step).
    scoring = config.scoring.model_copy(update={"power_nowcast": "last-published"})
    return config.model_copy(update={"fleet": fleet, "sites": sites, "scoring": scoring})


def bench(nodes: int, days: int | None, repeat: int, capped: bool = True,
          oracle: bool = True) -> dict[str, float]:
    config = scaled(load_config(SITE), nodes, capped)
    assert config.backtest.start is not None
    end = None
    if days is not None:
        end = config.backtest.start + timedelta(days=days)
    t0 = time.perf_counter()
    inputs = prepare_backtest(config, end=end)
    load_s = time.perf_counter() - t0
    spec = PolicySpec("hysteresis", "hysteresis", None, config.guards)
    # Load (or compile) the compiled loops before timing: a one-off per process.
    warm = prepare_backtest(config, end=config.backtest.start + timedelta(days=2))
    run_policy(warm, spec)
    if oracle:
        run_oracle(warm)
    run_times, oracle_times = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_policy(inputs, spec)
        run_times.append(time.perf_counter() - t0)
        if oracle:
            t0 = time.perf_counter()
            run_oracle(inputs)
            oracle_times.append(time.perf_counter() - t0)
    run_s = min(run_times)
    oracle_s = min(oracle_times) if oracle_times else float("nan")
    steps = int(inputs.times.shape[0])
    n = inputs.fleet.n
    median_s = float(np.median(run_times))
    return {"nodes": n, "steps": steps, "load_s": load_s, "run_s": run_s,
            "node_steps_per_s": n * steps / run_s, "median_node_steps_per_s": n * steps / median_s,
            "oracle_s": oracle_s, "oracle_ratio": oracle_s / run_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--days", type=int, default=None, help="Shorter period (default: all).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per size; the fastest counts.")
    parser.add_argument("--no-cap", action="store_true", help="Lift the site's power cap.")
    parser.add_argument("--no-oracle", action="store_true", help="Time the backtest only.")
    args = parser.parse_args()
    print(f"{'nodes':>7} {'steps':>7} {'backtest s':>11} {'node-steps/s':>13} "
          f"{'median':>9} {'oracle s':>9} {'oracle/backtest':>16}")
    for n in args.nodes:
        r = bench(n, args.days, max(args.repeat, 1), capped=not args.no_cap,
                  oracle=not args.no_oracle)
        best, median = r["node_steps_per_s"] / 1e6, r["median_node_steps_per_s"] / 1e6
        print(f"{r['nodes']:>7,} {r['steps']:>7,} {r['run_s']:>11.2f} {best:>11.2f} M "
              f"{median:>7.2f} M {r['oracle_s']:>9.1f} {r['oracle_ratio']:>15.2f}x", flush=True)
        uncapped = ", no cap" if args.no_cap else ""
        record(f"backtest, hysteresis, {r['nodes']:,} nodes{uncapped}",
               f"{best:.2f} M node-steps/s (median {median:.2f} M)", ">= 5 M", best >= 5)
        if not args.no_oracle:
            record(f"oracle, {r['nodes']:,} nodes{uncapped}",
                   f"{r['oracle_ratio']:.2f}x the backtest", "<= 10x", r["oracle_ratio"] <= 10)


if __name__ == "__main__":
    main()
