"""Whatever a policy returns, guards keep the cap, the leases, the dwell and the stale hold.

Every expectation here is computed from the test's own inputs: the hardware profiles'
watts, the nodes' switch times, the lease ends and the clock. Nothing is read back from
the context the code under test built (its dwell times, its watts table, its stale flag),
so a guard that misreads one of those is caught instead of agreed with.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator.engine import build_context, decide, kernels
from orchestrator.engine.guards import apply_guards
from orchestrator.errors import PolicyError
from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason
from orchestrator.models import DemandSummary, FleetTable, HardwareProfile, Mode, Site
from orchestrator.models.config import GuardConfig
from tests.conftest import make_prices, profiles

NOW = 1_000_000.0
PROFILES = profiles("s19-xp", "s21", "h100-sxm-8x")
STALE_AFTER_S = 600.0
#: Lease ends relative to NOW: past, now, about to end (seconds to 30 min), long.
LEASE_ENDS = (-3600.0, -1.0, 0.0, 1.0, 60.0, 600.0, 1200.0, 1799.0, 1801.0, 3600.0, 86_400.0)
#: Seconds since the last switch: just now, minutes ago, around each dwell, long ago.
AGES = (0.0, 1.0, 300.0, 599.0, 600.0, 1200.0, 1799.0, 1800.0, 3599.0, 3600.0, 7199.0,
        7200.0, 20_000.0)


def watts(profile: HardwareProfile, mode: int) -> float:
    """Full-load draw of a profile in a mode, from the profile itself."""
    return (profile.watts_idle, profile.watts_mine, profile.watts_ai)[mode]


def planned_w(prof: np.ndarray, target: np.ndarray) -> float:
    return float(sum(watts(PROFILES[p], int(t)) for p, t in zip(prof, target, strict=True)))


class Wants(Policy):
    """Returns the targets it was given."""

    name = "wants"

    def __init__(self, target: np.ndarray) -> None:
        super().__init__()
        self.target = target

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        reason = np.full(ctx.fleet.n, Reason.HIGHER_VALUE, dtype=np.int16)
        return PolicyDecision(target=self.target, reason=reason)


def site_fleet(
    prof: list[int], modes: list[int], *, cap_kw: float | None = None,
    age_s: list[float] | None = None, lease_end: list[float] | None = None,
    interruptible: list[bool] | None = None,
) -> FleetTable:
    n = len(prof)
    fleet = FleetTable.build(PROFILES, [Site(name="s", power_cap_kw=cap_kw)], prof, modes=modes)
    is_gpu = np.array([PROFILES[p].gpus > 0 for p in prof], dtype=bool)
    ai = np.array(modes) == Mode.AI
    return fleet.with_columns(
        since=NOW - np.array(age_s if age_s is not None else [1e6] * n, dtype=np.float64),
        lease_until=np.array(lease_end if lease_end is not None else [0.0] * n,
                             dtype=np.float64),
        ai_interruptible=np.array(interruptible if interruptible is not None else [False] * n,
                                  dtype=bool),
        ai_gpus_busy=np.where(is_gpu & ai, 4.0, 0.0),
    )


def run(fleet: FleetTable, target: list[int] | np.ndarray, guards: GuardConfig, *,
        observed_s: float = NOW, switch_load: np.ndarray | None = None):
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=observed_s),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=guards)
    return decide(ctx, Wants(np.asarray(target)), guards, switch_load=switch_load)


GUARDS = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0,
                     stale_after_s=STALE_AFTER_S)


# -- the power cap ---------------------------------------------------------------------------

# 2 S19 XP (3,010 W, 140 TH) and 2 S21 (3,500 W, 200 TH) mining: 13.02 kW on a 7.1 kW cap.
CAP_FLEET = ([0, 0, 1, 1], [Mode.MINE] * 4, 7.1)


def _cap_expectation() -> tuple[list[int], float]:
    """Least revenue per watt gives way (the S19 XPs), each saving mine − idle watts,
    until the excess is covered; worked out from the profiles alone."""
    prof, _, cap_kw = CAP_FLEET
    excess = planned_w(np.array(prof), np.full(4, Mode.MINE)) - cap_kw * 1000.0
    order = sorted(range(4), key=lambda i: PROFILES[prof[i]].mine_hashrate
                   / PROFILES[prof[i]].watts_mine)
    target = [int(Mode.MINE)] * 4
    for i in order:
        if excess <= 0:
            break
        target[i] = int(Mode.IDLE)
        excess -= PROFILES[prof[i]].watts_mine - PROFILES[prof[i]].watts_idle
    return target, planned_w(np.array(prof), np.array(target))


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_power_cap_curtails_even_while_stale_data_holds_the_fleet(stale: bool) -> None:
    prof, modes, cap_kw = CAP_FLEET
    fleet = site_fleet(prof, modes, cap_kw=cap_kw)
    observed = NOW - STALE_AFTER_S - 1.0 if stale else NOW
    plan = run(fleet, modes, GUARDS, observed_s=observed)
    expected, expected_w = _cap_expectation()
    assert expected == [Mode.IDLE, Mode.IDLE, Mode.MINE, Mode.MINE]  # the example's premise
    assert expected_w <= cap_kw * 1000.0
    assert plan.target.tolist() == expected
    assert planned_w(np.array(prof), plan.target) <= cap_kw * 1000.0
    assert plan.reason.tolist()[:2] == [Reason.GUARD_POWER_CAP_CURTAILED] * 2
    assert plan.site_power_w[0] == pytest.approx(expected_w)
    assert not plan.site_over_cap[0]
    # A stale market holds everything else: no other node moved.
    if stale:
        assert plan.stale


@pytest.mark.parametrize("curtail", [1, 2, 3])
def test_power_cap_has_no_slack(curtail: int) -> None:
    """Four S21s mining under a cap 100 W short of what `curtail - 1` curtailments would
    leave: exactly `curtail` of them go idle, and the plan is at most the cap."""
    s21 = PROFILES[1]
    saving = s21.watts_mine - s21.watts_idle
    total = 4 * s21.watts_mine
    cap_w = total - (curtail - 1) * saving - 100.0
    fleet = site_fleet([1] * 4, [Mode.MINE] * 4, cap_kw=cap_w / 1000.0)
    plan = run(fleet, [Mode.MINE] * 4, GUARDS)
    assert plan.target.tolist().count(Mode.IDLE) == curtail
    assert planned_w(np.array([1] * 4), plan.target) == total - curtail * saving <= cap_w


@pytest.mark.parametrize("curtail", [1, 2])
def test_power_cap_curtails_no_more_than_it_must(curtail: int) -> None:
    """A cap exactly what `curtail` curtailments leave: exactly `curtail` go idle."""
    s21 = PROFILES[1]
    saving = s21.watts_mine - s21.watts_idle
    total = 4 * s21.watts_mine
    cap_w = total - curtail * saving
    fleet = site_fleet([1] * 4, [Mode.MINE] * 4, cap_kw=cap_w / 1000.0)
    plan = run(fleet, [Mode.MINE] * 4, GUARDS)
    assert plan.target.tolist().count(Mode.IDLE) == curtail
    assert planned_w(np.array([1] * 4), plan.target) == total - curtail * saving <= cap_w


def test_stale_is_measured_from_the_oldest_market_value() -> None:
    """A fresh price does not make a two-hour-old difficulty fresh: the fleet is held."""
    from datetime import UTC, datetime, timedelta

    from orchestrator.engine.prices import snapshot_to_prices
    from orchestrator.models.market import MarketSnapshot, Observed

    now = datetime.fromtimestamp(NOW, UTC)

    def obs(v: float, age_s: float = 0.0) -> Observed:
        return Observed(value=v, source="test", observed_at=now - timedelta(seconds=age_s))

    fleet = site_fleet([1, 1, 1], [Mode.MINE] * 3)
    guards = GUARDS.model_copy(update={"stale_after_s": 3600.0})
    for difficulty_age, stale in ((7200.0, True), (3599.0, False)):
        snap = MarketSnapshot(btc_usd=obs(97_000.0), difficulty=obs(1.1e14, difficulty_age),
                              fees_btc_per_block=obs(0.1), subsidy_btc=obs(3.125),
                              power_usd_mwh={"default": obs(40.0)})
        ctx = build_context(now_s=NOW, prices=snapshot_to_prices(snap, fleet),
                            demand=DemandSummary.empty(1), fleet=fleet, guards=guards)
        plan = decide(ctx, Wants(np.array([Mode.IDLE] * 3)), guards)
        expected = [Mode.MINE] * 3 if stale else [Mode.IDLE] * 3
        assert plan.target.tolist() == expected, f"difficulty {difficulty_age:.0f} s old"


def test_power_cap_never_curtails_a_protected_lease_about_to_end() -> None:
    # One H100 node in AI (7.1 kW) whose lease ends in 20 minutes and one S21: cap 5 kW.
    fleet = site_fleet([2, 1], [Mode.AI, Mode.MINE], cap_kw=5.0, lease_end=[NOW + 1200.0, 0.0])
    plan = run(fleet, [Mode.AI, Mode.MINE], GUARDS)
    assert plan.target.tolist() == [Mode.AI, Mode.IDLE]
    ai_w = PROFILES[2].watts_ai + PROFILES[1].watts_idle
    assert plan.site_power_w[0] == pytest.approx(ai_w)
    # Only protected work is left and it is still over: the plan says so.
    assert bool(plan.site_over_cap[0]) == (ai_w > 5000.0)


def test_a_site_left_exactly_at_its_cap_is_not_over_it_and_half_a_watt_more_is() -> None:
    # What stays after curtailment: the leased AI node and the S21 at idle. A cap of
    # exactly that draw is met; half a watt less is not (only protected work is left).
    left_w = PROFILES[2].watts_ai + PROFILES[1].watts_idle
    for cap_w, over in ((left_w, False), (left_w - 0.5, True)):
        fleet = site_fleet([2, 1], [Mode.AI, Mode.MINE], cap_kw=cap_w / 1000.0,
                           lease_end=[NOW + 1200.0, 0.0])
        plan = run(fleet, [Mode.AI, Mode.MINE], GUARDS)
        assert plan.target.tolist() == [Mode.AI, Mode.IDLE]
        assert plan.site_power_w[0] == pytest.approx(left_w)
        assert bool(plan.site_over_cap[0]) == over, cap_w


# -- protected leases ------------------------------------------------------------------------


@pytest.mark.parametrize("ends_in_s", [1.0, 60.0, 1200.0, 1799.0, 1801.0, 3600.0])
def test_lease_that_has_not_ended_keeps_its_node_in_ai(ends_in_s: float) -> None:
    fleet = site_fleet([2, 2, 2], [Mode.AI] * 3,
                       lease_end=[NOW + ends_in_s, NOW - 1.0, NOW + ends_in_s],
                       interruptible=[False, False, True])
    plan = run(fleet, [Mode.MINE] * 3, GUARDS)
    # Protected and running: kept. Ended: free to go. Interruptible: free to go.
    assert plan.target.tolist() == [Mode.AI, Mode.MINE, Mode.MINE]
    assert plan.reason[0] == Reason.GUARD_LEASE_PROTECTED


# -- minimum dwell ---------------------------------------------------------------------------


@pytest.mark.parametrize("min_dwell_s", [600.0, 1800.0, 3600.0, 7200.0])
def test_min_dwell_counts_from_the_last_switch(min_dwell_s: float) -> None:
    ages = [0.0, 600.0 - 1.0, min_dwell_s - 1.0, min_dwell_s, min_dwell_s + 600.0]
    # Five long-settled miners that stay put: nodes that switched within the hour count
    # against the fleet's hourly budget, and this test is about dwell alone.
    fleet = site_fleet([1] * 10, [Mode.MINE] * 10, age_s=ages + [1e6] * 5)
    guards = GUARDS.model_copy(update={"min_dwell_s": min_dwell_s})
    plan = run(fleet, [Mode.IDLE] * 5 + [Mode.MINE] * 5, guards)
    expected = [Mode.MINE if age < min_dwell_s else Mode.IDLE for age in ages]
    assert plan.target.tolist()[:5] == expected
    held = [a < min_dwell_s for a in ages]
    assert [r == Reason.GUARD_MIN_DWELL for r in plan.reason.tolist()[:5]] == held


def test_node_switched_ten_minutes_ago_stays_for_an_hour_dwell() -> None:
    fleet = site_fleet([1, 1, 1], [Mode.IDLE] * 3, age_s=[600.0, 3601.0, 1e6])
    guards = GUARDS.model_copy(update={"min_dwell_s": 3600.0})
    plan = run(fleet, [Mode.MINE, Mode.MINE, Mode.IDLE], guards)
    assert plan.target.tolist() == [Mode.IDLE, Mode.MINE, Mode.IDLE]
    assert plan.reason[0] == Reason.GUARD_MIN_DWELL


# -- per-node switch budget, caps per site ----------------------------------------------------


def test_node_switch_budget_counts_switches_that_decay_over_a_day() -> None:
    """A node's recent switches count half after a day (the budget's half-life): with 3
    switches a day allowed, 4.5 switches a day ago count 2.25 and one more is too many;
    3.9 count 1.95 and one more fits."""
    fleet = site_fleet([1] * 3, [Mode.MINE] * 3, age_s=[86_400.0] * 3)
    guards = GUARDS.model_copy(update={"max_switches_per_node_per_day": 3.0})
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=guards)
    plan = decide(ctx, Wants(np.array([Mode.IDLE] * 3)), guards,
                  switch_load=np.array([4.5, 3.9, 0.0]))
    assert plan.target.tolist() == [Mode.MINE, Mode.IDLE, Mode.IDLE]
    assert plan.reason[0] == Reason.GUARD_NODE_SWITCH_BUDGET
    with pytest.raises(ValueError, match="switch_load: expected 3 values"):
        decide(ctx, Wants(np.array([Mode.IDLE] * 3)), guards, switch_load=np.zeros(2))


def test_a_node_exactly_one_switch_under_its_budget_may_switch_once_more() -> None:
    """3 switches a day allowed; a node whose decayed count is exactly 2 may switch (it
    reaches 3, not more), one at 2.01 may not."""
    fleet = site_fleet([1] * 3, [Mode.MINE] * 3, age_s=[0.0, 0.0, 1e6])
    # The two that just switched must not use up the fleet's hourly budget.
    guards = GUARDS.model_copy(update={"max_switches_per_node_per_day": 3.0,
                                       "max_fleet_switch_share_per_hour": 2.0})
    plan = run(fleet, [Mode.IDLE] * 3, guards, switch_load=np.array([2.0, 2.01, 0.0]))
    assert plan.target.tolist() == [Mode.IDLE, Mode.MINE, Mode.IDLE]
    assert plan.reason[1] == Reason.GUARD_NODE_SWITCH_BUDGET


def test_a_switch_load_recorded_this_instant_has_not_decayed_at_all() -> None:
    """3 switches a day allowed and a node that switched just now (age 0) with a count of
    2.000001: nothing has decayed yet, so one more switch would make it over 3."""
    fleet = site_fleet([1, 1], [Mode.MINE] * 2, age_s=[0.0, 1e6])
    guards = GUARDS.model_copy(update={"max_switches_per_node_per_day": 3.0,
                                       "max_fleet_switch_share_per_hour": 2.0})
    plan = run(fleet, [Mode.IDLE] * 2, guards, switch_load=np.array([2.000001, 0.0]))
    assert plan.target.tolist() == [Mode.MINE, Mode.IDLE]
    assert plan.reason[0] == Reason.GUARD_NODE_SWITCH_BUDGET


def test_a_switch_exactly_an_hour_old_no_longer_counts_against_the_hourly_budget() -> None:
    """One switch per hour for two nodes (share 0.5): a node that switched exactly an hour
    ago leaves the hour's switch free; one that switched a second later does not."""
    guards = GUARDS.model_copy(update={"max_fleet_switch_share_per_hour": 0.5})
    for age_s, free in ((3600.0, True), (3599.0, False)):
        fleet = site_fleet([1, 1], [Mode.MINE] * 2, age_s=[age_s, 1e6])
        plan = run(fleet, [Mode.MINE, Mode.IDLE], guards)
        assert plan.target.tolist() == [Mode.MINE, Mode.IDLE if free else Mode.MINE], age_s
        if not free:
            assert plan.reason[1] == Reason.GUARD_FLEET_SWITCH_BUDGET


