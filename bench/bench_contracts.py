"""Decision step with a power contract: what a demand-response program costs a cycle.

One capped site of mixed ASIC/GPU nodes (the fleet of bench_decision), greedy policy,
through `DecisionStep.decide` (contract pricing, event caps, policy, every guard):
without a contract, with a fixed-price contract and a demand-response calendar of
1,000 events none of which is in force, and during an event (the site capped at a
third of its draw, so the power cap allocation sheds miners). Prints median cycle times.

    python -m bench.bench_contracts [--sizes 10000 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.bench_decision import NOW, make_fleet, prices
from bench.summary import record
from orchestrator.engine.contracts import ContractBook, EventCalendar
from orchestrator.engine.step import DecisionStep
from orchestrator.models import DemandSummary, FleetTable, Site
from orchestrator.models.config import GuardConfig
from orchestrator.models.contract import (
    DemandResponse,
    EventCalendarSource,
    FixedPrice,
    PowerContract,
)
from policies.greedy import Greedy


def _book(fleet: FleetTable, in_force: bool) -> ContractBook:
    mine_kw = float(fleet.statics.watts_by_mode[1].sum()) / 1000.0
    cap_kw = float(fleet.statics.site_cap_w[0]) / 1000.0
    dr = DemandResponse(max_draw_kw=mine_kw / 3, committed_kw=cap_kw - mine_kw / 3,
                        events=EventCalendarSource(path="unused.csv"))
    site = Site(name="site", power_cap_kw=cap_kw,
                contract=PowerContract(price=FixedPrice(usd_mwh=42.0), demand_response=dr))
    # 1,000 two-hour events a day apart, before NOW; the last one in force when asked.
    shift = 86_400.0 if in_force else 0.0
    starts = np.arange(1000, 0, -1, dtype=np.float64) * -86_400.0 + (NOW + shift)
    calendar = EventCalendar.of(starts, starts + 7200.0, starts - 600.0, 600.0)
    return ContractBook([site], {}, {"site": calendar})


def bench(n: int, repeats: int) -> dict[str, float]:
    fleet = make_fleet(n)
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    demand = DemandSummary(np.array([0.02 * n]), np.array([np.nan]))
    out: dict[str, float] = {"nodes": n}
    for label, book in (("plain", None), ("no event", _book(fleet, False)),
                        ("event", _book(fleet, True))):
        times = []
        for _ in range(repeats):
            step = DecisionStep(Greedy(), guards, interval_s=3600.0, contracts=book)
            t0 = time.perf_counter()
            plan = step.decide(now_s=NOW + 60.0, prices=prices(fleet, 30.0), demand=demand,
                               fleet=fleet)
            times.append(time.perf_counter() - t0)
        if label == "event":
            assert plan.site_power_w[0] <= plan.site_cap_w[0] or plan.site_over_cap[0]
        out[label] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'nodes':>10} {'plain ms':>9} {'no event ms':>12} {'event ms':>9}")
    for n in args.sizes:
        r = bench(n, args.repeats)
        print(f"{int(r['nodes']):>10,} {r['plain'] * 1e3:>9.1f} {r['no event'] * 1e3:>12.1f} "
              f"{r['event'] * 1e3:>9.1f}", flush=True)
        record(f"decision step with a DR contract, {n:,} nodes",
               f"plain {r['plain'] * 1e3:.1f} ms, no event {r['no event'] * 1e3:.1f} ms, "
               f"event in force {r['event'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
