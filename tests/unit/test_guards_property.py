"""Whatever a policy returns, guards keep the cap, the leases and the dwell."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine import build_context
from orchestrator.engine.guards import apply_guards
from orchestrator.framework import PolicyDecision, Reason
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from orchestrator.models.config import GuardConfig
from tests.conftest import make_prices, profiles

NOW = 1_000_000.0


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[FleetTable, GuardConfig, np.ndarray, float]:
    n = draw(st.integers(min_value=0, max_value=40))
    prof = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int32)
    is_gpu = prof == 2
    modes = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int8)
    modes[(modes == Mode.AI) & ~is_gpu] = Mode.MINE
    cap_kw = draw(st.floats(min_value=1.0, max_value=200.0))
    fleet = FleetTable.build(
        profiles("s19-xp", "s21", "h100-sxm-8x"), [Site(name="s", power_cap_kw=cap_kw)], prof,
        modes=modes,
    )
    since = NOW - np.array(draw(st.lists(st.floats(0, 20_000), min_size=n, max_size=n)))
    lease = np.where(
        np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool),
        NOW + 3600.0, 0.0,
    )
    interruptible = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    fleet = fleet.with_columns(
        since=since, lease_until=lease, ai_interruptible=interruptible,
        ai_gpus_busy=np.where(is_gpu & (modes == Mode.AI), 4.0, 0.0),
    )
    guards = GuardConfig(
        min_dwell_s=draw(st.sampled_from([0.0, 3600.0, 7200.0])),
        max_fleet_switch_share_per_hour=draw(st.sampled_from([0.1, 0.5, 1.0])),
    )
    # Anything a buggy policy might return, including invalid modes and NaN.
    raw = draw(st.lists(st.sampled_from([0, 1, 2, 3, -1, 7, float("nan")]), min_size=n,
                        max_size=n))
    return fleet, guards, np.array(raw, dtype=np.float64), cap_kw


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_guards_hold_cap_leases_and_dwell(scenario: tuple) -> None:
    fleet, guards, raw_target, _ = scenario
    ctx = build_context(
        now_s=NOW, prices=make_prices(fleet, observed_s=NOW), demand=DemandSummary.empty(1),
        fleet=fleet, guards=guards,
    )
    decision = PolicyDecision(target=raw_target, reason=np.zeros(fleet.n, dtype=np.int16))  # type: ignore[arg-type]
    plan = apply_guards(ctx, decision, guards)
    target = plan.target
    idx = np.arange(fleet.n)

    # Valid modes only, and never AI on an ASIC.
    assert set(np.unique(target)).issubset({0, 1, 2})
    assert not np.any((target == Mode.AI) & fleet.is_asic())

    # Protected leases are never cut short.
    leased = (fleet.mode == Mode.AI) & (fleet.lease_until > NOW) & ~fleet.ai_interruptible
    assert np.all(target[leased] == Mode.AI)

    # The cap: planned draw fits, or nothing but protected work is left running.
    watts = ctx.scores.watts[target, idx]
    cap_w = ctx.site_power_cap_w[0]
    if watts.sum() > cap_w + 1e-6:
        assert plan.site_over_cap[0]
        assert np.all((target == Mode.IDLE) | leased | fleet.opt_out | ~fleet.reachable)

    # Dwell: when the fleet started within its cap, no node switched inside its dwell.
    start_w = ctx.scores.watts[fleet.mode, idx].sum()
    if start_w <= cap_w:
        young = ctx.dwell_s < guards.min_dwell_s
        assert np.all(target[young] == fleet.mode[young])
    else:
        # Over the cap, only curtailment may break dwell, and it says so.
        young_moved = (ctx.dwell_s < guards.min_dwell_s) & (target != fleet.mode)
        assert np.all(plan.reason[young_moved] == Reason.GUARD_POWER_CAP_CURTAILED)

    # The fleet switch budget holds for voluntary changes.
    voluntary = (target != fleet.mode) & (plan.reason != Reason.GUARD_POWER_CAP_CURTAILED)
    assert np.count_nonzero(voluntary) <= max(
        int(np.floor(guards.max_fleet_switch_share_per_hour * fleet.n)), 1
    )


def test_stale_market_holds_every_node() -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], [0, 0], modes=[1, 1], since_s=0.0)
    guards = GuardConfig(stale_after_s=600.0, min_dwell_s=0.0)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW - 601.0),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
    assert ctx.stale
    plan = apply_guards(ctx, PolicyDecision(np.zeros(2, dtype=np.int8),
                                            np.zeros(2, dtype=np.int16)), guards)
    assert np.all(plan.target == Mode.MINE)
    assert np.all(plan.reason == Reason.GUARD_STALE_DATA)


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


def test_wrong_shape_policy_output_is_refused() -> None:
    import pytest

    from orchestrator.errors import PolicyError

    fleet = FleetTable.build(profiles("s21"), [Site()], [0, 0], modes=[1, 1])
    guards = GuardConfig()
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
    with pytest.raises(PolicyError, match="expected \\(2,\\)"):
        apply_guards(ctx, PolicyDecision(np.zeros(3, dtype=np.int8),
                                         np.zeros(3, dtype=np.int16)), guards)