def test_a_lease_that_ends_now_no_longer_protects_its_node() -> None:
    """A non-interruptible AI lease protects its node until it ends: at its end the
    policy may move the node; a second before, it may not."""
    for lease_end, free in ((NOW, True), (NOW + 1.0, False)):
        fleet = site_fleet([2], [Mode.AI], lease_end=[lease_end])
        plan = run(fleet, [Mode.IDLE], GUARDS)
        assert plan.target.tolist() == [Mode.IDLE if free else Mode.AI], lease_end
        if not free:
            assert plan.reason[0] == Reason.GUARD_LEASE_PROTECTED


def test_one_cap_applies_to_every_site_and_a_wrong_count_is_refused() -> None:
    import dataclasses

    # Two sites, two mining S21s each (7 kW per site); one 3.6 kW cap for both.
    fleet = FleetTable.build(PROFILES, [Site(name="a"), Site(name="b")], [1, 1, 1, 1],
                             modes=[Mode.MINE] * 4, node_sites=[0, 0, 1, 1])
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    one_cap = dataclasses.replace(ctx, site_power_cap_w=np.array(3600.0))
    plan = decide(one_cap, Wants(np.array([Mode.MINE] * 4)), GUARDS)
    per_site = [planned_w(np.array([1, 1]), plan.target[:2]),
                planned_w(np.array([1, 1]), plan.target[2:])]
    assert per_site == [PROFILES[1].watts_mine + PROFILES[1].watts_idle] * 2
    three = dataclasses.replace(ctx, site_power_cap_w=np.array([3600.0] * 3))
    with pytest.raises(ValueError, match="one per site"):
        decide(three, Wants(np.array([Mode.MINE] * 4)), GUARDS)


