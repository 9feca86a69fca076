"""Scores, demand allocation, policies and explanations on small hand-checked fleets."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from orchestrator.engine import build_context, decide
from orchestrator.framework import MarketHistory, Reason
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from orchestrator.models.config import GuardConfig
from policies.greedy import Greedy
from policies.hysteresis import Hysteresis
from policies.lookahead import Lookahead
from policies.power_capped import PowerCapped
from tests.conftest import hashprice_by_hand, make_prices, mixed_fleet, profiles

NOW = 5_000_000.0
GUARDS = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)


def ctx_for(fleet: FleetTable, demand: DemandSummary | None = None, **price_kw: float):
    return build_context(
        now_s=NOW,
        prices=make_prices(fleet, observed_s=NOW, **price_kw),
        demand=demand or DemandSummary.empty(len(fleet.gpu_models)),
        fleet=fleet,
        guards=GUARDS,
    )


def test_score_terms_match_the_economics() -> None:
    fleet = FleetTable.build(profiles("s21"), [Site(pool_fee=0.02, tariff_adder_usd_mwh=5)], [0])
    ctx = ctx_for(fleet, power_usd_mwh=40.0)
    hp_th = hashprice_by_hand(1.1e14, 97_000.0, 3.125, 0.1)
    assert ctx.scores.revenue[Mode.MINE, 0] == pytest.approx(200 * hp_th / 24 * 0.98)
    assert ctx.scores.power_cost[Mode.MINE, 0] == pytest.approx(3500 / 1e6 * 45.0)
    assert ctx.scores.value[Mode.AI, 0] == -np.inf  # an ASIC cannot serve AI
    # Starting from idle: 60 s of mining output lost while it spins up, plus wear.
    revenue = ctx.scores.revenue[Mode.MINE, 0]
    assert ctx.scores.switch_cost_usd[Mode.MINE, 0] == pytest.approx(60 / 3600 * revenue + 0.05)
    assert ctx.scores.switch_cost_usd[Mode.IDLE, 0] == 0.0  # staying put is free
    assert ctx.scores.switch_cost_per_h[Mode.MINE, 0] == pytest.approx(
        ctx.scores.switch_cost_usd[Mode.MINE, 0] / 24.0
    )


def test_demand_fills_ai_nodes_first_then_cheapest_to_move() -> None:
    # Three GPU nodes: one in AI, two mining; 12 GPUs pending.
    fleet = FleetTable.build(profiles("h100-sxm-8x"), [Site()], [0, 0, 0], modes=[2, 1, 1])
    fleet = fleet.with_columns(ai_gpus_busy=np.array([2.0, 0.0, 0.0]))
    ctx = ctx_for(fleet, DemandSummary(np.array([12.0]), np.array([np.nan])))
    # AI node: 2 busy + 6 pending = full; 6 left go to the next node.
    assert ctx.scores.ai_fill.tolist() == pytest.approx([1.0, 0.75, 0.0])


def test_greedy_moves_gpus_to_ai_when_demand_pays() -> None:
    fleet = FleetTable.build(profiles("h100-sxm-8x"), [Site()], [0, 0], modes=[1, 1])
    ctx = ctx_for(fleet, DemandSummary(np.array([8.0]), np.array([np.nan])))
    plan = decide(ctx, Greedy(), GUARDS)
    assert plan.target.tolist() == [Mode.AI, Mode.MINE]
    text = plan.explain(0).text
    assert text.startswith("ai beats mine by $") and "switching cost" in text


def test_hysteresis_confirms_rises_and_acts_on_falls_at_once() -> None:
    fleet = FleetTable.build(profiles("h100-sxm-8x"), [Site()], [0], modes=[1])
    # Demand expected from recent history, none waiting right now: a rise to confirm.
    demand = DemandSummary(np.array([0.0]), np.array([np.nan]), expected_gpus=np.array([8.0]))
    policy = Hysteresis({"confirm_ticks": 3})
    state: dict = {}
    reasons = []
    for _ in range(3):
        ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW), demand=demand,
                            fleet=fleet, guards=GUARDS, policy_state=state)
        d = policy.decide(ctx)
        state = dict(d.state)
        reasons.append((int(d.target[0]), int(d.reason[0])))
    assert reasons[0] == (Mode.MINE, Reason.AWAITING_CONFIRMATION)
    assert reasons[1] == (Mode.MINE, Reason.AWAITING_CONFIRMATION)
    assert reasons[2] == (Mode.AI, Reason.RISE_CONFIRMED)
    # Jobs already waiting for GPUs: the node moves to AI on the first tick.
    waiting = DemandSummary(np.array([8.0]), np.array([np.nan]))
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW), demand=waiting,
                        fleet=fleet, guards=GUARDS)
    d = policy.decide(ctx)
    assert (int(d.target[0]), int(d.reason[0])) == (Mode.AI, Reason.AI_DEMAND_WAITING)
    # A miner whose power now costs more than it earns goes idle on the first tick.
    asic = FleetTable.build(profiles("s19-xp"), [Site()], [0], modes=[1])
    ctx = build_context(now_s=NOW, prices=make_prices(asic, observed_s=NOW, power_usd_mwh=900.0),
                        demand=DemandSummary.empty(0), fleet=asic, guards=GUARDS)
    d = policy.decide(ctx)
    assert (int(d.target[0]), int(d.reason[0])) == (Mode.IDLE, Reason.FALL_IMMEDIATE)


def test_hysteresis_ignores_gains_below_switching_cost() -> None:
    fleet = FleetTable.build(profiles("h100-sxm-8x"), [Site()], [0], modes=[1])
    ctx = ctx_for(fleet, DemandSummary(np.array([8.0]), np.array([np.nan])))
    huge = Hysteresis({"confirm_ticks": 1, "min_gain_usd_h": 1000.0}).decide(ctx)
    assert int(huge.target[0]) == Mode.MINE
    assert int(huge.reason[0]) == Reason.BELOW_THRESHOLD


def test_power_capped_curtails_least_efficient_first() -> None:
    # 2 × S19 XP (21.5 J/TH) + 2 × S21 (17.5 J/TH); the cap fits only three machines' draw.
    fleet = mixed_fleet(2, 2, 0, cap_kw=3.01 + 3.5 + 3.5 + 0.1, modes=[0, 0, 0, 0])
    plan = decide(ctx_for(fleet), PowerCapped(), GUARDS)
    assert plan.target.tolist() == [Mode.MINE, Mode.IDLE, Mode.MINE, Mode.MINE]
    assert plan.reason[1] == Reason.CAP_CURTAILED_BY_POLICY
    assert plan.site_power_w[0] <= plan.site_cap_w[0]


def test_cap_guard_curtails_least_value_per_watt_when_the_cap_falls() -> None:
    fleet = mixed_fleet(2, 2, 0, cap_kw=7.1, modes=[1, 1, 1, 1])
    plan = decide(ctx_for(fleet), Greedy(), GUARDS)
    # 13 kW of miners under a 7.1 kW cap: both S19 XPs (less value per watt) go first.
    assert plan.target.tolist() == [Mode.IDLE, Mode.IDLE, Mode.MINE, Mode.MINE]
    assert all(plan.reason[:2] == Reason.GUARD_POWER_CAP_CURTAILED)


def _history(spike_hours: int, spike_price: float, norm: float = 30.0) -> MarketHistory:
    """A week of hourly power prices at `norm`, the last `spike_hours` at `spike_price`."""
    hours = np.arange(NOW - 7 * 86400, NOW, 3600.0)
    power = np.full(hours.shape, norm)
    if spike_hours:
        power[-spike_hours:] = spike_price
    return MarketHistory(hours, np.full(hours.shape, 55.0), power)


def test_lookahead_rides_out_a_short_spike_but_not_a_regime_change() -> None:
    # A mining S19 XP with a large wear cost per switch (5 USD); power now costs 200
    # USD/MWh, well above its break-even (~111 USD/MWh at 57.21 USD/PH/day).
    from orchestrator.models import HardwareProfile

    heavy = HardwareProfile(**{**profiles("s19-xp")[0].model_dump(), "wear_usd_per_switch": 5.0})
    fleet = FleetTable.build([heavy], [Site()], [0], modes=[1])
    spike = make_prices(fleet, observed_s=NOW, power_usd_mwh=200.0)
    history_short = _history(1, 200.0)
    history_lasting = _history(7 * 24, 200.0)
    assert history_short.power_usd_mwh[-2] == 30.0 and history_short.power_usd_mwh[-1] == 200.0
    assert np.all(history_lasting.power_usd_mwh == 200.0)
    policy = Lookahead({"persistence": 0.1})

    def decide_with(history: MarketHistory) -> tuple[int, int]:
        ctx = build_context(now_s=NOW, prices=spike, demand=DemandSummary.empty(0),
                            fleet=fleet, guards=GUARDS, history=history)
        d = policy.decide(ctx)
        return int(d.target[0]), int(d.reason[0])

    # An hour's spike over a week at 30 USD/MWh: the forecast falls back to 30 within
    # the hour, and stopping and restarting (10 USD) costs more than the hour loses.
    assert decide_with(history_short) == (Mode.MINE, Reason.NO_PAYBACK_IN_HORIZON)
    # The same price for a week is the new norm: idling pays back the one stop.
    assert decide_with(history_lasting) == (Mode.IDLE, Reason.PAYS_BACK_IN_HORIZON)


def test_plan_summary_and_explanations() -> None:
    fleet = mixed_fleet(1, 1, 1, modes=[1, 1, 1])
    plan = decide(ctx_for(fleet, DemandSummary(np.array([8.0]), np.array([np.nan]))), Greedy(),
                  GUARDS)
    summary = plan.summary()
    assert summary["nodes"] == 3
    assert summary["changes"] == len(plan.explanations())
    assert sum(summary["modes"].values()) == 3  # type: ignore[attr-defined]
    for e in plan.explanations():
        assert e.current != e.target and e.text


def test_read_only_tables_are_shared_and_never_claimed_after_a_copy() -> None:
    import dataclasses
    import pickle

    fleet = mixed_fleet()
    view = fleet.read_only()
    assert not view.mode.flags.writeable
    assert view.read_only() is view  # nothing left to freeze
    frozen_mode = view.mode.copy()
    frozen_mode.flags.writeable = False
    assert view.with_columns(mode=frozen_mode).read_only().mode is frozen_mode
    # A writable column (or a pickled copy, whose arrays come back writable) is frozen
    # again when a policy gets the table.
    writable = view.with_columns(mode=view.mode.copy())
    assert writable.mode.flags.writeable
    assert not writable.read_only().mode.flags.writeable
    copy = pickle.loads(pickle.dumps(view))
    assert copy.mode.flags.writeable
    assert not copy.read_only().mode.flags.writeable
    np.testing.assert_array_equal(copy.mode, view.mode)
    replaced = dataclasses.replace(view, mode=view.mode.copy())
    assert not replaced.read_only().mode.flags.writeable


def test_a_plan_cannot_be_changed_under_its_list_of_changes() -> None:
    fleet = mixed_fleet()
    plan = decide(ctx_for(fleet, btc_usd=150_000.0), Greedy(), GUARDS)
    assert plan.changed.size > 0
    np.testing.assert_array_equal(plan.changed, np.flatnonzero(plan.target != plan.current))
    with pytest.raises(ValueError, match="read-only"):
        plan.target[plan.changed[0]] = plan.current[plan.changed[0]]


def _idle_miners(n: int) -> FleetTable:
    """n S21 miners, idle and long settled, at one site: mining pays at the test prices."""
    return FleetTable.build(profiles("s21"), [Site()], [0] * n, modes=[0] * n, since_s=NOW - 1e6)


def test_the_fleet_switch_budget_is_a_share_of_the_fleet_and_never_below_one() -> None:
    # Four idle miners all worth starting. A 10% share of 4 nodes rounds down to none; the
    # budget is still one node an hour. A 50% share lets two go.
    for share, expect in ((0.1, 1), (0.5, 2)):
        guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=share)
        fleet = _idle_miners(4)
        ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                            demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
        assert ctx.fleet_switches_per_hour == expect
        plan = decide(ctx, Greedy(), guards)
        assert plan.changed.size == expect
        held = plan.reason == Reason.GUARD_FLEET_SWITCH_BUDGET
        assert int(held.sum()) == 4 - expect


class _UnknownReasons:
    """Holds every node, with reason codes nobody declared (900, 901, … by node) from
    node `from_node` on and UNCHANGED before it."""

    name = "unknown-reasons"
    reasons: ClassVar[dict[int, str]] = {}
    uses_history = False

    def __init__(self, from_node: int = 0) -> None:
        self.from_node = from_node

    def decide(self, ctx):  # type: ignore[no-untyped-def]
        from orchestrator.framework import PolicyDecision
        n = ctx.fleet.n
        reason = np.arange(900, 900 + n, dtype=np.int16)
        reason[: self.from_node] = int(Reason.UNCHANGED)
        return PolicyDecision(ctx.fleet.mode.copy(), reason)


def test_unknown_reason_codes_are_refused_naming_the_first_five() -> None:
    from orchestrator.errors import PolicyError

    fleet = _idle_miners(7)
    with pytest.raises(PolicyError) as refused:
        decide(ctx_for(fleet), _UnknownReasons(), GUARDS)  # type: ignore[arg-type]
    named = sorted(str(900 + i) for i in range(7))[:5]
    assert f"unknown reason codes {named}" in str(refused.value)
    # The first node with an unknown code is named: the policy author can find it.
    assert f"(the first on node {fleet.names[0]}, code 900)" in str(refused.value)


def test_the_refusal_names_the_node_whose_reason_code_is_unknown() -> None:
    from orchestrator.errors import PolicyError

    fleet = _idle_miners(4)
    with pytest.raises(PolicyError) as refused:
        decide(ctx_for(fleet), _UnknownReasons(from_node=2), GUARDS)  # type: ignore[arg-type]
    assert str(refused.value).endswith(
        f"unknown reason codes ['902', '903'] (the first on node {fleet.names[2]}, code 902)")


def test_a_plan_carries_its_policy_s_name_and_the_context_what_it_was_given() -> None:
    fleet = _idle_miners(3)
    load = np.array([0.0, 1.5, 3.0])
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=GUARDS,
                        switch_load=load)
    # A context built without a cadence says so: no interval, nothing skipped.
    assert ctx.interval_s == 0.0 and ctx.skipped_cycles == 0
    assert np.array_equal(ctx.switch_load, load)
    # The guards read the dwell from the context: a policy cannot write it.
    assert not ctx.dwell_s.flags.writeable
    assert ctx.dwell_s.tolist() == [1e6] * 3
    plan = decide(ctx, Hysteresis(), GUARDS, switch_load=load)
    assert plan.policy == Hysteresis.name != type(Hysteresis()).__name__
    assert plan.decision_id == f"{Hysteresis.name}-{int(NOW)}"
