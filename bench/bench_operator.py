"""What the operator-facing work adds to a cycle: the per-cycle log line (its facts and
warnings) and the node events (candidates for every switch and guard hold, at most 50
written), on the decision benchmark's fleets, against the cycle's own decision time.

    python -m bench.bench_operator [--sizes 10000 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from bench.bench_decision import NOW, make_fleet, prices
from bench.summary import record
from orchestrator.adapters.k8s.events import NodeEvents
from orchestrator.engine import build_context, decide
from orchestrator.models import DemandSummary
from orchestrator.models.config import GuardConfig
from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.journal import CycleRecord
from orchestrator.ports import ActuationResult
from orchestrator.runtime.cycle import CycleOutcome
from orchestrator.runtime.logs import describe_cycle
from policies.hysteresis import Hysteresis


def bench(n: int, repeats: int) -> dict[str, float]:
    fleet = make_fleet(n)
    guards = GuardConfig(min_dwell_s=3600.0, max_fleet_switch_share_per_hour=0.25)
    policy = Hysteresis({"confirm_ticks": 1})
    demand = DemandSummary(np.array([0.02 * n]), np.array([np.nan]))
    state: dict[str, Any] = {}
    decide_s, report_s, changed, candidates = [], [], 0, 0
    sent: list[dict[str, Any]] = []
    events = NodeEvents(lambda ns, body: sent.append(body), "bench", dedupe_s=0)
    for r in range(repeats):
        power = 30.0 if r % 2 == 0 else 160.0  # alternate so each cycle has real changes
        t0 = time.perf_counter()
        ctx = build_context(now_s=NOW, prices=prices(fleet, power), demand=demand, fleet=fleet,
                            guards=guards, policy_state=state)
        plan = decide(ctx, policy, guards)
        t1 = time.perf_counter()
        rec = CycleRecord(decision_id=plan.decision_id, mode="live", policy="hysteresis",
                          now_s=NOW, market=None, demand=DemandSnapshot(), fleet_modes={},
                          plan=plan.summary(), changes=[])
        outcome = CycleOutcome(rec, plan, ActuationResult())
        t2 = time.perf_counter()
        describe_cycle(outcome, ["site"])
        events.publish(plan, {})
        t3 = time.perf_counter()
        decide_s.append(t1 - t0)
        report_s.append(t3 - t2)
        state = dict(plan.policy_state)
        changed = max(changed, int(plan.changed.size))
        candidates = max(candidates, int(plan.changed.size)
                         + int(np.count_nonzero(plan.reason >= 20)))
    return {"nodes": n, "decide_s": statistics.median(decide_s),
            "report_s": statistics.median(report_s), "changed": changed,
            "candidates": candidates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for n in args.sizes:
        out = bench(n, args.repeats)
        line = (f"{n:>9,} nodes: decide {out['decide_s'] * 1000:8.1f} ms, log line + events "
                f"{out['report_s'] * 1000:7.1f} ms ({out['changed']:,} changes, "
                f"{out['candidates']:,} event candidates, at most 50 written)")
        print(line)
        record("operator view", line)


if __name__ == "__main__":
    main()