# -- fleet budget, and who gives way under the cap -------------------------------------------


def test_fleet_budget_counts_this_hours_switches_and_keeps_the_most_valuable() -> None:
    """Half of 6 nodes may switch per hour: 3. One switched 30 minutes ago, so 2 more may;
    the policy asks 4 idle miners to mine, and the two S21s (more value each) go first.
    A node that never switched (since 0) does not count."""
    fleet = site_fleet([0, 0, 1, 1, 1, 1], [Mode.IDLE] * 4 + [Mode.MINE] * 2,
                       age_s=[1e6] * 4 + [1800.0, 1e6])
    fleet = fleet.with_columns(since=np.where(np.arange(6) == 5, 0.0, fleet.since))
    guards = GUARDS.model_copy(update={"max_fleet_switch_share_per_hour": 0.5})
    plan = run(fleet, [Mode.MINE] * 6, guards)
    assert plan.target.tolist() == [Mode.IDLE, Mode.IDLE, Mode.MINE, Mode.MINE, Mode.MINE,
                                    Mode.MINE]
    assert plan.reason.tolist()[:2] == [Reason.GUARD_FLEET_SWITCH_BUDGET] * 2


def test_cap_reverts_the_planned_additions_worth_least_per_watt() -> None:
    """Two idle S19 XPs and two idle S21s asked to mine under a 7.1 kW cap (with 60 W of
    idle boards): the additions worth least per added watt (the S19 XPs) are reverted."""
    fleet = site_fleet([0, 0, 1, 1], [Mode.IDLE] * 4, cap_kw=7.1)
    plan = run(fleet, [Mode.MINE] * 4, GUARDS)
    assert plan.target.tolist() == [Mode.IDLE, Mode.IDLE, Mode.MINE, Mode.MINE]
    assert plan.reason.tolist()[:2] == [Reason.GUARD_POWER_CAP_REVERTED] * 2
    assert planned_w(np.array([0, 0, 1, 1]), plan.target) <= 7100.0


