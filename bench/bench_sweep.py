"""Sweep scaling over Ray: the same parameter grid on 1 worker and on every core.

    python -m bench.bench_sweep [--points 4] [--days N]

Each point is a labelled run of the West Texas site over the whole bundled period (or
--days), run in its own Ray task of one backtest, as `hashpivot backtest --sweep` does.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import ray

from bench.summary import record
from orchestrator.backtest.runner import run_backtest
from orchestrator.models.config import load_config
from orchestrator.runtime.parallel import ray_map_runs

SITE = Path(__file__).parents[1] / "examples" / "west-texas" / "site.yaml"


def timed_sweep(cpus: int, points: int, start: datetime, end: datetime | None) -> float:
    config = load_config(SITE)
    runs = [f"ticks-{k}=hysteresis" for k in range(1, points + 1)]
    params = {f"ticks-{k}": {"confirm_ticks": k} for k in range(1, points + 1)}
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        t0 = time.perf_counter()
        run_backtest(config, policies=runs, params=params, start=start, end=end,
                     baselines=False, map_runs=ray_map_runs)
        return time.perf_counter() - t0
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--days", type=int, default=None, help="Shorter period (default: all).")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    config = load_config(SITE)
    assert config.backtest.start is not None
    start = config.backtest.start
    end = None if args.days is None else start + timedelta(days=args.days)
    points = args.points
    cores = os.cpu_count() or 1
    one = timed_sweep(1, points, start, end)
    many = timed_sweep(cores, points, start, end)
    print(f"{'points':>7} {'1 worker s':>11} {f'{cores} workers s':>12} {'speedup':>8}")
    print(f"{points:>7} {one:>11.1f} {many:>12.1f} {one / many:>7.2f}x")
    # Near-linear: at least 80% of the ideal speedup (the driver shares the cores).
    record(f"sweep, {points} points", f"{one / many:.2f}x on {cores} workers",
           f">= {0.8 * min(cores, points):.1f}x", one / many >= 0.8 * min(cores, points))


if __name__ == "__main__":
    main()
