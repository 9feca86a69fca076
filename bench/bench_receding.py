"""Receding-horizon decision time: the policy alone and the whole decision (score table,
policy, guards) on the decision benchmark's capped mixed fleets, with 48 h of history and
12 h of published prices ahead.

    python -m bench.bench_receding [--sizes 10000 100000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.bench_decision import NOW, make_fleet, prices
from bench.summary import record
from orchestrator.engine import build_context, decide
from orchestrator.framework import MarketHistory
from orchestrator.models import DemandSummary
from orchestrator.models.config import GuardConfig
from policies.receding_horizon import RecedingHorizon

#: A decision must fit well inside the controller's cycle (60 s by default); this is the
#: decision benchmark's own target per fleet size.
TARGET_S = {100_000: 0.050}


def bench(n: int, repeats: int) -> tuple[float, float]:
    fleet = make_fleet(n)
    guards = GuardConfig(min_dwell_s=3600.0, max_fleet_switch_share_per_hour=0.25)
    demand = DemandSummary(np.array([0.02 * n]), np.array([np.nan]))
    hours = np.arange(NOW - 48 * 3600, NOW + 12 * 3600 + 1, 3600.0)
    power = 40.0 + 30.0 * np.sin(hours / 3600 / 24 * 2 * np.pi)
    history = MarketHistory(hours, np.full(hours.shape, 55.0), power)
    policy = RecedingHorizon({"horizon_h": 12})
    alone, whole = [], []
    for r in range(repeats):
        ctx = build_context(now_s=NOW, prices=prices(fleet, 30.0 if r % 2 else 160.0),
                            demand=demand, fleet=fleet, guards=guards, history=history)
        t0 = time.perf_counter()
        policy.decide(ctx)
        alone.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ctx = build_context(now_s=NOW, prices=prices(fleet, 30.0 if r % 2 else 160.0),
                            demand=demand, fleet=fleet, guards=guards, history=history)
        decide(ctx, policy, guards)
        whole.append(time.perf_counter() - t0)
    return statistics.median(alone), statistics.median(whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'nodes':>10} {'policy ms':>10} {'decision ms':>12}")
    for n in args.sizes:
        alone, whole = bench(n, args.repeats)
        print(f"{n:>10,} {alone * 1e3:>10.1f} {whole * 1e3:>12.1f}", flush=True)
        limit = TARGET_S.get(n)
        record(f"receding-horizon decision, {n:,} nodes", f"{whole * 1e3:.1f} ms",
               "—" if limit is None else f"<= {limit * 1e3:g} ms",
               None if limit is None else whole <= limit)


if __name__ == "__main__":
    main()
