"""Live grid signals: what folding messages in and deciding with live events costs.

One capped site of mixed ASIC/GPU nodes (the fleet of bench_decision), greedy policy,
through `DecisionStep.decide`, `--events` events one of which is in force: as a recorded
calendar, and as a live book, first right after a message changed the book (its
calendar is rebuilt) and then on an unchanged book (the calendar is reused). Also the
time to fold `--events` messages into a book and to copy the book for a decision (what
the controller does at the start of each cycle). Prints medians.

    python -m bench.bench_grid [--sizes 10000 100000] [--events 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import numpy as np

from bench.bench_decision import NOW, make_fleet, prices
from bench.summary import record
from orchestrator.engine.contracts import ContractBook, EventCalendar, LiveBook
from orchestrator.engine.step import DecisionStep
from orchestrator.models import DemandSummary, FleetTable, Site
from orchestrator.models.config import GuardConfig
from orchestrator.models.contract import (
    DemandResponse,
    EventCalendarSource,
    GridMessage,
    LiveSignals,
    PowerContract,
)
from policies.greedy import Greedy


def _site(fleet: FleetTable) -> Site:
    mine_kw = float(fleet.statics.watts_by_mode[1].sum()) / 1000.0
    cap_kw = float(fleet.statics.site_cap_w[0]) / 1000.0
    dr = DemandResponse(max_draw_kw=mine_kw / 3, committed_kw=cap_kw - mine_kw / 3,
                        events=EventCalendarSource(path="unused.csv"))
    return Site(name="site", power_cap_kw=cap_kw, contract=PowerContract(
        demand_response=dr, live=LiveSignals(file="unused.json")))


def _messages(events: int) -> list[GridMessage]:
    """`events` two-hour events a day apart, the last one in force at NOW."""
    out = []
    for k in range(events):
        start = NOW - (events - 1 - k) * 86_400.0 - 600.0
        iso = [datetime.fromtimestamp(t, UTC).isoformat() for t in
               (start, start + 7200.0, start - 600.0)]
        out.append(GridMessage.model_validate({"events": [
            {"id": f"e{k}", "start": iso[0], "end": iso[1], "called_at": iso[2]}]}))
    return out


def bench(n: int, events: int, repeats: int) -> dict[str, float]:
    fleet = make_fleet(n)
    site = _site(fleet)
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    demand = DemandSummary(np.array([0.02 * n]), np.array([np.nan]))
    messages = _messages(events)
    fold, copies = [], []
    book = LiveBook()
    for _ in range(repeats):
        book = LiveBook()
        t0 = time.perf_counter()
        for m in messages:
            book.apply(m, NOW - 900.0)
        fold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        book.copy()
        copies.append(time.perf_counter() - t0)
    # The same events as a recorded calendar, for the decision without live signals.
    e = list(book.events.values())
    recorded = EventCalendar.of(np.array([x.start_s for x in e]), np.array([x.end_s for x in e]),
                                np.array([x.called_s for x in e]), 600.0)
    empty = EventCalendar.of(np.zeros(0), np.zeros(0), np.zeros(0), 600.0)
    out: dict[str, float] = {"nodes": n, "fold": statistics.median(fold),
                             "copy": statistics.median(copies)}
    cases = {"recorded only": {}, "live, changed": {"site": book},
             "live, unchanged": {"site": book}}
    for label, live in cases.items():
        times = []
        for _ in range(repeats):
            calendar = recorded if label == "recorded only" else empty
            contracts = ContractBook([site], {}, {"site": calendar}, True, dict(live))
            step = DecisionStep(Greedy(), guards, interval_s=3600.0, contracts=contracts)
            if label == "live, unchanged":  # the calendar already built by a cycle before
                contracts.live_calendar(site)
            t0 = time.perf_counter()
            plan = step.decide(now_s=NOW, prices=prices(fleet, 30.0), demand=demand,
                               fleet=fleet)
            times.append(time.perf_counter() - t0)
        assert plan.site_cap_w[0] < float(fleet.statics.site_cap_w[0])  # one in force
        out[label] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'nodes':>10} {'recorded ms':>12} {'live changed ms':>16} "
          f"{'live unchanged ms':>18} {'fold ms':>8} {'copy ms':>8}")
    for n in args.sizes:
        r = bench(n, args.events, args.repeats)
        print(f"{int(r['nodes']):>10,} {r['recorded only'] * 1e3:>12.1f} "
              f"{r['live, changed'] * 1e3:>16.1f} {r['live, unchanged'] * 1e3:>18.1f} "
              f"{r['fold'] * 1e3:>8.1f} {r['copy'] * 1e3:>8.1f}", flush=True)
        record(f"decision step with {args.events:,} live grid events, {n:,} nodes",
               f"recorded only {r['recorded only'] * 1e3:.1f} ms, live (book changed) "
               f"{r['live, changed'] * 1e3:.1f} ms, live (unchanged) "
               f"{r['live, unchanged'] * 1e3:.1f} ms; folding {args.events:,} messages "
               f"{r['fold'] * 1e3:.1f} ms, copying the book {r['copy'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