def test_cap_curtails_nodes_inside_their_dwell_last() -> None:
    """Three identical mining S21s, one more than the cap allows: the two that switched
    long ago are candidates before the one inside its dwell, whatever the fleet order."""
    s21 = PROFILES[1]
    cap_kw = (2 * s21.watts_mine + s21.watts_idle + 100.0) / 1000.0
    for young in range(3):
        ages = [1e6] * 3
        ages[young] = 60.0
        fleet = site_fleet([1] * 3, [Mode.MINE] * 3, cap_kw=cap_kw, age_s=ages)
        guards = GUARDS.model_copy(update={"min_dwell_s": 3600.0})
        plan = run(fleet, [Mode.MINE] * 3, guards)
        assert plan.target[young] == Mode.MINE
        assert plan.target.tolist().count(Mode.IDLE) == 1


def test_cap_ties_give_way_in_fleet_order() -> None:
    """Three identical mining S21s, room for two: the first in fleet order gives way, the
    same one every time."""
    s21 = PROFILES[1]
    fleet = site_fleet([1] * 3, [Mode.MINE] * 3,
                       cap_kw=(2 * s21.watts_mine + s21.watts_idle) / 1000.0)
    plan = run(fleet, [Mode.MINE] * 3, GUARDS)
    assert plan.target.tolist() == [Mode.IDLE, Mode.MINE, Mode.MINE]


