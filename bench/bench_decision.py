"""Decision latency: score table + hysteresis + every guard + explanations of changed nodes.

Every changed node's explanation terms are computed (as columns); the text of the 1,000
most valuable changes is rendered, as the journal keeps them.

Mixed ASIC/GPU fleets of 10k, 100k and 1M nodes on one capped site, with AI demand.
Prints the median cycle time, the peak memory of the process, and the ratio to a
bandwidth floor measured in the same run (one pass over the fleet's columns).

    python -m bench.bench_decision [--sizes 10000 100000 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from bench.summary import record
from orchestrator.economics import hashprice_usd_per_th_day
from orchestrator.engine import build_context, decide
from orchestrator.models import DemandSummary, FleetTable, MarketPrices, Site, builtin_catalog
from orchestrator.models.config import GuardConfig
from policies.hysteresis import Hysteresis

NOW = 1_750_000_000.0
#: Issue 8: median cycle time per fleet size.
TARGET_S = {100_000: 0.050, 1_000_000: 0.5}


def make_fleet(n: int, seed: int = 7) -> FleetTable:
    catalog = builtin_catalog()
    profiles = [catalog["s19-xp"], catalog["s21"], catalog["s21-pro"], catalog["h100-sxm-8x"]]
    rng = np.random.default_rng(seed)
    prof = rng.choice(4, size=n, p=[0.35, 0.35, 0.2, 0.1]).astype(np.int32)
    modes = np.where(prof == 3, rng.choice([0, 1, 2], size=n, p=[0.1, 0.3, 0.6]), 1)
    cap_kw = 0.9 * float(np.sum(np.array([p.watts_mine for p in profiles])[prof])) / 1000
    fleet = FleetTable.build(profiles, [Site(name="site", power_cap_kw=cap_kw)], prof,
                             modes=modes.astype(np.int8))
    since = NOW - rng.uniform(0, 48 * 3600, size=n)
    busy = np.where(modes == 2, rng.integers(0, 9, size=n), 0).astype(np.float64)
    return fleet.with_columns(since=since, ai_gpus_busy=busy)


def prices(fleet: FleetTable, power: float) -> MarketPrices:
    hp = hashprice_usd_per_th_day(1.1e14, 97_000.0, 3.125, 0.05)
    return MarketPrices(97_000.0, 1.1e14, 0.05, 3.125,
                        np.array([hp if a == "sha256" else 0.97 for a in fleet.algorithms]),
                        np.array([2.1]), np.array([power]), NOW - 60)


def floor_pass(fleet: FleetTable) -> float:
    """One read of every numeric column: the least any full-fleet cycle must touch."""
    total = 0.0
    for col in (fleet.hashrate, fleet.watts_mine, fleet.watts_ai, fleet.watts_idle, fleet.gpus,
                fleet.since, fleet.lease_until, fleet.ai_gpus_busy):
        total += float(col.sum())
    for col in (fleet.profile, fleet.site, fleet.gpu_model, fleet.algorithm):
        total += float(col.sum())
    total += float(fleet.mode.sum()) + float(fleet.state.sum())
    return total


def bench(n: int, repeats: int) -> dict[str, float]:
    fleet = make_fleet(n)
    guards = GuardConfig(min_dwell_s=3600.0, max_fleet_switch_share_per_hour=0.25)
    policy = Hysteresis({"confirm_ticks": 1})
    demand = DemandSummary(np.array([0.02 * n]), np.array([np.nan]))
    state: dict = {}
    times, changed = [], 0
    for r in range(repeats):
        power = 30.0 if r % 2 == 0 else 160.0  # alternate so each cycle has real changes
        t0 = time.perf_counter()
        ctx = build_context(now_s=NOW, prices=prices(fleet, power), demand=demand, fleet=fleet,
                            guards=guards, policy_state=state)
        plan = decide(ctx, policy, guards)
        # Every changed node's terms, and the text of the 1,000 the journal keeps.
        table = plan.explanation_table()
        plan.explanations(limit=1000, table=table)
        times.append(time.perf_counter() - t0)
        state = dict(plan.policy_state)
        changed = max(changed, len(table))
    floors = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        floor_pass(fleet)
        floors.append(time.perf_counter() - t0)
    median = statistics.median(times)
    floor = statistics.median(floors)
    return {"nodes": n, "median_s": median, "floor_s": floor, "ratio": median / floor,
            "changed": changed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'nodes':>10} {'median ms':>10} {'floor ms':>9} {'ratio':>7} {'changed':>8} "
          f"{'peak RSS MB':>12}")
    for n in args.sizes:
        r = bench(n, args.repeats)
        print(f"{r['nodes']:>10,} {r['median_s'] * 1e3:>10.1f} {r['floor_s'] * 1e3:>9.2f} "
              f"{r['ratio']:>7.0f} {r['changed']:>8,} {r['peak_rss_mb']:>12.0f}", flush=True)
        limit_s = TARGET_S.get(n)
        record(f"decision cycle, {n:,} nodes",
               f"{r['median_s'] * 1e3:.1f} ms ({r['ratio']:.0f}x floor), "
               f"peak {r['peak_rss_mb']:.0f} MB",
               "—" if limit_s is None else f"<= {limit_s * 1e3:g} ms"
               + (", <= 1 GB" if n >= 1_000_000 else ""),
               None if limit_s is None else r["median_s"] <= limit_s
               and (n < 1_000_000 or r["peak_rss_mb"] <= 1024))


if __name__ == "__main__":
    main()
