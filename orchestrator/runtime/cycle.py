"""One decision cycle, the same in every mode: gather → decide → guard → record → act.

The plan is journaled before anything is actuated: a plan that cannot be recorded is
not acted on. A market that cannot be read holds every node (no plan, no switch); a
stale one is decided on but the stale-data guard holds every node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from orchestrator.engine.explain import mode_counts
from orchestrator.engine.plan import Plan
from orchestrator.engine.prices import snapshot_to_prices
from orchestrator.engine.step import DecisionStep
from orchestrator.errors import DataError, FeedError, PolicyError
from orchestrator.framework.policy import Policy
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.demand import DemandSnapshot, DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.journal import (
    CycleRecord,
    DecisionInputs,
    NodeChange,
    StateArray,
    fleet_columns,
)
from orchestrator.ports import (
    ActuationResult,
    Actuator,
    Clock,
    DemandSource,
    FleetSource,
    MarketSource,
)
from orchestrator.runtime.journal import (
    JournalError,
    JsonlJournal,
    StepMemoryStore,
    last_record,
)
from orchestrator.runtime.metrics import ControllerMetrics

if TYPE_CHECKING:
    from orchestrator.runtime.grid import GridSignals

log = logging.getLogger("hashpivot.cycle")

#: Fleets up to this size are journaled row by row, so any cycle can be decided again.
REPLAYABLE_FLEET_NODES = 5_000
#: Explanations journaled per cycle (highest gain first); the summary counts them all.
JOURNALED_CHANGES = 1_000
JOURNALED_JOBS = 500


@dataclass
class CycleDeps:
    """The adapters behind each port, picked by the runtime's wiring for the mode."""

    clock: Clock
    market: MarketSource
    demand: DemandSource
    fleet: FleetSource
    actuator: Actuator
    journal: JsonlJournal
    metrics: ControllerMetrics | None = None
    #: Cumulative feed rejections by source and reason (live feeds), for metrics.
    feed_rejections: Callable[[], dict[str, dict[str, int]]] | None = None
    #: The operator's kill switch: why every node is held this cycle, or None.
    freeze: Callable[[], str | None] | None = None
    #: Where the decision step's memory is kept between restarts (None: not kept).
    memory: StepMemoryStore | None = None


@dataclass
class CycleOutcome:
    record: CycleRecord
    plan: Plan | None
    result: ActuationResult