def test_cap_reverts_a_change_that_adds_power_whatever_the_modes() -> None:
    """A GPU profile that draws more mining than serving AI: leaving AI for mining adds
    power, so under a tight cap that change is reverted rather than a miner curtailed."""
    h100 = PROFILES[2]
    hot = HardwareProfile(**{**h100.model_dump(), "name": "hot-miner",
                             "watts_mine": h100.watts_ai + 900.0})
    profs = [hot, PROFILES[1]]
    fleet = FleetTable.build(profs, [Site(name="s", power_cap_kw=(
        h100.watts_ai + PROFILES[1].watts_mine + 100.0) / 1000.0)], [0, 1],
        modes=[Mode.AI, Mode.MINE])
    fleet = fleet.with_columns(since=np.full(2, NOW - 1e6))
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    plan = decide(ctx, Wants(np.array([Mode.MINE, Mode.MINE])), GUARDS)
    assert plan.target.tolist() == [Mode.AI, Mode.MINE]
    assert plan.reason[0] == Reason.GUARD_POWER_CAP_REVERTED


# -- the property ----------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    n = draw(st.integers(min_value=0, max_value=30))
    prof = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    modes = [m if not (m == Mode.AI and p != 2) else int(Mode.MINE)
             for m, p in zip(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), prof,
                             strict=True)]
    ages = draw(st.lists(st.one_of(st.sampled_from(AGES), st.floats(0, 20_000)),
                         min_size=n, max_size=n))
    leases = draw(st.lists(st.one_of(st.none(), st.sampled_from(LEASE_ENDS)),
                           min_size=n, max_size=n))
    return {
        "prof": prof,
        "modes": modes,
        "ages": ages,
        "lease_end": [0.0 if e is None else NOW + e for e in leases],
        "interruptible": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "cap_kw": draw(st.floats(min_value=1.0, max_value=200.0)),
        "min_dwell_s": draw(st.sampled_from([0.0, 600.0, 1800.0, 3600.0, 7200.0])),
        "share": draw(st.sampled_from([0.1, 0.5, 1.0])),
        "stale": draw(st.booleans()),
        # Anything a buggy policy might return, including invalid modes and NaN.
        "raw": draw(st.lists(st.sampled_from([0, 1, 2, 3, -1, 7, float("nan")]), min_size=n,
                             max_size=n)),
    }


