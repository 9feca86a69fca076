"""The decision step's memory: adoption is not a switch, switches an actuator did not
begin are not counted, and a memory snapshot restores the budgets."""

from __future__ import annotations

import numpy as np

from orchestrator.engine.plan import Plan
from orchestrator.engine.step import DecisionStep
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import GuardConfig
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.modes import Mode
from policies.greedy import Greedy
from tests.conftest import make_prices, mixed_fleet

NOW = 1_760_000_000.0


def _decide(step: DecisionStep, fleet: FleetTable, now: float, power: float = 40.0) -> Plan:
    return step.decide(now_s=now, prices=make_prices(fleet, power_usd_mwh=power,
                                                     observed_s=now),
                       demand=DemandSummary.empty(len(fleet.gpu_models)), fleet=fleet)


def test_adopting_nodes_spends_no_fleet_budget() -> None:
    # Six miners that a fresh install finds with no `since` (never labelled), then adopts:
    # the cluster now says every node changed "since" a minute ago, with no mode change.
    fleet = mixed_fleet(3, 3, 0, modes=[Mode.MINE] * 6, since_s=0.0)
    guards = GuardConfig(min_dwell_s=0, max_fleet_switch_share_per_hour=0.5)
    step = DecisionStep(Greedy(), guards, interval_s=300.0)
    first = _decide(step, fleet, NOW)
    assert not first.changed.size  # cheap power: mining pays, nothing to do
    step.commit(first, started=[])
    adopted = fleet.with_columns(since=np.full(fleet.n, NOW + 240.0))
    # Power at $900/MWh: every miner should idle; the hourly fleet budget allows 3.
    spike = _decide(step, adopted, NOW + 300.0, power=900.0)
    assert spike.changed.size == 3
    assert int(np.count_nonzero(spike.reason == Reason.GUARD_FLEET_SWITCH_BUDGET)) == 3
    # Reading the cluster's `since` as switches instead would have held them all: the
    # engine's own guard counts every node "switched" within the hour.
    naive = DecisionStep(Greedy(), guards, interval_s=300.0)
    held = _decide(naive, adopted, NOW + 300.0, power=900.0)
    assert held.changed.size == 0
    assert int(np.count_nonzero(held.reason == Reason.GUARD_FLEET_SWITCH_BUDGET)) == 6


def test_only_begun_switches_count_and_memory_restores_them() -> None:
    fleet = mixed_fleet(3, 3, 0, modes=[Mode.MINE] * 6, since_s=0.0)
    guards = GuardConfig(min_dwell_s=0, max_switches_per_node_per_day=1,
                         max_fleet_switch_share_per_hour=1.0)
    step = DecisionStep(Greedy(), guards, interval_s=300.0)
    plan = _decide(step, fleet, NOW, power=900.0)
    assert plan.changed.size == 6
    begun = [str(plan.node_names[i]) for i in plan.changed[:2]]
    step.commit(plan, started=begun)  # the actuator began two; four were rate-limited
    last_s, load = step.switch_history()
    assert sorted(np.flatnonzero(last_s == NOW).tolist()) == plan.changed[:2].tolist()
    assert load.tolist() == [1.0 if s == NOW else 0.0 for s in last_s.tolist()]
    # A new controller from the memory: the two that switched are held by the budget,
    # even though the cluster (as read) shows them back in their old mode.
    again = DecisionStep(Greedy(), guards, interval_s=300.0)
    again.restore(step.memory())
    plan2 = _decide(again, fleet, NOW + 300.0, power=900.0)
    budget = np.flatnonzero(plan2.reason == Reason.GUARD_NODE_SWITCH_BUDGET).tolist()
    assert budget == plan.changed[:2].tolist()
    assert plan2.changed.size == 4


def test_switches_a_ramp_began_between_cycles_count_against_the_budget() -> None:
    fleet = mixed_fleet(4, 0, 0, modes=[Mode.MINE] * 4, since_s=0.0)
    guards = GuardConfig(min_dwell_s=0, max_switches_per_node_per_day=1,
                         max_fleet_switch_share_per_hour=2.0)
    step = DecisionStep(Greedy(), guards, interval_s=300.0)
    plan = _decide(step, fleet, NOW, power=900.0)
    assert plan.changed.size == 4
    names = [str(x) for x in plan.node_names]
    # The ramp's first step curtails one miner; its later steps curtail two more before
    # the next cycle; the fourth is still waiting, and one name is not in this fleet.
    step.commit(plan, started=names[:1])
    step.count_began({names[1]: NOW + 60.0, names[2]: NOW + 120.0, "elsewhere": NOW + 1.0})
    last_s, load = step.switch_history()
    assert last_s.tolist() == [NOW, NOW + 60.0, NOW + 120.0, 0.0]
    assert load.tolist() == [1.0, 1.0, 1.0, 0.0]
    # Reported again (a repeated result): counted once.
    step.count_began({names[1]: NOW + 60.0})
    assert step.switch_history()[1].tolist() == [1.0, 1.0, 1.0, 0.0]
    # Back at cheap power the three that switched are held by the per-node budget.
    curtailed = fleet.with_columns(mode=np.array([Mode.IDLE] * 3 + [Mode.MINE], np.int8))
    calm = _decide(step, curtailed, NOW + 300.0, power=20.0)
    held = np.flatnonzero(calm.reason == Reason.GUARD_NODE_SWITCH_BUDGET).tolist()
    assert held == [0, 1, 2]