@dataclass
class DecisionCycle:
    """Gather through the ports, decide through the decision step every mode shares
    (`engine.step`), journal, act, and tell the step which switches began."""

    config: HashpivotConfig
    mode: str
    policy: Policy
    deps: CycleDeps
    step: DecisionStep = field(init=False)

    def __post_init__(self) -> None:
        # A dry-run decides on the backtest's grid; live and shadow every interval.
        interval = (self.config.backtest.step_s if self.mode == "dry-run"
                    else self.config.controller.interval_s)
        demand = self.config.demand
        contracts = None
        if any(site.contract is not None for site in self.config.sites):
            # Loaded only for sites with a contract: it reads their alert series.
            from orchestrator.backtest.contracts import contract_book
            contracts = contract_book(self.config)
        self.step = DecisionStep(self.policy, self.config.guards, self.config.scoring,
                                 interval_s=interval,
                                 demand_model=demand.gpu_model if demand is not None else None,
                                 contracts=contracts)
        self.grid: GridSignals | None = None
        if contracts is not None and contracts.live:
            # Live events and alerts: polled here, received by the webhook, journaled.
            from orchestrator.runtime.grid import GridSignals

            self.grid = GridSignals(self.config, contracts, self.deps.journal.folder,
                                    self.deps.metrics, self.deps.clock.now_s)
        if self.deps.memory is not None:
            self._restore(self.deps.memory)

    def _restore(self, store: StepMemoryStore) -> None:
        """Pick up the decision step's memory after a restart, plus the switches of a
        last journaled cycle acted on after the memory was saved (a kill in between)."""
        saved = store.load()
        if saved is not None:
            self.step.restore(saved)
        last = last_record(self.deps.journal.folder)
        began = {} if last is None else last.actuation.get("began_earlier")
        saved_s = -math.inf if saved is None or saved.now_s is None else saved.now_s
        for name, at_s in (began.items() if isinstance(began, dict) else ()):
            # Ramp steps reported with a cycle the memory missed.
            if isinstance(at_s, int | float) and at_s > saved_s:
                self.step.replay_switches(float(at_s), [str(name)])
        if last is None or not last.changes or (
            saved is not None and saved.now_s is not None and last.now_s <= saved.now_s
        ):
            return
        started = last.actuation.get("started")
        # No result line: the process died while acting; count every change as begun
        # (a budget spent twice is safer than a node switched twice).
        nodes = ([c.node for c in last.changes] if not isinstance(started, list)
                 else [str(x) for x in started])
        self.step.replay_switches(last.now_s, nodes)

    @property
    def policy_state(self) -> Mapping[str, npt.NDArray[np.generic]]:
        return self.step.policy_state

    @property
    def expected_gpus(self) -> float | None:
        return self.step.expected_gpus

    def _pending(self, snapshot: DemandSnapshot, fleet: FleetTable, now_s: float) -> (
        DemandSummary
    ):
        """What waits now, per GPU model. A source that keeps its queue as numbers (the
        simulated site) says so directly, so a dry-run sees the backtest's demand exactly."""
        exact: Any = getattr(self.deps.demand, "pending_summary", None)
        if callable(exact):
            summary: DemandSummary = exact(now_s)
            return summary
        return DemandSummary.from_jobs(snapshot.pending, fleet.gpu_models)

    def run_once(self) -> CycleOutcome:
        deps = self.deps
        now = deps.clock.now_s()
        fleet = deps.fleet.fleet(now)
        demand = deps.demand.demand(now)
        if deps.metrics is not None and deps.feed_rejections is not None:
            deps.metrics.observe_rejections(deps.feed_rejections())
        try:
            snapshot = deps.market.snapshot(now)
            prices = snapshot_to_prices(snapshot, fleet)
        except (FeedError, DataError) as exc:
            return self._hold(now, fleet, demand, str(exc))

        frozen = "config guards.frozen" if self.config.guards.frozen else (
            deps.freeze() if deps.freeze is not None else None)
        if self.grid is not None:
            self.grid.poll(now)  # never raises for what a source sent
        started = time.perf_counter()
        pending = self._pending(demand, fleet, now)
        state_in = self.step.policy_state
        history = deps.market.history(now) if self.step.needs_history else None
        try:
            plan = self.step.decide(now_s=now, prices=prices, demand=pending, fleet=fleet,
                                    history=history, frozen=bool(frozen))
        except PolicyError as exc:
            # A broken decision is not acted on: every node is held, through the guards
            # (the power cap still sheds load), and the cycle says why.
            log.warning("policy failed, holding every node: %s", exc)
            plan = self.step.decide(now_s=now, prices=prices, demand=pending, fleet=fleet,
                                    history=history, frozen=bool(frozen),
                                    held=f"policy failed: {exc}")
        latency = time.perf_counter() - started
        switch_in = self.step.switch_history()  # what the guards just read

        changes = [
            NodeChange(node=e.node, current=e.current, target=e.target, reason=e.reason,
                       reason_code=e.reason_code, value_usd_h=e.value_usd_h,
                       switch_cost_usd_h=e.switch_cost_usd_h, ai_fill=e.ai_fill, text=e.text)
            for e in plan.explanations(limit=JOURNALED_CHANGES)
        ]
        replayable = fleet.n <= REPLAYABLE_FLEET_NODES
        record = CycleRecord(
            decision_id=plan.decision_id,
            mode=self.mode,
            policy=plan.policy if plan.held is None else self.policy.name,
            now_s=now,
            market=snapshot,
            # Replayable cycles keep every pending job; big ones a sample.
            demand=demand if replayable else demand.model_copy(
                update={"pending": demand.pending[:JOURNALED_JOBS]}
            ),
            pending_jobs_total=len(demand.pending),
            fleet_modes=mode_counts(fleet.mode),
            plan=plan.summary() | ({"frozen": frozen} if frozen else {}),
            changes=changes,
            decision_latency_s=latency,
            fleet_columns=fleet_columns(fleet) if replayable else None,
            grid_signals=self.grid.snapshot() if self.grid is not None else None,
            expected_gpus=self.step.expected_gpus,
            policy_state_in=(
                {k: StateArray.of(v) for k, v in state_in.items()} if replayable else None
            ),
            decision_inputs=DecisionInputs(
                pending_gpus=pending.pending_gpus.tolist(),
                offered_usd_per_gpu_hour=[
                    None if not np.isfinite(x) else float(x)
                    for x in pending.offered_usd_per_gpu_hour.tolist()
                ],
                pending_gpus_any_model=pending.pending_gpus_any_model,
                switch_since=switch_in[0].tolist(),
                switch_load=switch_in[1].tolist(),
                interval_s=self.step.interval_s,
                skipped_cycles=self.step.skipped_cycles,
                frozen=bool(frozen),
                contract_peak_kw=self.step.contract_peaks_in,
                power_nowcast_usd_mwh=self.step.nowcast_usd_mwh,
            ) if replayable else None,
        )
        bill: Any = getattr(deps.actuator, "hear_grid", None)
        if self.grid is not None and callable(bill):
            # A dry-run's simulated site bills the plan's step with the live events the
            # decision saw (kept for the step only: nothing acts before the journal).
            bill(record.grid_signals)
        deps.journal.record(record)  # JournalError propagates: no record, no action
        if self.grid is not None:
            self.grid.acknowledge(plan.decision_id, now)
        try:
            result = deps.actuator.apply(plan, fleet)
        except Exception as exc:
            # An actuator reports its errors; one that raises anyway must not have the
            # journaled decision taken again. The next pass moves what this one did not.
            log.error("plan %s journaled, actuation failed: %s: %s", plan.decision_id,
                      type(exc).__name__, exc)
            result = ActuationResult(errors={"actuator": f"failed: {type(exc).__name__}"})
        # Only switches the actuator began count against the budgets (not shadow's, not
        # a rate-limited one, not a node merely adopted).
        self.step.commit(plan, started=result.started)
        self.step.count_began(result.began_earlier)
        _record_result(deps.journal, plan.decision_id, result)
        if deps.memory is not None:
            deps.memory.save(plan.decision_id, self.step.memory())
        if deps.metrics is not None:
            deps.metrics.observe_plan(plan, latency)
            deps.metrics.observe_market(snapshot, prices.hashprice_usd_per_ph_day, now)
            for kind in result.errors.values():
                deps.metrics.actuation_errors.labels(kind.split(":")[0][:40]).inc()
            deps.metrics.cycles.labels("decided" if plan.held is None else "held").inc()
        return CycleOutcome(record, plan, result)

    def _hold(self, now: float, fleet: FleetTable, demand: DemandSnapshot,
              why: str) -> CycleOutcome:
        """No usable market: decide nothing, keep switches already under way moving."""
        log.warning("market unusable, holding every node: %s", why)
        record = CycleRecord(
            decision_id=f"hold-{int(now)}",
            mode=self.mode,
            policy=self.policy.name,
            now_s=now,
            market=None,
            market_rejected=why,
            demand=demand.model_copy(update={"pending": demand.pending[:JOURNALED_JOBS]}),
            pending_jobs_total=len(demand.pending),
            fleet_modes=mode_counts(fleet.mode),
            plan={"changes": 0, "held": "market unusable"},
            changes=[],
        )
        self.deps.journal.record(record)
        reconcile: Any = getattr(self.deps.actuator, "reconcile", None)
        result = reconcile() if callable(reconcile) else ActuationResult()
        _record_result(self.deps.journal, record.decision_id, result)
        if self.deps.metrics is not None:
            self.deps.metrics.cycles.labels("held").inc()
        return CycleOutcome(record, None, result)


def _record_result(journal: JsonlJournal, decision_id: str, result: ActuationResult) -> None:
    """The result line. The plan is on record and was acted on: a result that cannot be
    written is logged, not raised (raising would have the cycle decided and acted again)."""
    try:
        journal.record_result(decision_id, _result_dict(result))
    except JournalError as exc:
        log.error("result of %s not journaled: %s", decision_id, exc)


def _result_dict(result: ActuationResult) -> dict[str, Any]:
    return {
        "writes": result.writes,
        "started": result.started[:JOURNALED_CHANGES],
        "began_earlier": dict(list(result.began_earlier.items())[:JOURNALED_CHANGES]),
        "completed": result.completed[:JOURNALED_CHANGES],
        "deferred": dict(list(result.deferred.items())[:JOURNALED_CHANGES]),
        "errors": dict(list(result.errors.items())[:JOURNALED_CHANGES]),
        "notes": dict(list(result.notes.items())[:JOURNALED_CHANGES]),
    }