# Failures found so far, kept so every run tries them.
@example({  # a node switched ten minutes ago under an hour's dwell
    "prof": [1], "modes": [Mode.IDLE], "ages": [600.0], "lease_end": [0.0],
    "interruptible": [False], "cap_kw": 100.0, "min_dwell_s": 3600.0, "share": 1.0,
    "stale": False, "raw": [1],
})
@example({  # a lease ending in 20 minutes, the policy sends the node mining
    "prof": [2], "modes": [Mode.AI], "ages": [20_000.0], "lease_end": [NOW + 1200.0],
    "interruptible": [False], "cap_kw": 100.0, "min_dwell_s": 0.0, "share": 1.0,
    "stale": False, "raw": [1],
})
@example({  # 13.02 kW of miners on a 7.1 kW cap while the market is stale
    "prof": [0, 0, 1, 1], "modes": [1, 1, 1, 1], "ages": [20_000.0] * 4,
    "lease_end": [0.0] * 4, "interruptible": [False] * 4, "cap_kw": 7.1,
    "min_dwell_s": 3600.0, "share": 1.0, "stale": True, "raw": [1, 1, 1, 1],
})
@given(scenarios())
def test_guards_hold_cap_leases_dwell_and_stale_hold(s: dict) -> None:
    prof = np.array(s["prof"], dtype=np.int64)
    modes = np.array(s["modes"], dtype=np.int8)
    n = prof.shape[0]
    fleet = site_fleet(s["prof"], s["modes"], cap_kw=s["cap_kw"], age_s=s["ages"],
                       lease_end=s["lease_end"], interruptible=s["interruptible"])
    guards = GuardConfig(min_dwell_s=s["min_dwell_s"], stale_after_s=STALE_AFTER_S,
                         max_fleet_switch_share_per_hour=s["share"])
    observed = NOW - STALE_AFTER_S - 1.0 if s["stale"] else NOW
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=observed),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=guards)
    decision = PolicyDecision(target=np.array(s["raw"], dtype=np.float64),  # type: ignore[arg-type]
                              reason=np.zeros(n, dtype=np.int16))
    plan = apply_guards(ctx, decision, guards)
    target = plan.target

    # What the inputs say, worked out here.
    is_asic = np.array([PROFILES[p].gpus == 0 for p in prof], dtype=bool)
    protected = ((modes == Mode.AI) & (np.array(s["lease_end"]) > NOW)
                 & ~np.array(s["interruptible"], dtype=bool))
    young = np.array(s["ages"]) < s["min_dwell_s"]
    cap_w = s["cap_kw"] * 1000.0
    moved = target != modes
    curtailed = moved & (plan.reason == Reason.GUARD_POWER_CAP_CURTAILED)

    # Valid modes only, and never AI on an ASIC.
    assert set(np.unique(target).tolist()) <= {0, 1, 2}
    assert not np.any((target == Mode.AI) & is_asic)

    # Protected leases are never cut short, whatever else happens.
    assert np.all(target[protected] == Mode.AI)

    # The cap: the planned draw fits, or nothing but protected work is left running.
    draw_w = planned_w(prof, target)
    assert plan.site_power_w[0] == pytest.approx(draw_w, abs=1e-6)
    if draw_w > cap_w + 1e-6:
        assert plan.site_over_cap[0]
        assert np.all((target == Mode.IDLE) | protected)
    else:
        assert not plan.site_over_cap[0]

    # Only the cap may move a node for reasons of its own, and only to idle.
    assert np.all(target[curtailed] == Mode.IDLE)

    # Dwell: no node inside its dwell moves, unless the cap curtails it.
    assert np.all(curtailed[young & moved])

    # Stale data: nothing moves but what the cap curtails.
    if s["stale"]:
        assert np.all(curtailed[moved])

    # The plan lists exactly the nodes whose target differs from their mode.
    assert plan.changed.tolist() == np.flatnonzero(moved).tolist()

    # The fleet switch budget holds for voluntary changes.
    voluntary = moved & ~curtailed
    assert np.count_nonzero(voluntary) <= max(int(np.floor(s["share"] * n)), 1)


# -- other holds -----------------------------------------------------------------------------


def test_stale_market_holds_every_node() -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], [0, 0], modes=[1, 1], since_s=0.0)
    guards = GuardConfig(stale_after_s=600.0, min_dwell_s=0.0,
                         max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW - 601.0),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
    plan = apply_guards(ctx, PolicyDecision(np.zeros(2, dtype=np.int8),
                                            np.zeros(2, dtype=np.int16)), guards)
    assert np.all(plan.target == Mode.MINE)
    assert np.all(plan.reason == Reason.GUARD_STALE_DATA)
    # One second younger than the limit: fresh, the policy's targets stand.
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW - 600.0),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
    plan = apply_guards(ctx, PolicyDecision(np.zeros(2, dtype=np.int8),
                                            np.zeros(2, dtype=np.int16)), guards)
    assert np.all(plan.target == Mode.IDLE)


def test_frozen_holds_and_opt_out_is_respected() -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], [0, 0], modes=[1, 1], since_s=0.0)
    fleet = fleet.with_columns(opt_out=np.array([True, False]))
    prices = make_prices(fleet, observed_s=NOW)
    idle = PolicyDecision(np.zeros(2, dtype=np.int8), np.zeros(2, dtype=np.int16))
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(now_s=NOW, prices=prices, demand=DemandSummary.empty(0), fleet=fleet,
                        guards=guards)
    plan = apply_guards(ctx, idle, guards)
    assert plan.target.tolist() == [Mode.MINE, Mode.IDLE]
    assert plan.reason[0] == Reason.GUARD_OPT_OUT
    frozen = guards.model_copy(update={"frozen": True})
    plan = apply_guards(ctx, idle, frozen)
    assert np.all(plan.target == Mode.MINE)
    assert plan.reason[1] == Reason.GUARD_FROZEN


