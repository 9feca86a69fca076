"""Hindsight oracle on a site with a power contract: its time against the backtest's.

The contract example (examples/contracts/site.yaml: a fixed-price block resold at spot,
a demand charge, 4CP alerts, a demand-response calendar) scaled to 1k and 10k nodes over
its whole bundled period; the hysteresis policy's backtest and the oracle (contract
pricing, the iterations, and the schedule replayed through the simulated site) each run
`--repeat` times, the fastest counting. The oracle's target is at most 10x the backtest.

    python -m bench.bench_oracle_contract [--nodes 1000 10000] [--days N] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path

from bench.bench_backtest import scaled
from bench.summary import record
from orchestrator.backtest.runner import PolicySpec, prepare_backtest, run_oracle, run_policy
from orchestrator.models.config import load_config

SITE = Path(__file__).parents[1] / "examples" / "contracts" / "site.yaml"


def bench(nodes: int, days: int | None, repeat: int) -> dict[str, float]:
    config = scaled(load_config(SITE), nodes)
    assert config.backtest.start is not None
    end = None if days is None else config.backtest.start + timedelta(days=days)
    inputs = prepare_backtest(config, end=end)
    spec = PolicySpec("hysteresis", "hysteresis", None, config.guards)
    # Load (or compile) the compiled loops before timing: a one-off per process.
    warm = prepare_backtest(config, end=config.backtest.start + timedelta(days=2))
    run_policy(warm, spec)
    run_oracle(warm)
    run_times, oracle_times = [], []
    gap = float("nan")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_policy(inputs, spec)
        run_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result, _ = run_oracle(inputs)
        oracle_times.append(time.perf_counter() - t0)
        gap = result.gap
    run_s, oracle_s = min(run_times), min(oracle_times)
    return {"nodes": inputs.fleet.n, "steps": int(inputs.times.shape[0]), "run_s": run_s,
            "oracle_s": oracle_s, "ratio": oracle_s / run_s, "gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--days", type=int, default=None, help="Shorter period (default: all).")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per size; the fastest counts.")
    args = parser.parse_args()
    print(f"{'nodes':>7} {'steps':>7} {'backtest s':>11} {'oracle s':>9} "
          f"{'oracle/backtest':>16} {'gap':>7}")
    for n in args.nodes:
        r = bench(n, args.days, max(args.repeat, 1))
        print(f"{int(r['nodes']):>7,} {int(r['steps']):>7,} {r['run_s']:>11.2f} "
              f"{r['oracle_s']:>9.1f} {r['ratio']:>15.2f}x {r['gap']:>7.2%}", flush=True)
        record(f"oracle on a contract site, {int(r['nodes']):,} nodes",
               f"{r['ratio']:.2f}x the backtest (gap {r['gap']:.2%})", "<= 10x",
               r["ratio"] <= 10)


if __name__ == "__main__":
    main()
