"""What one decision cycle leaves behind, read from the journal and the metrics: the
decision inputs a replay needs, the summary of a held cycle, the journal's size limits
at their boundaries, the error and rejection counters, and a restart that resumes the
switch budgets exactly where a controller that never stopped would be.

Every cycle runs through the real `DecisionCycle` with in-test sources and a scripted
actuator, so what the actuator reports (and when) is the test's own input, and every
expected value is worked out from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from orchestrator.engine.plan import Plan
from orchestrator.errors import FeedError
from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason
from orchestrator.framework.context import MarketHistory
from orchestrator.framework.registry import load_policy
from orchestrator.models import FleetTable, Mode, Site
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.demand import AIJob, DemandSnapshot
from orchestrator.models.market import MarketSnapshot
from orchestrator.ports import ActuationResult
from orchestrator.runtime.cycle import CycleDeps, CycleOutcome, DecisionCycle
from orchestrator.runtime.journal import (
    MEMORY_FILE,
    JsonlJournal,
    StepMemoryStore,
    last_record,
    read_journal,
)
from orchestrator.runtime.metrics import ControllerMetrics
from tests.conftest import profiles
from tests.faults.fake_site import SCRIPTED, FixedMarket, site_config

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STEP = 60.0
H100 = "H100_80GB_SXM5"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now_s(self) -> float:
        return self.t


class Fleets:
    """The fleet source: the node names it reports, one list per cycle (the last list
    repeats); every node an S19 XP mining since the epoch (no switch known)."""

    def __init__(self, *names: list[str], gpus: int = 0, cap_kw: float | None = None) -> None:
        self.names = list(names)
        self.gpus = gpus
        self.site = Site(name="default", power_cap_kw=cap_kw)
        self.calls = 0

    def fleet(self, now_s: float) -> FleetTable:
        names = self.names[min(self.calls, len(self.names) - 1)]
        self.calls += 1
        miners = len(names) - self.gpus
        return FleetTable.build(profiles("s19-xp", "h100-sxm-8x"), [self.site],
                                [0] * miners + [1] * self.gpus, names=names,
                                modes=[Mode.MINE] * miners + [Mode.IDLE] * self.gpus,
                                since_s=0.0)


class Jobs:
    def __init__(self, jobs: list[AIJob] | None = None) -> None:
        self.jobs = jobs or []

    def demand(self, now_s: float) -> DemandSnapshot:
        return DemandSnapshot(pending=list(self.jobs), source="test")


class Scripted:
    """The actuator: for each cycle in turn, the result it reports (or an exception it
    raises, as a controller killed while acting never returns); then empty results."""

    def __init__(self, *results: ActuationResult | BaseException,
                 reconcile: ActuationResult | None = None) -> None:
        self.results = list(results)
        self.plans: list[Plan] = []
        if reconcile is not None:
            self.reconcile = lambda: reconcile

    def apply(self, plan: Plan, fleet: FleetTable) -> ActuationResult:
        self.plans.append(plan)
        result = self.results.pop(0) if self.results else ActuationResult()
        if isinstance(result, BaseException):
            raise result
        return result


class Killed(BaseException):
    """The process dying mid-cycle (not an error the cycle could handle)."""


class UnusableMarket(FixedMarket):
    def snapshot(self, now_s: float) -> MarketSnapshot:
        raise FeedError("btc_usd: every source failed")


class Broken(Policy):
    name: ClassVar[str] = "broken"

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        raise RuntimeError("division by zero in the strike table")


class HistoryReader(Policy):
    """Keeps every node as it is; notes the history each decision was given."""

    name: ClassVar[str] = "history-reader"
    uses_history: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[MarketHistory] = []

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        self.seen.append(ctx.history)
        return PolicyDecision(target=ctx.fleet.mode.copy(),
                              reason=np.full(ctx.fleet.n, Reason.UNCHANGED, np.int16))


class HistoryMarket(FixedMarket):
    def __init__(self, history: MarketHistory) -> None:
        self.kept = history
        self.asked: list[float] = []

    def history(self, now_s: float) -> MarketHistory:
        self.asked.append(now_s)
        return self.kept


def names(n: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def make_cycle(tmp: Path, *, fleets: Fleets, actuator: Any = None, clock: Clock | None = None,
               config: HashpivotConfig | None = None, policy: Policy | None = None,
               mode: str = "live", market: Any = None, jobs: Jobs | None = None,
               memory: bool = True, metrics: ControllerMetrics | None = None,
               rejections: Callable[[], dict[str, dict[str, int]]] | None = None,
               targets: dict[str, str] | None = None) -> DecisionCycle:
    folder = tmp / "journal"
    deps = CycleDeps(
        clock=clock or Clock(), market=market or FixedMarket(), demand=jobs or Jobs(),
        fleet=fleets, actuator=actuator or Scripted(), journal=JsonlJournal(folder),
        metrics=metrics, feed_rejections=rejections,
        memory=StepMemoryStore(folder) if memory else None,
    )
    chosen = policy or load_policy(SCRIPTED, {"targets": targets or {}})
    return DecisionCycle(config or site_config(), mode, chosen, deps)


def inputs(outcome: CycleOutcome) -> Any:
    assert outcome.record.decision_inputs is not None
    return outcome.record.decision_inputs


# --- the decision inputs a replay needs ---------------------------------------------------


def test_decision_interval_is_the_backtest_step_in_dry_run_and_the_controller_interval_live(
    tmp_path: Path,
) -> None:
    config = site_config(backtest={"step_s": 900.0}, controller={"interval_s": 120.0})
    seen = {}
    for mode in ("dry-run", "live", "shadow"):
        cycle = make_cycle(tmp_path / mode, fleets=Fleets(names(2)), config=config, mode=mode)
        seen[mode] = inputs(cycle.run_once()).interval_s
    assert seen == {"dry-run": 900.0, "live": 120.0, "shadow": 120.0}


def test_decision_latency_is_the_time_the_decision_took(tmp_path: Path) -> None:
    metrics = ControllerMetrics(CollectorRegistry())
    cycle = make_cycle(tmp_path, fleets=Fleets(names(3)), metrics=metrics)
    before = time.perf_counter()
    record = cycle.run_once().record
    whole_cycle = time.perf_counter() - before
    # Part of the cycle, never more than all of it (nor negative).
    assert 0.0 < record.decision_latency_s <= whole_cycle
    observed = metrics.registry.get_sample_value("hashpivot_decision_latency_seconds_sum")
    assert observed == pytest.approx(record.decision_latency_s)


def test_offered_prices_and_frozen_flag_are_journaled_for_a_replayable_cycle(
    tmp_path: Path,
) -> None:
    # Two GPU nodes; 3 GPUs offered 4.0 and 1 GPU offered 2.0 USD/GPU-h: 3.5 on average.
    jobs = Jobs([AIJob(id="a", gpus=3, gpu_model=H100, offered_usd_per_gpu_hour=4.0),
                 AIJob(id="b", gpus=1, gpu_model=H100, offered_usd_per_gpu_hour=2.0),
                 AIJob(id="c", gpus=2, gpu_model=None)])
    cycle = make_cycle(tmp_path, fleets=Fleets(names(3), gpus=2), jobs=jobs)
    got = inputs(cycle.run_once())
    assert got.offered_usd_per_gpu_hour == [pytest.approx((3 * 4.0 + 1 * 2.0) / 4)]
    assert got.pending_gpus == [4.0] and got.pending_gpus_any_model == 2.0
    assert got.frozen is False
    # No job names a price: the market rental price applies, journaled as None.
    plain = make_cycle(tmp_path / "plain", fleets=Fleets(names(3), gpus=2),
                       jobs=Jobs([AIJob(id="a", gpus=1, gpu_model=H100)]))
    assert inputs(plain.run_once()).offered_usd_per_gpu_hour == [None]


def test_a_frozen_cycle_says_why_in_its_plan_summary(tmp_path: Path) -> None:
    frozen = make_cycle(tmp_path / "f", fleets=Fleets(names(2)),
                        config=site_config(guards={"frozen": True}), targets={"m0": "idle"})
    outcome = frozen.run_once()
    assert outcome.record.plan["frozen"] == "config guards.frozen"
    assert inputs(outcome).frozen is True
    running = make_cycle(tmp_path / "r", fleets=Fleets(names(2)), targets={"m0": "idle"})
    outcome = running.run_once()
    assert "frozen" not in outcome.record.plan
    assert outcome.record.plan["changes"] == 1


def test_a_history_is_read_only_for_a_policy_that_uses_one(tmp_path: Path) -> None:
    history = MarketHistory(times_s=np.array([T0 - 3600.0]),
                            hashprice_usd_ph_day=np.array([55.0]),
                            power_usd_mwh=np.array([41.0]))
    market = HistoryMarket(history)
    reader = HistoryReader()
    make_cycle(tmp_path / "r", fleets=Fleets(names(2)), policy=reader, market=market).run_once()
    assert market.asked == [T0]
    assert [h.power_usd_mwh.tolist() for h in reader.seen] == [[41.0]]
    # A policy that reads no history: the market is not asked for one.
    other = HistoryMarket(history)
    make_cycle(tmp_path / "s", fleets=Fleets(names(2)), market=other).run_once()
    assert other.asked == []


def test_a_site_contract_journals_its_month_to_date_peak(tmp_path: Path) -> None:
    config = site_config(sites=[{"name": "default", "power_cap_kw": 25.0,
                                 "contract": {"demand_charge_usd_per_kw_month": 7.0}}])
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), config=config)
    first = inputs(cycle.run_once())
    # The month starts with no peak: nothing drawn yet this month.
    assert first.contract_peak_kw == [0.0]
    plain = make_cycle(tmp_path / "plain", fleets=Fleets(names(2)))
    assert inputs(plain.run_once()).contract_peak_kw is None


# --- held cycles --------------------------------------------------------------------------


def test_a_market_that_cannot_be_read_holds_and_journals_why(tmp_path: Path) -> None:
    metrics = ControllerMetrics(CollectorRegistry())
    # Switches already under way keep moving: the actuator's reconcile pass is journaled.
    actuator = Scripted(reconcile=ActuationResult(writes=2, completed=["m1"]))
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), market=UnusableMarket(),
                       actuator=actuator, metrics=metrics)
    outcome = cycle.run_once()
    assert outcome.plan is None and not actuator.plans
    record = outcome.record
    assert record.plan == {"changes": 0, "held": "market unusable"}
    assert record.market_rejected == "btc_usd: every source failed"
    assert record.market is None
    journaled = last_record(tmp_path / "journal")
    assert journaled is not None
    assert journaled.actuation["completed"] == ["m1"] and journaled.actuation["writes"] == 2
    assert metrics.registry.get_sample_value("hashpivot_cycles_total",
                                             {"outcome": "held"}) == 1.0


def test_a_policy_that_fails_holds_and_journals_the_market_it_saw(tmp_path: Path) -> None:
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), policy=Broken())
    outcome = cycle.run_once()
    # Every node kept as it is, through the guards: a plan with no change, journaled
    # with the policy's name and why it was held.
    assert outcome.plan is not None and not outcome.plan.changed.size
    record = outcome.record
    assert record.plan["changes"] == 0 and record.policy == "broken"
    held = str(record.plan["held"])
    assert held.startswith("policy failed: ") and "division by zero" in held
    assert record.market_rejected is None and record.market is not None
    journaled = last_record(tmp_path / "journal")
    assert journaled is not None and journaled.actuation["writes"] == 0


def test_a_held_cycle_journals_the_first_500_pending_jobs_and_counts_them_all(
    tmp_path: Path,
) -> None:
    jobs = [AIJob(id=f"j{i}", gpus=1) for i in range(501)]
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), market=UnusableMarket(),
                       jobs=Jobs(jobs))
    record = cycle.run_once().record
    assert [j.id for j in record.demand.pending] == [f"j{i}" for i in range(500)]
    assert record.pending_jobs_total == 501


# --- the journal's size limits, at their boundaries ---------------------------------------


def test_a_replayable_cycle_journals_every_pending_job(tmp_path: Path) -> None:
    jobs = [AIJob(id=f"j{i}", gpus=1) for i in range(501)]
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), jobs=Jobs(jobs))
    record = cycle.run_once().record
    assert len(record.demand.pending) == 501 == record.pending_jobs_total


def test_fleets_of_up_to_5000_nodes_are_journaled_row_by_row(tmp_path: Path) -> None:
    jobs = Jobs([AIJob(id=f"j{i}", gpus=1) for i in range(501)])
    at_limit = make_cycle(tmp_path / "a", fleets=Fleets(names(5000)), jobs=jobs, memory=False)
    record = at_limit.run_once().record
    assert record.fleet_columns is not None and len(record.fleet_columns.names) == 5000
    assert record.decision_inputs is not None and len(record.decision_inputs.switch_since) == 5000
    assert record.policy_state_in is not None
    assert len(record.demand.pending) == 501
    # One node more: a summary and a sample of the jobs, no rows.
    over = make_cycle(tmp_path / "b", fleets=Fleets(names(5001)), jobs=jobs, memory=False)
    record = over.run_once().record
    assert record.fleet_columns is None and record.decision_inputs is None
    assert record.policy_state_in is None
    assert [j.id for j in record.demand.pending] == [f"j{i}" for i in range(500)]
    assert record.pending_jobs_total == 501
    assert sum(record.fleet_modes.values()) == 5001


def test_the_result_line_keeps_the_first_1000_nodes_of_each_list(tmp_path: Path) -> None:
    many = names(1001, "x")
    result = ActuationResult(started=list(many), completed=list(many),
                             began_earlier=dict.fromkeys(many, T0 - 1.0),
                             errors=dict.fromkeys(many, "patch failed"))
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), actuator=Scripted(result))
    cycle.run_once()
    journaled = last_record(tmp_path / "journal")
    assert journaled is not None
    kept = many[:1000]
    assert journaled.actuation["started"] == kept
    assert journaled.actuation["completed"] == kept
    assert list(journaled.actuation["began_earlier"]) == kept
    assert list(journaled.actuation["errors"]) == kept


# --- metrics ------------------------------------------------------------------------------


def test_actuation_errors_are_counted_by_the_kind_their_first_40_characters_name(
    tmp_path: Path,
) -> None:
    metrics = ControllerMetrics(CollectorRegistry())
    errors = {
        # The kind is read before the first colon: "node_patch", not the conflict after it.
        "m0": "node_patch: conflict on resourceVersion",
        # "conflict" ends on the 40th character: counted as a conflict.
        "m1": "x" * 32 + "conflict",
        # "conflict" ends on the 41st: past the 40 characters read, so "other".
        "m2": "y" * 33 + "conflict",
        "m3": "y" * 33 + "conflict",
    }
    cycle = make_cycle(tmp_path, fleets=Fleets(names(4)), metrics=metrics,
                       actuator=Scripted(ActuationResult(errors=errors)))
    cycle.run_once()

    def count(kind: str) -> float | None:
        return metrics.registry.get_sample_value("hashpivot_actuation_errors_total",
                                                 {"kind": kind})

    assert (count("node_patch"), count("conflict"), count("other")) == (1.0, 1.0, 2.0)


def test_feed_rejections_reach_the_metrics_every_cycle(tmp_path: Path) -> None:
    metrics = ControllerMetrics(CollectorRegistry())
    totals = {"mempool": {"stale": 3}}
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), metrics=metrics,
                       rejections=lambda: totals)
    cycle.run_once()
    assert metrics.registry.get_sample_value(
        "hashpivot_feed_rejections_total", {"source": "mempool", "reason": "stale"}) == 3.0
    # Without metrics the cycle runs as well (the counts are simply not read).
    make_cycle(tmp_path / "plain", fleets=Fleets(names(2)), rejections=lambda: totals).run_once()


# --- a restart resumes the switch budgets -------------------------------------------------


def run_cycles(cycle: DecisionCycle, clock: Clock, times: list[float]) -> list[CycleOutcome]:
    out = []
    for t in times:
        clock.t = t
        out.append(cycle.run_once())
    return out


T1, T2, T3 = T0, T0 + STEP, T0 + 2 * STEP
FOUR = names(4)
WANTED = {"m0": "idle", "m2": "idle"}


def cycle_two_results() -> list[ActuationResult]:
    """What the actuator reports: nothing begun at T1; at T2 it began m0 (m2 waits), and
    reports that a ramp began m1 at T1 + 30 s, between the cycles."""
    return [ActuationResult(),
            ActuationResult(started=["m0"], began_earlier={"m1": T1 + 30.0})]


def test_a_controller_killed_after_acting_but_before_saving_its_memory_resumes_the_budgets(
    tmp_path: Path,
) -> None:
    clock = Clock()
    results = cycle_two_results()
    first = make_cycle(tmp_path, fleets=Fleets(FOUR), actuator=Scripted(*results),
                       clock=clock, targets=WANTED)
    run_cycles(first, clock, [T1])
    # Killed after the T2 cycle's result line, before its memory was saved.
    first.deps.memory = None
    run_cycles(first, clock, [T2])
    again = make_cycle(tmp_path, fleets=Fleets(FOUR), clock=clock, targets=WANTED)
    got = inputs(run_cycles(again, clock, [T3])[0])
    # m0 switched at T2 (begun by the actuator), m1 at T1 + 30 (the ramp); m2 never began.
    assert got.switch_since == [T2, T1 + 30.0, 0.0, 0.0]
    assert got.switch_load == [1.0, 1.0, 0.0, 0.0]


def test_a_controller_killed_while_acting_counts_every_planned_change_as_begun(
    tmp_path: Path,
) -> None:
    clock = Clock()
    first = make_cycle(tmp_path, fleets=Fleets(FOUR), clock=clock, targets=WANTED,
                       actuator=Scripted(ActuationResult(), Killed()))
    run_cycles(first, clock, [T1])
    with pytest.raises(Killed):
        run_cycles(first, clock, [T2])
    record = last_record(tmp_path / "journal")
    assert record is not None and record.now_s == T2 and not record.actuation
    again = make_cycle(tmp_path, fleets=Fleets(FOUR), clock=clock, targets=WANTED)
    got = inputs(run_cycles(again, clock, [T3])[0])
    # No result line: both planned changes (m0, m2) count as begun at T2.
    assert got.switch_since == [T2, 0.0, T2, 0.0]
    assert got.switch_load == [1.0, 0.0, 1.0, 0.0]


def test_a_lost_memory_file_is_rebuilt_from_the_last_journaled_cycle(tmp_path: Path) -> None:
    clock = Clock()
    first = make_cycle(tmp_path, fleets=Fleets(FOUR), actuator=Scripted(*cycle_two_results()),
                       clock=clock, targets=WANTED)
    run_cycles(first, clock, [T1, T2])
    (tmp_path / "journal" / MEMORY_FILE).unlink()
    again = make_cycle(tmp_path, fleets=Fleets(FOUR), clock=clock, targets=WANTED)
    got = inputs(run_cycles(again, clock, [T3])[0])
    # From the T2 cycle's result line: m0 began at T2, the ramp began m1 at T1 + 30.
    assert got.switch_since == [T2, T1 + 30.0, 0.0, 0.0]
    assert got.switch_load == [1.0, 1.0, 0.0, 0.0]


def test_a_restart_after_a_saved_cycle_decides_as_if_the_controller_never_stopped(
    tmp_path: Path,
) -> None:
    # At T2 the fleet source lost m2 and m3, and the actuator reports ramp steps on them
    # (at T2 - 30 s and at T2): a node missing from the fleet gets no switch counted, so
    # at T3 both are back with no switch known, restart or not.
    def results() -> Scripted:
        return Scripted(ActuationResult(),
                        ActuationResult(started=["m0"],
                                        began_earlier={"m2": T2 - 30.0, "m3": T2}))

    def fleets() -> Fleets:
        return Fleets(FOUR, names(2), FOUR)

    wanted = {"m0": "idle"}
    clock = Clock()
    steady = make_cycle(tmp_path / "steady", fleets=fleets(), actuator=results(), clock=clock,
                        targets=wanted)
    kept = inputs(run_cycles(steady, clock, [T1, T2, T3])[2])
    clock = Clock()
    restarted_fleets = fleets()
    first = make_cycle(tmp_path / "restarted", fleets=restarted_fleets, actuator=results(),
                       clock=clock, targets=wanted)
    run_cycles(first, clock, [T1, T2])
    again = make_cycle(tmp_path / "restarted", fleets=restarted_fleets, clock=clock,
                       targets=wanted)
    got = inputs(run_cycles(again, clock, [T3])[0])
    assert got.switch_since == [T2, 0.0, 0.0, 0.0] == kept.switch_since
    assert got.switch_load == [1.0, 0.0, 0.0, 0.0] == kept.switch_load
    records = list(read_journal(tmp_path / "restarted" / "journal"))
    assert [r.now_s for r in records] == [T1, T2, T3]


class MarketDownOnce(FixedMarket):
    """Unusable for the second snapshot asked of it, whatever the clock says."""

    def __init__(self) -> None:
        self.calls = 0

    def snapshot(self, now_s: float) -> MarketSnapshot:
        self.calls += 1
        if self.calls == 2:
            raise FeedError("btc_usd: every source failed")
        return super().snapshot(now_s)


@pytest.mark.parametrize("held_at", [T1 + STEP, T1, T1 - STEP],
                         ids=["next-interval", "clock-stalled", "clock-stepped-back"])
def test_a_restart_after_a_held_cycle_decides_as_if_the_controller_never_stopped(
    tmp_path: Path, held_at: float,
) -> None:
    # T1 decided: the actuator began m0. Then a cycle held for an unusable market, whose
    # reconcile pass began m1, a switch held back earlier (a held cycle tells the decision
    # step nothing). At T3 the controller decides again, restarted or not.
    def cycle(folder: Path, clock: Clock) -> DecisionCycle:
        actuator = Scripted(ActuationResult(started=["m0"]),
                            reconcile=ActuationResult(writes=1, started=["m1"]))
        return make_cycle(folder, fleets=Fleets(FOUR), actuator=actuator, clock=clock,
                          market=MarketDownOnce(), targets={"m0": "idle"})

    clock = Clock()
    steady = cycle(tmp_path / "steady", clock)
    outcomes = run_cycles(steady, clock, [T1, held_at, T3])
    assert outcomes[1].plan is None
    kept = inputs(outcomes[2])
    clock = Clock()
    first = cycle(tmp_path / "restarted", clock)
    run_cycles(first, clock, [T1, held_at])
    again = cycle(tmp_path / "restarted", clock)
    got = inputs(run_cycles(again, clock, [T3])[0])
    assert got.switch_since == [T1, 0.0, 0.0, 0.0] == kept.switch_since
    assert got.switch_load == [1.0, 0.0, 0.0, 0.0] == kept.switch_load


def test_an_actuator_that_raises_after_the_journal_ends_the_cycle_with_its_error(
    tmp_path: Path,
) -> None:
    """The plan is journaled before acting: an actuator that raises (its port says it
    reports errors instead) leaves one journaled cycle, its error in the result, and no
    switch counted; the cycle is not decided again."""
    actuator = Scripted(RuntimeError("simulated site lost"))
    cycle = make_cycle(tmp_path, fleets=Fleets(names(2)), actuator=actuator,
                       targets={"m0": "idle"})
    outcome = cycle.run_once()
    assert [c.node for c in outcome.record.changes] == ["m0"]
    assert outcome.result.errors == {"actuator": "failed: RuntimeError"}
    assert outcome.result.started == []
    records = list(read_journal(tmp_path / "journal"))
    assert len(records) == 1
    assert records[0].actuation is not None
    assert records[0].actuation["errors"] == {"actuator": "failed: RuntimeError"}
    assert cycle.step.switch_history()[0].tolist() == [0.0, 0.0]  # nothing began