@pytest.mark.parametrize("shape", [(3,), (1,), (2, 1), (1, 2), ()])
@pytest.mark.parametrize("which", ["target", "reason"])
def test_wrong_shape_policy_output_is_refused(shape: tuple[int, ...], which: str) -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], [0, 0], modes=[1, 1])
    guards = GuardConfig()
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
    wrong, right = np.zeros(shape, dtype=np.int8), np.zeros(2, dtype=np.int8)
    target, reason = (wrong, right) if which == "target" else (right, wrong)
    with pytest.raises(PolicyError, match="expected \\(2,\\)"):
        apply_guards(ctx, PolicyDecision(target, reason.astype(np.int16)), guards)


def test_switch_load_of_the_wrong_length_is_refused() -> None:
    fleet = site_fleet([1] * 3, [Mode.MINE] * 3)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    for wrong in (np.zeros(2), np.zeros(4), np.zeros((3, 1))):
        with pytest.raises(ValueError, match="switch_load: expected 3 values"):
            decide(ctx, Wants(np.array([Mode.IDLE] * 3)), GUARDS, switch_load=wrong)


def test_policy_declared_reasons_pass_and_undeclared_ones_are_refused() -> None:
    class Declares(Wants):
        reasons: ClassVar[dict[int, str]] = {101: "power above the strike price: curtailed"}

        def __init__(self, target: np.ndarray, code: int) -> None:
            super().__init__(target)
            self.code = code

        def decide(self, ctx: DecisionContext) -> PolicyDecision:
            return PolicyDecision(self.target, np.full(ctx.fleet.n, self.code, np.int16))

    fleet = site_fleet([1] * 2, [Mode.MINE] * 2)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    plan = decide(ctx, Declares(np.array([Mode.IDLE] * 2), 101), GUARDS)
    assert plan.target.tolist() == [Mode.IDLE] * 2 and plan.reason.tolist() == [101, 101]
    with pytest.raises(PolicyError, match="unknown reason codes"):
        decide(ctx, Declares(np.array([Mode.IDLE] * 2), 102), GUARDS)


@pytest.mark.parametrize("dtype", ["float16", ">i8", "<i8", ">f8", "longdouble", "uint16"])
def test_targets_of_any_real_dtype_decide_like_plain_integers(dtype: str) -> None:
    """Compiled loops read native integers and 32/64-bit floats as they are; any other
    real dtype (half floats, byte-swapped, long double) is converted first, so every one
    gives the plan plain integers give."""
    fleet = site_fleet([1, 1, 2], [Mode.MINE, Mode.IDLE, Mode.MINE])
    wanted = [Mode.IDLE, Mode.MINE, Mode.AI]
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    reason = np.full(3, Reason.HIGHER_VALUE, dtype=np.dtype(dtype))
    plan = apply_guards(ctx, PolicyDecision(np.array(wanted, dtype=np.dtype(dtype)), reason),
                        GUARDS)
    assert plan.target.tolist() == wanted
    assert plan.reason.tolist() == [Reason.HIGHER_VALUE] * 3


@pytest.mark.parametrize("code", [0.5, 1.5, 1.000001, -0.5, 2.5])
def test_a_target_between_modes_keeps_the_current_mode(code: float) -> None:
    """A fraction is not a mode, however close to one: the node keeps its mode and the
    plan says why (rounding it could send a node somewhere no policy chose)."""
    fleet = site_fleet([1, 2], [Mode.MINE, Mode.IDLE])
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    reason = np.full(2, Reason.HIGHER_VALUE, dtype=np.int16)
    plan = apply_guards(ctx, PolicyDecision(np.array([code, code]), reason), GUARDS)  # type: ignore[arg-type]
    assert plan.target.tolist() == [Mode.MINE, Mode.IDLE]
    assert plan.reason.tolist() == [Reason.GUARD_INVALID_TARGET] * 2


@pytest.mark.parametrize("code", [1.5, -1.0, 30.000001, 1e6, float("nan")])
def test_a_reason_that_is_not_a_known_code_is_refused(code: float) -> None:
    fleet = site_fleet([1, 1], [Mode.MINE] * 2)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=GUARDS)
    reason = np.array([float(Reason.HIGHER_VALUE), code])
    with pytest.raises(PolicyError, match="unknown reason codes"):
        apply_guards(ctx, PolicyDecision(np.array([Mode.IDLE] * 2), reason), GUARDS)  # type: ignore[arg-type]


@pytest.mark.parametrize("column", ["opt_out", "reachable"])
def test_cap_never_curtails_an_opted_out_or_unreachable_node(column: str) -> None:
    """Two mining S21s, room for one: the node hashpivot may not command stays as it is
    and the other gives way, though fleet order would pick the first."""
    s21 = PROFILES[1]
    fleet = site_fleet([1, 1], [Mode.MINE] * 2,
                       cap_kw=(s21.watts_mine + s21.watts_idle) / 1000.0)
    flag = np.array([True, False]) if column == "opt_out" else np.array([False, True])
    fleet = fleet.with_columns(**{column: flag})
    plan = run(fleet, [Mode.MINE] * 2, GUARDS)
    assert plan.target.tolist() == [Mode.MINE, Mode.IDLE]


