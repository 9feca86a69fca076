"""A simulated cluster behind the Fleet, Demand and Actuator ports, for dry-runs.

`hashpivot run --mode dry-run` drives the same cycle as live control against this:
recorded market data, the simulated site (switch latency and costs, the AI job queue),
and a replay clock. Plans are applied once per decision id, so a controller that
restarts and replays a plan does not switch a node twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.contracts import contract_accounts
from orchestrator.backtest.runner import BacktestInputs
from orchestrator.backtest.sim import Ledger, SimulatedSite
from orchestrator.engine.plan import Plan
from orchestrator.models.demand import AIJob, DemandSnapshot, DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.ports import ActuationResult


@dataclass
class ReplayClock:
    """Decision times of a dry-run: the backtest grid, one step per cycle."""

    times_s: npt.NDArray[np.float64]
    index: int = 0

    def now_s(self) -> float:
        return float(self.times_s[min(self.index, self.times_s.shape[0] - 1)])

    def advance(self) -> bool:
        """Move to the next decision time; False once the recording is used up."""
        self.index += 1
        return bool(self.index < self.times_s.shape[0])

    def seek(self, now_s: float) -> None:
        """Continue after `now_s` (a restarted controller resuming from its journal)."""
        self.index = int(np.searchsorted(self.times_s, now_s, side="right"))


@dataclass
class SimulatedCluster:
    """Fleet, demand and actuation of the simulated site, one decision step at a time."""

    inputs: BacktestInputs
    site: SimulatedSite = field(init=False)
    ledger: Ledger = field(init=False)
    applied: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        cfg = self.inputs.config
        max_wait = cfg.demand.max_wait_h if cfg.demand else 24.0
        self.site = SimulatedSite(self.inputs.fleet, self.inputs.jobs, cfg.scoring,
                                  max_wait_h=max_wait, contracts=contract_accounts(cfg))
        self.ledger = Ledger.zeros(self.inputs.times, self.inputs.fleet.n)
        self._arrived_until = -np.inf

    def _step_index(self, now_s: float) -> int:
        return int(np.searchsorted(self.inputs.times, now_s, side="left"))

    def _arrive(self, now_s: float) -> None:
        if now_s > self._arrived_until:
            k = self._step_index(now_s)
            if k < self.ledger.sla_misses.shape[0]:
                self.ledger.sla_misses[k] += self.site.arrive(now_s)
            self._arrived_until = now_s

    # FleetSource
    def fleet(self, now_s: float) -> FleetTable:
        self._arrive(now_s)
        return self.site.fleet_at(now_s)

    # DemandSource
    def demand(self, now_s: float) -> DemandSnapshot:
        self._arrive(now_s)
        q = self.site.queue
        model = self.inputs.jobs.gpu_model
        price = self.inputs.jobs.offered_usd_per_gpu_hour
        jobs = [
            AIJob(
                id=f"job-{i}",
                gpus=max(1, round(float(q.gpus[i]))),
                gpu_model=model,
                offered_usd_per_gpu_hour=price,
                expected_duration_h=max(float(q.remaining_s[i]) / 3600.0, 1e-3),
                interruptible=bool(q.interruptible[i]),
                submitted_at=datetime.fromtimestamp(float(q.submit_s[i]), UTC),
                # The simulated queue gives up on a job after max_wait_h.
                deadline_at=datetime.fromtimestamp(float(q.submit_s[i]) + self.site.max_wait_s,
                                                   UTC),
            )
            for i in range(len(q))
        ]
        return DemandSnapshot(pending=jobs, source="simulated job trace",
                              observed_at=datetime.fromtimestamp(now_s, UTC))

    def pending_summary(self, now_s: float) -> DemandSummary:
        """The queue as the backtest's decision step reads it (fractional GPUs of a
        scaled trace, not the whole GPUs of the job list above)."""
        self._arrive(now_s)
        return self.site.demand(now_s)

    # Actuator
    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        result = ActuationResult()
        if plan.decision_id in self.applied:
            result.deferred = {"*": f"plan {plan.decision_id} already applied"}
            return result
        k = self._step_index(plan.now_s)
        realized = self.inputs.realized.prices(k)
        self.site.step(plan, now_s=plan.now_s, dt_s=self.inputs.config.backtest.step_s,
                       realized=realized, ledger=self.ledger, k=k)
        self.applied.add(plan.decision_id)
        changed = [str(plan.node_names[i]) for i in plan.changed]
        result.started = changed
        result.completed = changed
        result.writes = len(changed)
        return result

    def hear_grid(self, books: Mapping[str, Mapping[str, Any]] | None) -> None:
        """The live grid events the next plan was decided with (its cycle's journaled
        `grid_signals`): its step bills them like the recorded calendar's."""
        if self.site.contracts is not None:
            self.site.contracts.hear(books)

    def totals(self) -> dict[str, float]:
        return self.ledger.totals()

    def plans_applied(self) -> int:
        """How many plans this site acted on (it may have outlived a controller)."""
        return len(self.applied)