def test_the_fleet_budget_keeps_the_changes_of_most_gain_after_their_switching_cost() -> None:
    # Three nodes mining, each planned into AI for the same raise in USD/h (+$2/h); their
    # switches cost $0.10/h, $1.50/h and $0.40/h amortized. A budget of two keeps the two
    # cheapest switches (gains $1.90 and $1.60/h) and holds the $1.50/h one ($0.50/h).
    value = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])
    switch_per_h = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.1, 1.5, 0.4]])
    target = np.array([Mode.AI] * 3, np.int8)
    reason = np.full(3, int(Reason.HIGHER_VALUE), np.int16)
    kernels.keep_most_valuable(target=target, reason=reason,
                               current=np.array([Mode.MINE] * 3, np.int8), value=value,
                               switch_per_h=switch_per_h, budget=2)
    assert target.tolist() == [Mode.AI, Mode.MINE, Mode.AI]
    assert reason.tolist() == [Reason.HIGHER_VALUE, Reason.GUARD_FLEET_SWITCH_BUDGET,
                               Reason.HIGHER_VALUE]
    # The gain is the raise over the node's own mode: a node mining for $2.50/h planned
    # into AI for $3/h gains less than an idle one planned into AI for $2.50/h.
    value = np.array([[0.0, 0.0], [2.5, 0.0], [3.0, 2.5]])
    target = np.array([Mode.AI, Mode.AI], np.int8)
    reason = np.full(2, int(Reason.HIGHER_VALUE), np.int16)
    kernels.keep_most_valuable(target=target, reason=reason,
                               current=np.array([Mode.MINE, Mode.IDLE], np.int8), value=value,
                               switch_per_h=np.zeros((3, 2)), budget=1)
    assert target.tolist() == [Mode.MINE, Mode.AI]


def test_a_switch_time_in_the_future_reads_as_no_time_in_mode_and_holds_no_dwell() -> None:
    """A clock stepped back leaves a node's switch time 60 s ahead of now: its time in
    mode is 0 (never negative), so with no minimum dwell it may switch."""
    fleet = site_fleet([1, 1], [Mode.MINE] * 2, age_s=[-60.0, 30.0])
    guards = GUARDS.model_copy(update={"min_dwell_s": 0.0,
                                       "max_fleet_switch_share_per_hour": 2.0})
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=guards)
    assert ctx.dwell_s.tolist() == [0.0, 30.0]
    plan = decide(ctx, Wants(np.array([Mode.IDLE] * 2)), guards)
    assert plan.target.tolist() == [Mode.IDLE, Mode.IDLE]
    # Its switch count does not grow for being in the future: 2 switches with 3 a day
    # allowed still leave room for one more.
    budget = guards.model_copy(update={"max_switches_per_node_per_day": 3.0})
    plan = decide(ctx, Wants(np.array([Mode.IDLE] * 2)), budget,
                  switch_load=np.array([2.0, 0.0]))
    assert plan.target.tolist() == [Mode.IDLE, Mode.IDLE]


def test_only_a_shed_load_names_what_it_gave_way_to_every_other_node_names_none() -> None:
    """`gave_way_to` is -1 and `usd_per_kwh` NaN on every node the cap did not shed or
    name, whether or not a cap binds."""
    # An H100 node serving AI and an S21 mining, under an 8 kW cap: the S21 is curtailed
    # and names the AI node; without a cap nobody names anyone.
    for cap_kw, shed in ((8.0, True), (None, False)):
        fleet = site_fleet([2, 1], [Mode.AI, Mode.MINE], cap_kw=cap_kw)
        plan = run(fleet, [Mode.AI, Mode.MINE], GUARDS)
        if shed:
            assert plan.target.tolist() == [Mode.AI, Mode.IDLE]
            assert plan.cap is not None and plan.cap.gave_way_to.tolist() == [-1, 0]
            assert np.isfinite(plan.cap.usd_per_kwh).tolist() == [True, True]
        else:
            assert plan.cap is not None and plan.cap.gave_way_to.tolist() == [-1, -1]
            assert np.isnan(plan.cap.usd_per_kwh).all()


def test_a_fleet_of_one_node_keeps_its_switch_budget() -> None:
    """One node, 3 switches a day allowed, 2.5 switches counted two hours ago (2.36 now,
    with a day's half-life): one more is too many. The hour's fleet budget is free."""
    fleet = site_fleet([1], [Mode.MINE], age_s=[7200.0])
    guards = GUARDS.model_copy(update={"max_switches_per_node_per_day": 3.0})
    plan = run(fleet, [Mode.IDLE], guards, switch_load=np.array([2.5]))
    assert plan.target.tolist() == [Mode.MINE]
    assert plan.reason[0] == Reason.GUARD_NODE_SWITCH_BUDGET
