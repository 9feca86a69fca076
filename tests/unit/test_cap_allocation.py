"""The power cap as an allocation: on a site over its cap, the loads kept (running and
newly planned alike) are those with the most value per watt.

The property test rebuilds, from the guards' own inputs, what the cap may do to each
node (keep its plan, revert it, curtail it to idle) and checks that no single move and
no single swap (shed one load, admit another) would raise the site's USD/h within the
cap. Deterministic examples have their answers worked out by hand from the score table.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine import build_context, kernels
from orchestrator.engine.guards import apply_guards
from orchestrator.framework import PolicyDecision, Reason
from orchestrator.models import DemandSummary, FleetTable, Mode, NodeState, Site
from orchestrator.models.config import GuardConfig
from orchestrator.models.modes import STEADY_STATES
from tests.conftest import make_prices, profiles

NOW = 2_000_000.0
IDLE, MINE, AI = int(Mode.IDLE), int(Mode.MINE), int(Mode.AI)
TOL = 1e-6


@st.composite
def capped_sites(draw: st.DrawFn) -> tuple[Any, ...]:
    n = draw(st.integers(1, 14))
    prof = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int32)
    is_gpu = prof == 2
    modes = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int8)
    modes[(modes == AI) & ~is_gpu] = MINE
    fleet = FleetTable.build(
        profiles("s19-xp", "s21", "h100-sxm-8x"), [Site(name="s")], prof, modes=modes,
    )
    flags = st.lists(st.booleans(), min_size=n, max_size=n)
    lease = np.where(np.array(draw(flags)) & (modes == AI), NOW + 3600.0, 0.0)
    opt_out = np.array(draw(flags)) & np.array(draw(flags))
    switching = np.array(draw(flags)) & np.array(draw(flags))
    since = NOW - np.array(draw(st.lists(st.sampled_from([60.0, 7200.0, 90_000.0]),
                                         min_size=n, max_size=n)))
    fleet = fleet.with_columns(
        since=since, lease_until=lease, opt_out=opt_out,
        ai_interruptible=np.array(draw(flags)),
        state=np.where(switching, np.int8(NodeState.STOPPING_MINE), fleet.state).astype(np.int8),
        ai_gpus_busy=np.where(is_gpu & (modes == AI), 4.0, 0.0),
    )
    guards = GuardConfig(
        min_dwell_s=draw(st.sampled_from([0.0, 3600.0])),
        max_fleet_switch_share_per_hour=draw(st.sampled_from([0.5, 1.0])),
    )
    plan = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int8)
    pending = float(draw(st.sampled_from([0, 8, 24])))
    power = float(draw(st.sampled_from([20.0, 60.0, 140.0])))
    share = draw(st.floats(0.05, 1.1))
    return fleet, guards, plan, pending, power, share


def _options(pre: int, cur: int, watts: np.ndarray, *, fixed: bool, keeps_mode: bool) -> set[int]:
    """What the cap may leave a node in, rebuilt from the rules: its plan, its current
    mode or idle, never drawing more than planned."""
    if fixed:
        return {pre}
    out = {pre}
    if watts[cur] <= watts[pre]:
        out.add(cur)
    if watts[IDLE] <= watts[pre] and not keeps_mode:
        out.add(IDLE)
    return out


def _improving_move(
    nodes: list[int], final: np.ndarray, opts: dict[int, set[int]], u: np.ndarray,
    w: np.ndarray, headroom: float,
) -> tuple[int, ...] | None:
    """An admission or a swap (shed one load, admit another) that fits in `headroom` W
    and raises USD/h, if any. Shedding alone is not asked of the cap."""
    moves = [(i, m, w[m, i] - w[final[i], i], u[m, i] - u[final[i], i])
             for i in nodes for m in opts[i] if m != final[i]]
    for i, m, dw, du in moves:
        if 0 < dw <= headroom + TOL and du > 1e-7 * max(1.0, abs(u[final[i], i])):
            return (i, m)
    for i, m, dw, du in moves:
        for j, k, dw2, du2 in moves:
            # Shed one load (i), admit another (j).
            if j == i or not dw < 0 < dw2 or dw + dw2 > headroom + TOL:
                continue
            if du + du2 > 1e-7 * max(1.0, abs(du)):
                return (i, m, j, k)
    return None


@settings(max_examples=400)
@given(capped_sites())
def test_no_single_swap_raises_value_under_the_cap(scenario: tuple[Any, ...]) -> None:
    fleet, guards, plan, pending, power, share = scenario
    demand = DemandSummary(np.array([pending]), np.array([np.nan]))
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW,
                                                      power_usd_mwh=power),
                        demand=demand, fleet=fleet, guards=guards)
    decision = PolicyDecision(plan, np.full(fleet.n, int(Reason.HIGHER_VALUE), np.int16))
    # The plan as the cap receives it: every other guard, no cap.
    uncapped = apply_guards(replace(ctx, site_power_cap_w=np.array([np.inf])), decision, guards)
    pre = uncapped.target
    w, u = ctx.scores.watts, ctx.scores.value - ctx.scores.switch_cost_per_h
    idx = np.arange(fleet.n)
    cap = share * float(w[pre, idx].sum())
    capped = apply_guards(replace(ctx, site_power_cap_w=np.array([cap])), decision, guards)
    final = capped.target

    leased = (fleet.mode == AI) & (fleet.lease_until > NOW) & ~fleet.ai_interruptible
    switching = ~STEADY_STATES[fleet.state]
    fixed = leased | fleet.opt_out | ~fleet.reachable | switching
    young = ctx.dwell_s < guards.min_dwell_s
    opts = {i: _options(int(pre[i]), int(fleet.mode[i]), w[:, i], fixed=bool(fixed[i]),
                        keeps_mode=bool(young[i] and pre[i] == fleet.mode[i]))
            for i in range(fleet.n)}
    last_resort = {i: _options(int(pre[i]), int(fleet.mode[i]), w[:, i],
                               fixed=bool(fixed[i]), keeps_mode=False)
                   for i in range(fleet.n)}

    # Every node ends in a mode the cap may leave it in; never a protected or fixed one moved.
    for i in range(fleet.n):
        assert int(final[i]) in last_resort[i], (i, pre[i], final[i])
    assert np.all(final[fixed] == pre[fixed])
    drawn = float(w[final, idx].sum())
    young_shed = [i for i in range(fleet.n) if int(final[i]) not in opts[i]]
    if young_shed or drawn > cap + TOL:
        # Only when nothing else is left: every other node at its lowest draw.
        for i in range(fleet.n):
            if not young[i] or pre[i] != fleet.mode[i]:
                assert w[final[i], i] == min(w[m, i] for m in opts[i]), i
    if drawn > cap + TOL:
        assert capped.site_over_cap[0]
        for i in range(fleet.n):
            assert w[final[i], i] == min(w[m, i] for m in last_resort[i]), i
        return
    assert not capped.site_over_cap[0]
    if pre.tolist() == final.tolist():
        return
    nodes = [i for i in range(fleet.n) if not young_shed or young[i]]
    chosen = opts if not young_shed else last_resort
    assert _improving_move(nodes, final, chosen, u, w, cap - drawn) is None

    # Reasons and names: what was shed says so and names a load it gave way to.
    for shed in np.flatnonzero(final != pre):
        want = Reason.GUARD_POWER_CAP_REVERTED if final[shed] == fleet.mode[shed] else (
            Reason.GUARD_POWER_CAP_CURTAILED)
        assert capped.reason[shed] == want
        j = int(capped.gave_way_to[shed])
        if j >= 0:
            assert final[j] == pre[j] and j != shed
    # Loads nothing shed keep the policy's reason.
    kept = final == pre
    assert np.array_equal(capped.reason[kept], uncapped.reason[kept])


def _alloc(watts: Any, value: Any, target: list[int],
           current: list[int], cap_w: float, **flags: list[bool]) -> tuple[Any, ...]:
    """The cap kernel on hand-made nodes (one site, no switching cost)."""
    n = len(target)
    w = np.array(watts, dtype=np.float64)
    v = np.array(value, dtype=np.float64)
    t = np.array(target, dtype=np.int8)
    power = np.array([w[t, np.arange(n)].sum()])
    reason = np.full(n, int(Reason.HIGHER_VALUE), np.int16)
    gave = np.full(n, -1, np.intp)
    per_kwh = np.full(n, np.nan)
    kernels.allocate_cap(
        target=t, reason=reason, current=np.array(current, dtype=np.int8),
        site=np.zeros(n, np.int32), watts=w, value=v, switch_per_h=np.zeros_like(v),
        fixed=np.array(flags.get("fixed", [False] * n)),
        young=np.array(flags.get("young", [False] * n)),
        cap_w=np.array([cap_w]), power=power, gave_way_to=gave, usd_per_kwh=per_kwh,
    )
    return t.tolist(), reason.tolist(), float(power[0]), gave.tolist(), per_kwh


def test_a_larger_load_worth_more_displaces_a_small_dense_one() -> None:
    # Rows: idle, mine, ai. A: 1 kW for $1/h (1.00 $/kWh); B: 10 kW for $5/h (0.50 $/kWh).
    # Cap 10 kW: by value per watt alone, B goes and A stays ($1/h); the swap keeps B ($5/h).
    watts = [[0, 0], [1000, 10_000], [0, 0]]
    value = [[0, 0], [1.0, 5.0], [-np.inf, -np.inf]]
    target, reason, power, gave, per_kwh = _alloc(watts, value, [1, 1], [1, 1], 10_000)
    assert target == [IDLE, MINE]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED and reason[1] == Reason.HIGHER_VALUE
    assert power == 10_000
    assert gave == [1, -1]
    assert per_kwh[0] == 1.0 and per_kwh[1] == 0.5


def test_planned_ai_displaces_miners_worth_less_per_watt() -> None:
    # Two miners running at $0.30/h for 3 kW (0.10 $/kWh) and a GPU node, mining, planned
    # into AI: $9/h for 7 kW against $0.20/h for 5 kW mining, i.e. 4.40 $/kWh for the
    # extra 2 kW. Cap 12 kW: the plan draws 13 kW, so one miner gives way (saves 3 kW).
    watts = [[10, 10, 100], [3000, 3000, 5000], [10, 10, 7000]]
    value = [[0.0, 0.0, -0.01], [0.30, 0.30, 0.20], [-np.inf, -np.inf, 9.0]]
    target, reason, power, gave, per_kwh = _alloc(watts, value, [1, 1, 2], [1, 1, 1], 12_000)
    assert target == [IDLE, MINE, AI]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 10 + 3000 + 7000
    assert gave[0] == 2
    assert per_kwh[0] == 1000 * 0.30 / 2990
    assert per_kwh[2] == 1000 * (9.0 - 0.20) / 2000


def test_a_change_worth_less_than_the_running_load_is_reverted() -> None:
    # Same site, AI now worth $0.25/h: 0.025 $/kWh for the extra 2 kW, below the miners'.
    watts = [[10, 10, 100], [3000, 3000, 5000], [10, 10, 7000]]
    value = [[0.0, 0.0, -0.01], [0.30, 0.30, 0.20], [-np.inf, -np.inf, 0.25]]
    target, reason, _, gave, _ = _alloc(watts, value, [1, 1, 2], [1, 1, 1], 12_000)
    assert target == [MINE, MINE, MINE]
    assert reason[2] == Reason.GUARD_POWER_CAP_REVERTED
    # No planned change was kept: it gave way to the running load of least value per watt.
    assert gave[2] == 0


def test_protected_opted_out_and_switching_nodes_are_never_shed() -> None:
    # Node 0 is worth least per watt but fixed; nodes 1 and 2 must give way instead.
    watts = [[0, 0, 0], [2000, 2000, 2000], [0, 0, 0]]
    value = [[0, 0, 0], [0.01, 0.5, 0.6], [-np.inf, -np.inf, -np.inf]]
    target, _, power, _, _ = _alloc(watts, value, [1, 1, 1], [1, 1, 1], 2000,
                                    fixed=[True, False, False])
    assert target == [MINE, IDLE, IDLE]
    assert power == 2000


def test_nodes_inside_their_dwell_go_only_when_nothing_else_is_left() -> None:
    watts = [[0, 0, 0], [1000, 1000, 1000], [0, 0, 0]]
    value = [[0, 0, 0], [0.1, 0.9, 0.5], [-np.inf, -np.inf, -np.inf]]
    # Node 0 (young) is worth least, but node 2 goes first.
    target, *_ = _alloc(watts, value, [1, 1, 1], [1, 1, 1], 2000, young=[True, False, False])
    assert target == [MINE, MINE, IDLE]
    # With only 500 W, both others go and then the young node too.
    target, reason, power, _, _ = _alloc(watts, value, [1, 1, 1], [1, 1, 1], 500,
                                         young=[True, False, False])
    assert target == [IDLE, IDLE, IDLE]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 0


def test_explanations_name_what_gave_way_to_what() -> None:
    from orchestrator.engine import decide
    from policies.greedy import Greedy

    # Two S19 XPs mining and an H100 node mining, with 8 GPUs of AI demand waiting: the
    # policy sends the H100 into AI. Cap 11 kW: the plan draws 2 × 3.01 + 7.1 kW, so a
    # miner gives way (reverting the H100 would free only 2.02 kW of the 2.12 needed).
    fleet = FleetTable.build(profiles("s19-xp", "h100-sxm-8x"),
                             [Site(name="s", power_cap_kw=11.0)], [0, 0, 1], modes=[1, 1, 1],
                             since_s=NOW - 86_400)
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary(np.array([8.0]), np.array([np.nan])),
                        fleet=fleet, guards=guards)
    plan = decide(ctx, Greedy(), guards)
    assert plan.target.tolist() == [IDLE, MINE, AI]
    w, u = ctx.scores.watts, ctx.scores.value - ctx.scores.switch_cost_per_h
    miner = 1000 * (u[MINE, 0] - u[IDLE, 0]) / (w[MINE, 0] - w[IDLE, 0])
    gpu = 1000 * (u[AI, 2] - u[MINE, 2]) / (w[AI, 2] - w[MINE, 2])
    assert miner < gpu
    names = [str(x) for x in fleet.names]
    text = plan.explain(0).text
    assert text == (f"{names[0]} curtailed so {names[2]} can serve AI: ${miner:.2f}/kW·h vs "
                    f"${gpu:.2f}/kW·h (site power cap)")
    # The journal's explanations (most valuable changes first) carry the same line.
    assert text in [e.text for e in plan.explanations()]


def _random_site(rng: np.random.Generator) -> dict[str, Any]:
    """A few hand-made nodes on one or two sites: watts and USD/h per mode from small
    sets, so equal draws, equal values and equal values per watt all occur."""
    n = int(rng.integers(2, 8))
    w = np.zeros((3, n))
    w[IDLE] = rng.choice([0.0, 10.0, 50.0], n)
    w[MINE] = rng.choice([100.0, 200.0, 300.0, 600.0], n)
    w[AI] = rng.choice([100.0, 300.0, 700.0, 1000.0], n)
    u = np.zeros((3, n))
    u[IDLE] = rng.choice([0.0, -0.1], n)
    u[MINE] = rng.choice([0.1, 0.3, 0.6, 1.2, -0.2], n)
    u[AI] = rng.choice([0.2, 0.9, 2.0, 3.5, -5.0], n)
    target = rng.integers(0, 3, n).astype(np.int8)
    current = rng.integers(0, 3, n).astype(np.int8)
    site = rng.integers(0, 2, n).astype(np.int32) if rng.random() < 0.3 else np.zeros(n, np.int32)
    fixed = rng.random(n) < 0.1
    young = rng.random(n) < 0.2
    planned = np.bincount(site, weights=w[target, np.arange(n)], minlength=2)
    cap = planned * rng.choice([0.3, 0.55, 0.8, 0.95, 1.2])
    return {"w": w, "u": u, "target": target, "current": current, "site": site,
            "fixed": fixed, "young": young, "cap": cap}


def _run_cap(s: dict[str, Any]) -> tuple[np.ndarray, ...]:
    n = s["target"].shape[0]
    target = s["target"].copy()
    power = np.bincount(s["site"], weights=s["w"][target, np.arange(n)], minlength=2)
    reason = np.full(n, int(Reason.HIGHER_VALUE), np.int16)
    gave = np.full(n, -1, np.intp)
    per_kwh = np.full(n, np.nan)
    kernels.allocate_cap(
        target=target, reason=reason, current=s["current"], site=s["site"], watts=s["w"],
        value=s["u"], switch_per_h=np.zeros_like(s["u"]), fixed=s["fixed"], young=s["young"],
        cap_w=s["cap"], power=power, gave_way_to=gave, usd_per_kwh=per_kwh,
    )
    return target, reason, power, gave, per_kwh


def _lower(i: int, mode: int, opts: set[int], w: np.ndarray, u: np.ndarray) -> int:
    """The option drawing the most below `mode`'s draw, of two alike the better (-1: none)."""
    below = [m for m in opts if w[m, i] < w[mode, i]]
    return max(below, key=lambda m: (w[m, i], u[m, i])) if below else -1


def test_small_sites_end_fitted_locally_best_and_explained() -> None:
    """Seeded small sites against the rules, every expectation rebuilt from the inputs:
    the cap holds where it can; no admission or single swap would raise USD/h within it;
    each shed load has its reason, its USD per kW·h and names the kept load of least USD
    per kW·h it gave way to (a newly planned change where one was kept)."""
    rng = np.random.default_rng(20261206)
    swaps_needed = 0
    for case in range(600):
        s = _random_site(rng)
        w, u, pre, cur = s["w"], s["u"], s["target"], s["current"]
        n = pre.shape[0]
        final, reason, power, gave, per_kwh = _run_cap(s)
        idx = np.arange(n)
        drawn = np.bincount(s["site"], weights=w[final, idx], minlength=2)
        assert np.allclose(power, drawn), case
        for site in range(2):
            nodes = [i for i in range(n) if s["site"][i] == site]
            untouched = final[nodes].tolist() == pre[nodes].tolist()
            if not nodes or (drawn[site] <= s["cap"][site] and untouched):
                continue
            opts = {i: _options(int(pre[i]), int(cur[i]), w[:, i], fixed=bool(s["fixed"][i]),
                                keeps_mode=bool(s["young"][i] and pre[i] == cur[i]))
                    for i in nodes}
            last = {i: _options(int(pre[i]), int(cur[i]), w[:, i], fixed=bool(s["fixed"][i]),
                                keeps_mode=False) for i in nodes}
            for i in nodes:
                assert int(final[i]) in last[i], (case, i)
            young_shed = [i for i in nodes if int(final[i]) not in opts[i]]
            if drawn[site] > s["cap"][site] + TOL:
                # Only protected work left: every other node at its lowest draw.
                for i in nodes:
                    assert w[final[i], i] == min(w[m, i] for m in last[i]), (case, i)
                continue
            movers = [i for i in nodes if not young_shed or s["young"][i]]
            chosen = opts if not young_shed else last
            headroom = float(s["cap"][site] - drawn[site])
            assert _improving_move(movers, final, chosen, u, w, headroom) is None, case
            # What each shed load gave up, and what it gave way to.
            shed = [i for i in nodes if final[i] != pre[i]]
            kept = [i for i in nodes if final[i] == pre[i] and not s["fixed"][i]]
            density = {}
            for i in kept:
                low = _lower(i, int(final[i]), chosen[i], w, u)
                if low >= 0:
                    density[i] = (u[final[i], i] - u[low, i]) / (w[final[i], i] - w[low, i])
            planned = [i for i in density if final[i] != cur[i]]
            pool = planned or list(density)
            winner = min(pool, key=lambda i: (density[i], i)) if pool else -1
            for i in shed:
                want = (Reason.GUARD_POWER_CAP_REVERTED if final[i] == cur[i]
                        else Reason.GUARD_POWER_CAP_CURTAILED)
                assert reason[i] == want, (case, i)
                if w[pre[i], i] > w[final[i], i]:
                    gave_up = u[pre[i], i] - u[final[i], i]
                    expect = 1000 * gave_up / (w[pre[i], i] - w[final[i], i])
                    assert per_kwh[i] == pytest.approx(expect), (case, i)
                assert gave[i] == winner, (case, i, gave[i], winner)
            if shed and winner >= 0:
                assert per_kwh[winner] == pytest.approx(1000 * density[winner]), case
            swaps_needed += any(final[i] != pre[i] and w[final[i], i] > min(
                w[m, i] for m in chosen[i]) for i in movers)
    # The seeded cases reach the refinement passes, not just the shedding.
    assert swaps_needed > 20


def _best_move_by_search(
    nodes: list[int], options: np.ndarray, n_options: np.ndarray, target: np.ndarray,
    w: np.ndarray, u: np.ndarray, headroom: float,
) -> float:
    """The most USD/h one admission that fits, or one swap (shed one load, admit another
    that then fits), can add: every pair tried."""
    moves = [(i, int(options[i, j]), w[options[i, j], i] - w[target[i], i],
              u[options[i, j], i] - u[target[i], i])
             for i in nodes for j in range(n_options[i]) if options[i, j] != target[i]]
    best = 0.0
    for _i, _m, dw, du in moves:
        if 0 < dw <= headroom:
            best = max(best, du)
    for i, _m, dw, du in moves:
        for j, _k, dw2, du2 in moves:
            if i != j and dw < 0 < dw2 and dw2 > headroom and dw + dw2 <= headroom:
                best = max(best, du + du2)
    return best


def test_the_best_swap_is_the_best_pair_a_search_finds() -> None:
    """`_best_swap` against trying every admission and every pair, on seeded states of a
    site after shedding: nodes with up to three options, some below their plan (the only
    ones that can be admitted), a move's best partner sometimes on the node itself."""
    rng = np.random.default_rng(7)
    found = 0
    for case in range(3000):
        n = int(rng.integers(2, 7))
        w = np.zeros((3, n))
        w[IDLE] = rng.choice([0.0, 20.0], n)
        w[MINE] = rng.choice([100.0, 300.0, 500.0], n)
        w[AI] = rng.choice([200.0, 700.0, 900.0], n)
        u = np.zeros((3, n))
        u[MINE] = rng.choice([-0.5, 0.5, 1.0, 5.0], n)
        u[AI] = rng.choice([-1.0, 2.0, 9.5, 12.0], n)
        options = np.zeros((n, 3), np.int8)
        n_options = np.zeros(n, np.intp)
        target = np.zeros(n, np.int8)
        for i in range(n):
            opts = [int(m) for m in rng.permutation(3)[: int(rng.integers(1, 4))]]
            opts.sort(key=lambda m: -w[m, i])  # the plan first: the highest draw
            options[i, : len(opts)] = opts
            n_options[i] = len(opts)
            target[i] = opts[int(rng.integers(0, len(opts)))]
        nodes = np.arange(n, dtype=np.intp)
        shed = np.array([i for i in range(n) if target[i] != options[i, 0]], dtype=np.intp)
        headroom = float(rng.choice([0.0, 50.0, 250.0, 600.0]))
        # What allocate_cap prices for a node with two options: its one step down.
        down_save = w[options[:, 0], np.arange(n)] - w[options[:, 1], np.arange(n)]
        down_loss = u[options[:, 0], np.arange(n)] - u[options[:, 1], np.arange(n)]
        gain, i, mi, j, mj = kernels._best_swap(
            nodes=nodes, shed=shed, options=options, n_options=n_options, target=target,
            watts=w, value=u, switch_per_h=np.zeros_like(u), headroom=headroom,
            down_save=down_save, down_loss=down_loss,
        )
        expect = _best_move_by_search(list(range(n)), options, n_options, target, w, u,
                                      headroom)
        if expect <= 1e-9:
            assert i < 0, case
            continue
        found += 1
        assert gain == pytest.approx(expect), case
        # The move itself: it fits and adds what it says.
        after = target.copy()
        after[i] = mi
        if j >= 0:
            assert j != i
            after[j] = mj
        idx = np.arange(n)
        assert w[after, idx].sum() - w[target, idx].sum() <= headroom + 1e-9, case
        assert u[after, idx].sum() - u[target, idx].sum() == pytest.approx(expect), case
    assert found > 300


def test_a_node_whose_cheapest_step_is_straight_to_idle_is_shed_there() -> None:
    # A GPU node planned into AI (1 kW, $10/h) from mining at a loss ($-1/h for 300 W):
    # per watt, idling gives up less ($0.010/W) than falling back to mining ($0.0157/W),
    # so its first step goes straight to idle. A fixed 500 W load stays.
    watts = [[0, 0], [300, 500], [1000, 0]]
    value = [[0.0, 0.0], [-1.0, 0.2], [10.0, -np.inf]]
    target, reason, power, _, _ = _alloc(watts, value, [AI, MINE], [MINE, MINE], 800,
                                         fixed=[False, True])
    assert target == [IDLE, MINE]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 500


def test_a_site_exactly_at_its_cap_is_left_as_planned() -> None:
    # The plan draws exactly the cap. A swap would raise value (idle the $0.1/h miner,
    # run the $5/h one), but the cap only acts on a site over it.
    watts = [[0, 0], [1000, 1000], [0, 0]]
    value = [[0.0, 0.0], [0.1, 5.0], [-np.inf, -np.inf]]
    target, reason, power, gave, _ = _alloc(watts, value, [MINE, IDLE], [MINE, IDLE], 1000)
    assert target == [MINE, IDLE]
    assert reason == [Reason.HIGHER_VALUE] * 2 and gave == [-1, -1]
    assert power == 1000


def test_loads_shed_on_the_way_to_a_large_one_all_come_back() -> None:
    # 70 small miners (10 W at $0.01/h: 1.0 $/kWh) give way before a 10 kW one at $15/h
    # (1.5 $/kWh), but together they free only 700 W of the 5 kW needed, so the large one
    # goes too. Then there is room for every small one again: all 70 come back, more than
    # the swap rounds (`MAX_SWAP_ROUNDS`) could bring back one at a time.
    n = 71
    watts = [[0] * n, [10] * 70 + [10_000], [0] * n]
    value = [[0.0] * n, [0.01] * 70 + [15.0], [-np.inf] * n]
    cap = 70 * 10 + 10_000 - 5_000
    target, _, power, _, _ = _alloc(watts, value, [MINE] * n, [MINE] * n, cap)
    assert target == [MINE] * 70 + [IDLE]
    assert power == 700


def test_a_node_whose_mode_draws_what_its_plan_draws_can_still_be_idled() -> None:
    # Planned from mining into AI at the same 300 W: falling back to mining frees
    # nothing, so idle is its only step down. A fixed 500 W load stays.
    watts = [[0, 0], [300, 500], [300, 0]]
    value = [[0.0, 0.0], [1.0, 0.2], [2.0, -np.inf]]
    target, reason, power, _, _ = _alloc(watts, value, [AI, MINE], [MINE, MINE], 600,
                                         fixed=[False, True])
    assert target == [IDLE, MINE]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 500


def test_of_two_lower_options_drawing_alike_the_better_one_is_where_a_load_goes() -> None:
    # A GPU node planned from AI into mining (1,000 W, $5/h); in AI it draws what idle
    # draws (100 W, no jobs) but loses $1/h. The cap leaves room for 100 W only: the node
    # is shed to the better of the two, idle, and stays there when even 100 W is over
    # the cap (AI would free nothing more).
    watts = [[100], [1000], [100]]
    value = [[0.0], [5.0], [-1.0]]
    for cap in (500, 50):
        target, reason, power, _, _ = _alloc(watts, value, [MINE], [AI], cap)
        assert target == [IDLE]
        assert reason == [Reason.GUARD_POWER_CAP_CURTAILED]
        assert power == 100


def test_a_shed_load_that_fits_exactly_in_what_shedding_freed_comes_back() -> None:
    # Three miners: A 400 W earning $1e-10/h (cheapest per watt), B 600 W at $6/h, C
    # 1,000 W at $100/h; cap 1,400 W, so 600 W must go. A alone is short, so A and B are
    # shed (1,000 W); A then fits back exactly (power == cap) and comes back, however
    # little it earns: the cap is a limit to reach, not one to stay under.
    watts = [[0, 0, 0], [400, 600, 1000], [0, 0, 0]]
    value = [[0.0, 0.0, 0.0], [1e-10, 6.0, 100.0], [-np.inf, -np.inf, -np.inf]]
    target, reason, power, _, _ = _alloc(watts, value, [MINE] * 3, [MINE] * 3, 1400)
    assert target == [MINE, IDLE, MINE]
    assert reason[1] == Reason.GUARD_POWER_CAP_CURTAILED
    assert reason[0] == reason[2] == Reason.HIGHER_VALUE
    assert power == 1400


def test_a_change_that_frees_no_power_is_left_to_the_policy() -> None:
    # A: planned from idle into mining at the same 100 W, worth less than idling (the
    # policy's call: hysteresis, a forecast). Reverting it frees nothing, so the cap leaves
    # it; B and C must still lose 400 W, and C, cheapest per watt, goes.
    watts = [[100, 0, 0], [100, 1000, 500], [100, 0, 0]]
    value = [[0.5, 0.0, 0.0], [0.2, 10.0, 0.5], [-np.inf, -np.inf, -np.inf]]
    target, reason, power, gave, per_kwh = _alloc(watts, value, [MINE] * 3,
                                                  [IDLE, MINE, MINE], 1200)
    assert target == [MINE, MINE, IDLE]
    assert reason[0] == Reason.HIGHER_VALUE
    assert reason[2] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 1100
    # C gave way to B, the one kept load whose shedding would free power; A, though a
    # newly planned change, frees none and is not named.
    assert gave[2] == 1 and per_kwh[1] == pytest.approx(10.0)


def test_a_reverted_change_worth_less_than_staying_is_not_taken_back() -> None:
    # A: planned from idle (100 W, $0.50/h) into mining (1,000 W, $0.20/h), worth less
    # than staying; C mines 2,000 W for $1/h, B 3,000 W for $30/h. Cap 5,000 W: A's
    # revert (it gains value) and C's curtailment free 2,900 W. A would fit back in the
    # 1,900 W left, but taking it back loses $0.30/h: it stays reverted.
    watts = [[100, 0, 0], [1000, 2000, 3000], [100, 0, 0]]
    value = [[0.5, 0.0, 0.0], [0.2, 1.0, 30.0], [-np.inf, -np.inf, -np.inf]]
    target, reason, power, _, _ = _alloc(watts, value, [MINE] * 3, [IDLE, MINE, MINE], 5000)
    assert target == [IDLE, IDLE, MINE]
    assert reason[0] == Reason.GUARD_POWER_CAP_REVERTED
    assert reason[1] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 3100


def test_the_steps_kept_are_the_shortest_run_that_covers_in_any_arrival_order() -> None:
    """`_offer_step` (the shedding steps a site keeps) against sorting every step by cost
    per watt, ties by step, and taking the shortest run that covers the excess: seeded
    costs with ties, NaN last, savings that add up to the excess exactly."""
    from orchestrator.engine.kernels import _offer_step

    rng = np.random.default_rng(11)
    for case in range(2000):
        m = int(rng.integers(1, 30))
        cost = rng.choice([0.5, 1.0, 2.0, 3.0, np.nan], m)
        saving = rng.choice([1.0, 2.0, 5.0], m)
        # Needs that a prefix meets exactly, and needs between prefixes.
        order = np.argsort(np.where(np.isnan(cost), np.inf, cost), kind="stable")
        prefix = np.cumsum(saving[order])
        need = float(prefix[int(rng.integers(0, m))]) - float(rng.choice([0.0, 0.5]))
        expect, covered = [], 0.0
        for j in order:
            if covered >= need:
                break
            expect.append(int(j))
            covered += saving[j]
        base = int(rng.integers(0, 3))
        heap = np.full(base + m + 2, 10**6, dtype=np.intp)  # junk past the heap's end
        size, got = 0, 0.0
        for j in rng.permutation(m):
            size, got = _offer_step(int(j), heap, base, size, got, need, cost, saving)
        kept = heap[base : base + size].tolist()
        assert sorted(kept) == sorted(expect), case
        assert got == pytest.approx(covered), case


def test_of_two_lower_options_alike_in_draw_and_value_a_load_goes_back_to_its_mode() -> None:
    # A GPU node planned from AI into mining (1,000 W, $5/h); in AI it draws what idle
    # draws (100 W) and earns what idling does ($0/h). The cap leaves room for 100 W only:
    # of the two alike, the node stays in the mode it is in (no switch made for nothing).
    watts = [[100], [1000], [100]]
    value = [[0.0], [5.0], [0.0]]
    target, reason, power, _, _ = _alloc(watts, value, [MINE], [AI], 500)
    assert target == [AI]
    assert reason == [Reason.GUARD_POWER_CAP_REVERTED]
    assert power == 100


def test_a_node_mining_below_its_idle_draw_is_shed_in_two_steps() -> None:
    # A GPU node mining on a low measured draw (200 W, losing $2/h), under its idle draw
    # (300 W, $0/h), planned into AI (1,000 W, $10/h). Per watt, idling first gives up
    # $10/700 W, then mining $2/100 W; straight to mining, $12/800 W: two steps on the
    # hull. The cap leaves 250 W: only mining fits, so both steps are taken.
    watts = [[300], [200], [1000]]
    value = [[0.0], [-2.0], [10.0]]
    assert 10 / 700 <= 12 / 800 <= 2 / 100  # the hull the steps follow
    target, reason, power, _, _ = _alloc(watts, value, [AI], [MINE], 250)
    assert target == [MINE]
    assert reason == [Reason.GUARD_POWER_CAP_REVERTED]
    assert power == 200


def test_a_demand_response_event_over_leases_sheds_a_leased_node_to_meet_the_cap() -> None:
    from orchestrator.engine.guards import apply_guards

    # Two H100 nodes serving leased (non-interruptible) AI for another hour; a 10 kW cap.
    h100 = profiles("h100-sxm-8x")[0]
    cap_w = 10_000.0
    assert 2 * h100.watts_ai > cap_w >= h100.watts_ai + h100.watts_idle
    fleet = FleetTable.build([h100], [Site(name="s", power_cap_kw=cap_w / 1000)], [0, 0],
                             modes=[AI, AI], since_s=NOW - 86_400)
    fleet = fleet.with_columns(lease_until=np.full(2, NOW + 3600.0),
                               ai_interruptible=np.zeros(2, dtype=bool),
                               ai_gpus_busy=np.full(2, 8.0))
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary(np.array([0.0]), np.array([np.nan])),
                        fleet=fleet, guards=guards)
    keep = PolicyDecision(target=np.array([AI, AI], dtype=np.int8),
                          reason=np.full(2, int(Reason.UNCHANGED), np.int16))
    # No event over leases: the leases hold, whatever the cap.
    held = apply_guards(ctx, keep, guards)
    assert held.target.tolist() == [AI, AI]
    # An event whose commitment comes before AI leases: one leased node is idled.
    shed = apply_guards(ctx, keep, guards, lease_shed_site=np.array([True]))
    assert sorted(shed.target.tolist()) == [IDLE, AI]
    assert float(shed.site_power_w[0]) == pytest.approx(h100.watts_ai + h100.watts_idle)


def test_idle_drawing_more_than_the_plan_is_never_where_a_load_goes() -> None:
    # X: planned from mining (100 W, losing $2/h) into AI (500 W, losing $1.9/h); its
    # idle draw is 600 W, above the plan (as a measured draw can make it). Y: a miner,
    # 1,000 W at $1/h. 300 W must go: X back to mining is the cheapest step. Idling X
    # would be worth $2/h more, paid for by idling Y, but X would then draw more than
    # planned: the cap never adds load, so X stays mining and Y keeps running.
    watts = [[600, 0], [100, 1000], [500, 1000]]
    value = [[0.0, 0.0], [-2.0, 1.0], [-1.9, 0.0]]
    target, reason, power, _, _ = _alloc(watts, value, [AI, MINE], [MINE, MINE], 1200)
    assert target == [MINE, MINE]
    assert reason[0] == Reason.GUARD_POWER_CAP_REVERTED
    assert power == 1100


def test_a_site_brought_exactly_to_its_cap_names_a_load_it_could_have_shed() -> None:
    # Site A (cap 2,000 W): a0 mining inside its dwell ($2/h), a1 mining ($5/h), a2
    # planned from idle into mining ($1/h), 1,000 W each. Reverting a2 brings A exactly
    # to its cap. Site B (cap 500 W): b0 mining inside its dwell, curtailed as the last
    # resort. a2 gave way to a1: a0, though worth less per watt, could not be shed (its
    # dwell), and A, fitted exactly, takes no part in B's last-resort pass.
    w = np.array([[0.0] * 4, [1000.0] * 4, [1000.0] * 4])
    u = np.array([[0.0] * 4, [2.0, 5.0, 1.0, 3.0], [-np.inf] * 4])
    site = {"w": w, "u": u, "target": np.array([MINE] * 4, np.int8),
            "current": np.array([MINE, MINE, IDLE, MINE], np.int8),
            "site": np.array([0, 0, 0, 1], np.int32), "fixed": np.zeros(4, bool),
            "young": np.array([True, False, False, True]),
            "cap": np.array([2000.0, 500.0])}
    target, reason, power, gave, per_kwh = _run_cap(site)
    assert target.tolist() == [MINE, MINE, IDLE, IDLE]
    assert reason[2] == Reason.GUARD_POWER_CAP_REVERTED
    assert reason[3] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power.tolist() == [2000.0, 0.0]
    assert gave[2] == 1 and per_kwh[1] == pytest.approx(5.0)


def test_an_event_over_leases_frees_only_steady_reachable_leased_nodes_at_its_site() -> None:
    from orchestrator.engine.guards import apply_guards

    # Five H100 nodes in leased (non-interruptible) AI for another hour, each site at a
    # 1 kW cap no node can meet. At the event's site: L, plainly leased; O, opted out;
    # U, unreachable; S, still starting AI. At the other site: K, leased. The event lets
    # the cap shed L alone: what holds the others is not their lease, and K's site has
    # no event.
    h100 = profiles("h100-sxm-8x")[0]
    sites = [Site(name="event", power_cap_kw=1.0), Site(name="other", power_cap_kw=1.0)]
    fleet = FleetTable.build([h100], sites, [0] * 5, node_sites=[0, 0, 0, 0, 1],
                             modes=[AI] * 5, since_s=NOW - 86_400)
    state = np.full(5, int(NodeState.AI), np.int8)
    state[3] = NodeState.STARTING_AI
    fleet = fleet.with_columns(
        lease_until=np.full(5, NOW + 3600.0), ai_interruptible=np.zeros(5, dtype=bool),
        ai_gpus_busy=np.full(5, 8.0), opt_out=np.array([False, True, False, False, False]),
        reachable=np.array([True, True, False, True, True]), state=state,
    )
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary(np.array([0.0]), np.array([np.nan])),
                        fleet=fleet, guards=guards)
    keep = PolicyDecision(target=np.full(5, AI, dtype=np.int8),
                          reason=np.full(5, int(Reason.UNCHANGED), np.int16))
    shed = apply_guards(ctx, keep, guards, lease_shed_site=np.array([True, False]))
    assert shed.target.tolist() == [IDLE, AI, AI, AI, AI]
    assert shed.reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert float(shed.site_power_w[1]) == pytest.approx(h100.watts_ai)


def test_of_two_lower_options_drawing_alike_the_first_listed_better_one_is_kept() -> None:
    # As above, but here its mode is the better of the two: AI draws what idle draws
    # (100 W) and still earns $1/h from a small job. Shed, the node goes back to AI, not
    # to idle, whichever option the cap lists first; and when even 100 W is over the
    # cap, idle frees nothing more, so it stays in AI.
    watts = [[100], [1000], [100]]
    value = [[0.0], [5.0], [1.0]]
    for cap in (500, 50):
        target, reason, power, _, _ = _alloc(watts, value, [MINE], [AI], cap)
        assert target == [AI]
        assert reason == [Reason.GUARD_POWER_CAP_REVERTED]
        assert power == 100


def test_a_kept_load_is_valued_against_the_better_of_two_lower_options_drawing_alike() -> None:
    # K: planned from AI into mining (1,000 W, $5/h); AI and idle both draw 100 W, AI
    # losing $1/h, idle $0. X: a miner, 1,000 W at $1/h. 500 W must go: X, at $1 per
    # kW·h, gives way to K, whose shedding would idle it (the better of the two alike):
    # $5 per 900 W, not the $6 that falling back to AI would lose.
    watts = [[100, 0], [1000, 1000], [100, 0]]
    value = [[0.0, 0.0], [5.0, 1.0], [-1.0, -np.inf]]
    target, reason, power, gave, per_kwh = _alloc(watts, value, [MINE, MINE], [AI, MINE], 1500)
    assert target == [MINE, IDLE]
    assert reason[1] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 1000
    assert gave == [-1, 0]
    assert per_kwh[1] == pytest.approx(1.0)
    assert per_kwh[0] == pytest.approx(1000 * 5.0 / 900)


def test_a_node_with_nothing_lower_to_shed_to_does_not_stop_the_shedding() -> None:
    # A: planned from mining into AI, both 100 W, idle 100 W too: no option frees power.
    # B, after it in the fleet: a 1,000 W miner at $1/h. The cap (500 W) takes B.
    watts = [[100, 0], [100, 1000], [100, 1000]]
    value = [[0.0, 0.0], [0.5, 1.0], [1.0, -np.inf]]
    target, reason, power, _, _ = _alloc(watts, value, [AI, MINE], [MINE, MINE], 500)
    assert target == [AI, IDLE]
    assert reason[1] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 100


def test_a_load_shed_below_its_idle_draw_is_taken_up_to_idle_when_that_fits() -> None:
    # A GPU node planned from mining (100 W, losing $2/h) into AI (1,000 W, $10/h); idle
    # draws 300 W. Straight back to mining is the cheapest way down per watt ($12 per
    # 900 W, against $10 per 700 W to idle). The cap (300 W) then has room for idle,
    # worth $2/h more than mining: the node ends idle.
    watts = [[300], [100], [1000]]
    value = [[0.0], [-2.0], [10.0]]
    target, reason, power, _, _ = _alloc(watts, value, [AI], [MINE], 300)
    assert target == [IDLE]
    assert reason == [Reason.GUARD_POWER_CAP_CURTAILED]
    assert power == 300


def test_a_load_reverted_to_a_mode_numbered_above_its_plan_can_be_taken_back() -> None:
    # A: planned from AI (100 W, $3.50/h) into mining (600 W, $0.30/h), a plan worth
    # less than its mode, as a policy's may be. B: in AI at 1,000 W losing $5/h, planned
    # to stay. 2.5 W must go. Reverting A is the cheapest step per watt (it gains
    # $3.20/h); then the swap of A back to its plan for B curtailed to idle gains $1.70/h
    # more, and is taken: A, reverted to AI (a mode numbered above mining), is still a
    # load below its plan that the swaps may take back.
    watts = [[0, 50], [600, 600], [100, 1000]]
    value = [[0.0, -0.1], [0.3, 0.6], [3.5, -5.0]]
    target, reason, power, _, _ = _alloc(watts, value, [MINE, AI], [AI, AI], 1597.5)
    assert target == [MINE, IDLE]
    assert reason == [Reason.HIGHER_VALUE, Reason.GUARD_POWER_CAP_CURTAILED]
    assert power == 650


def test_a_shed_load_that_would_gain_nothing_back_is_not_taken_back() -> None:
    # As a shed load that fits exactly, but A earns exactly what idling earns ($0/h):
    # taking it back would draw 400 W for nothing, so it stays idle.
    watts = [[0, 0, 0], [400, 600, 1000], [0, 0, 0]]
    value = [[0.0, 0.0, 0.0], [0.0, 6.0, 100.0], [-np.inf, -np.inf, -np.inf]]
    target, _, power, _, _ = _alloc(watts, value, [MINE] * 3, [MINE] * 3, 1400)
    assert target == [IDLE, IDLE, MINE]
    assert power == 1000


def test_a_shed_load_is_named_against_a_kept_change_before_a_kept_running_load() -> None:
    # X: a miner, 1,000 W at $0.50/h, the cheapest per watt: it goes. K: a GPU node
    # planned from AI (500 W, $1/h) into mining (1,000 W, $5/h), kept; U: a miner kept
    # as it runs (1,000 W, $2/h), cheaper per watt than K. X is named as giving way to K,
    # the newly planned change, valued against its next lower option (AI): $4 per 500 W.
    watts = [[0, 100, 0], [1000, 1000, 1000], [0, 500, 0]]
    value = [[0.0, 0.0, 0.0], [0.5, 5.0, 2.0], [-np.inf, 1.0, -np.inf]]
    target, reason, _, gave, per_kwh = _alloc(watts, value, [MINE] * 3, [MINE, AI, MINE], 2000)
    assert target == [IDLE, MINE, MINE]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert gave[0] == 1
    assert per_kwh[1] == pytest.approx(8.0)


def test_a_change_that_frees_no_power_is_left_to_the_policy_with_idle_below_it() -> None:
    # A: a GPU node planned from mining into AI at the same 1,000 W, worth less than
    # mining (the policy's call); idle, at 0 W, lies below both. Reverting A frees
    # nothing, so the cap leaves the change to the policy; B, a 1,000 W miner at
    # $0.01/h, is the cheapest per watt and goes.
    watts = [[0, 0], [1000, 1000], [1000, 0]]
    value = [[0.0, 0.0], [0.1, 0.01], [0.05, -np.inf]]
    target, reason, power, _, _ = _alloc(watts, value, [AI, MINE], [MINE, MINE], 1500)
    assert target == [AI, IDLE]
    assert reason == [Reason.HIGHER_VALUE, Reason.GUARD_POWER_CAP_CURTAILED]
    assert power == 1000


def test_a_load_reverted_to_a_mode_drawing_its_plans_watts_shows_no_usd_per_kwh() -> None:
    # C is planned from mining (300 W, $0.60/h) into AI at the same 300 W, losing $5/h
    # (the policy's call). The allocation ends with A (a change from AI into mining)
    # reverted and C back in mining, a mode drawing exactly its plan's 300 W: C gave up
    # no watts, so no USD per kW·h is shown for it.
    watts = [[100, 100, 100], [1000, 1000, 300], [300, 1000, 300]]
    value = [[-0.1, -0.1, -0.1], [0.3, -0.2, 0.6], [3.5, 0.2, -5.0]]
    target, reason, _, gave, per_kwh = _alloc(watts, value, [MINE, AI, AI], [AI, AI, MINE],
                                              1677.5)
    assert target == [AI, AI, MINE]
    assert reason[0] == reason[2] == Reason.GUARD_POWER_CAP_REVERTED
    assert gave[2] == 1
    assert np.isnan(per_kwh[2])


def _best_fit_by_search(watts: Any, value: Any, target: list[int], current: list[int],
                        cap_w: float) -> float:
    """The most USD/h any allocation that fits can reach: every combination of the
    options the rules leave each node (plan, current mode, idle; never above plan)."""
    import itertools

    w, u = np.array(watts, dtype=np.float64), np.array(value, dtype=np.float64)
    choices = [sorted(_options(p, c, w[:, i], fixed=False, keeps_mode=False))
               for i, (p, c) in enumerate(zip(target, current, strict=True))]
    return max(sum(u[m, i] for i, m in enumerate(combo))
               for combo in itertools.product(*choices)
               if sum(w[m, i] for i, m in enumerate(combo)) <= cap_w + TOL)


def _keeps_the_best_fit(watts: Any, value: Any, plan: list[int], current: list[int],
                       cap_w: float, target: list[int]) -> bool:
    """Whether `target` keeps as much USD/h as the best allocation a search finds."""
    kept = sum(np.array(value, dtype=np.float64)[m, i] for i, m in enumerate(target))
    return bool(kept == pytest.approx(_best_fit_by_search(watts, value, plan, current, cap_w)))


def test_a_mode_between_plan_and_idle_that_costs_more_per_watt_is_no_step_on_the_way() -> None:
    # A is planned into AI (700 W, $8/h) from mining (600 W, $1.20/h); idle draws 10 W.
    # Giving up AI for mining costs $6.80/h for 100 W ($0.068/W), going straight to idle
    # $8.10/h for 690 W ($0.0117/W): mining lies below the line from AI to idle, so A
    # sheds in one step or not at all. Read as two steps, mining → idle would look
    # cheapest of all ($0.0022/W) and A would be idled before B, C and D. The 850 W cap
    # leaves room for A's AI alone: B, C and D go to idle and the site keeps $7.90/h.
    watts = [[10, 10, 10, 50], [600, 600, 600, 300], [700, 300, 100, 100]]
    value = [[-0.1, 0.0, 0.0, -0.1], [1.2, 0.3, 0.1, 2.5], [8.0, 0.9, 0.9, 0.2]]
    plan, current = [AI, MINE, AI, MINE], [MINE, MINE, MINE, IDLE]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 850)
    assert target == [AI, IDLE, IDLE, IDLE]
    assert power == 770
    assert _keeps_the_best_fit(watts, value, plan, current, 850, target)


def test_a_swap_on_the_best_admissions_own_node_pairs_with_the_next_best_elsewhere() -> None:
    # A site at its cap (no headroom). Three loads below their plan could be admitted,
    # by the watts each needs: X (100 W, +$5/h), Y (150 W, +$9/h), Z (200 W, +$1/h). Y
    # itself runs mining (400 W, $1/h) below its AI plan and can shed to idle, freeing
    # 400 W for $1/h: enough for any of them, but Y cannot shed and be admitted at once,
    # so the best swap is Y to idle and X admitted (+$4/h), not Z (+$0).
    w = np.array([[0.0, 0.0, 0.0], [100.0, 400.0, 200.0], [0.0, 550.0, 0.0]])
    u = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 1.0], [0.0, 10.0, 0.0]])
    options = np.array([[MINE, IDLE, -1], [AI, MINE, IDLE], [MINE, IDLE, -1]], np.int8)
    n_options = np.array([2, 3, 2], np.intp)
    target = np.array([IDLE, MINE, IDLE], np.int8)
    nodes = np.arange(3, dtype=np.intp)
    down_save = np.array([100.0, 150.0, 200.0])
    down_loss = np.array([5.0, 9.0, 1.0])
    gain, i, mi, j, mj = kernels._best_swap(
        nodes=nodes, shed=nodes, options=options, n_options=n_options, target=target,
        watts=w, value=u, switch_per_h=np.zeros_like(u), headroom=0.0,
        down_save=down_save, down_loss=down_loss,
    )
    expect = _best_move_by_search([0, 1, 2], options, n_options, target, w, u, 0.0)
    assert expect == pytest.approx(4.0)
    assert gain == pytest.approx(expect)
    assert (i, mi, j, mj) == (0, MINE, 1, IDLE)


def test_a_site_over_its_cap_by_half_a_watt_sheds_a_load() -> None:
    # Two 500 W miners and a 0.5 W load worth $0.01/h planned on a 1,000 W cap: half a
    # watt over is over. Idling the small load covers it for $0.01/h; idling a miner
    # would lose $0.20/h at least.
    watts = [[0, 0, 0], [500, 500, 0.5], [500, 500, 0.5]]
    value = [[0.0, 0.0, 0.0], [0.5, 0.2, 0.01], [0.5, 0.2, 0.01]]
    target, reason, power, _, _ = _alloc(watts, value, [MINE, MINE, MINE], [MINE] * 3, 1000)
    assert target == [MINE, MINE, IDLE]
    assert reason[2] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 1000


def test_a_second_step_down_is_priced_by_what_it_loses_from_the_first_steps_mode() -> None:
    # A is planned from mining (300 W, $4/h) into AI (1,000 W, $2/h); C runs AI at
    # 1,500 W for $2/h; B is planned to idle (50 W). The 1,275 W cap leaves room for A
    # in mining and nothing else: reverting A gains USD/h, and A's second step (mining
    # to idle, $4/h for 300 W, $0.0133/W) costs more per watt than idling C ($0.0014/W).
    watts = [[0, 50, 0], [300, 1000, 600], [1000, 1500, 1500]]
    value = [[0.0, -0.1, -0.1], [4.0, 4.0, 0.3], [2.0, 0.9, 2.0]]
    plan, current = [AI, IDLE, AI], [MINE, MINE, AI]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 1275)
    assert target == [MINE, IDLE, IDLE]
    assert power == 350
    assert _keeps_the_best_fit(watts, value, plan, current, 1275, target)


def test_loads_taken_back_are_counted_at_the_watts_they_add() -> None:
    # A plans mining at 200 W ($0.10/h, idle 50 W), B mining at 1,000 W ($4/h, idle
    # 50 W), C AI at 700 W ($0.90/h, idle 10 W); cap 950 W. Shedding all three leaves
    # 110 W; B does not fit back, A adds 150 W and C 690 W, which fills the cap exactly.
    watts = [[50, 50, 10], [200, 1000, 100], [700, 1500, 700]]
    value = [[-0.1, 0.0, 0.0], [0.1, 4.0, 4.0], [8.0, 5.0, 0.9]]
    plan, current = [MINE, MINE, AI], [AI, MINE, AI]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 950)
    assert target == [MINE, IDLE, AI]
    assert power == 950
    assert _keeps_the_best_fit(watts, value, plan, current, 950, target)


def test_shed_loads_are_taken_back_most_usd_per_watt_first() -> None:
    # Five nodes planned to 910 W on a 455 W cap. The allocation that keeps most USD/h
    # (found by the test's own search of every combination) serves AI on A (reverted to
    # its current mode, as many watts as its plan and worth $3.40/h more) and B, and
    # idles the rest: 420 W, $6.90/h.
    watts = [[50, 10, 0, 10, 10], [300, 600, 200, 100, 1000], [300, 100, 700, 300, 700]]
    value = [[0.0, -0.1, 0.0, 0.0, -0.1], [0.1, 0.1, 0.1, 0.1, 0.3],
             [3.5, 3.5, 8.0, 0.9, 0.2]]
    plan, current = [MINE, AI, MINE, AI, IDLE], [AI, AI, IDLE, IDLE, IDLE]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 455)
    assert target == [AI, AI, IDLE, IDLE, IDLE]
    assert power == 420
    assert _keeps_the_best_fit(watts, value, plan, current, 455, target)
    assert _best_fit_by_search(watts, value, plan, current, 455) == pytest.approx(6.9)


def test_a_swap_takes_back_a_load_that_adds_a_single_watt() -> None:
    # Small loads (sensors, controllers): A mines at 0.8 W for $0.60/h (idle 0.3 W,
    # -$0.10/h), B at 1 W for $1.20/h (idle 0 W); cap 1.62 W. B is cheapest per watt and
    # is shed first; then idling A (frees 0.5 W, loses $0.70/h) lets B back (adds 1 W,
    # +$1.20/h): the site keeps $1.10/h, the best any allocation reaches.
    watts = [[0.3, 0.0], [0.8, 1.0], [300.0, 600.6]]
    value = [[-0.1, 0.0], [0.6, 1.2], [8.0, 3.5]]
    plan, current = [MINE, MINE], [MINE, AI]
    target, _, power, gave, per_kwh = _alloc(watts, value, plan, current, 1.62)
    assert target == [IDLE, MINE]
    assert power == pytest.approx(1.3)
    # A gave way to B, whose one step down (1 W for $1.20/h) prices it.
    assert gave[0] == 1
    assert per_kwh[1] == pytest.approx(1200.0)
    assert _keeps_the_best_fit(watts, value, plan, current, 1.62, target)


def test_a_load_whose_current_mode_draws_least_and_pays_most_sheds_there_in_one_step() -> None:
    # A is planned from AI (1.5 W: a GPU node serving little, $8/h) into mining (100 W,
    # $4/h); idle draws 10 W. B serves AI at 600.6 W for $0.90/h. On a 560.48 W cap the
    # best any allocation keeps is A back in AI and B idle (12 W, $7.90/h): A's only
    # step down is straight to AI, below idle, and nothing follows it.
    watts = [[10.0, 10.5], [100.0, 100.0], [1.5, 600.6]]
    value = [[0.0, -0.1], [4.0, 1.2], [8.0, 0.9]]
    plan, current = [MINE, AI], [AI, AI]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 560.48)
    assert target == [AI, IDLE]
    assert power == pytest.approx(12.0)
    assert _keeps_the_best_fit(watts, value, plan, current, 560.48, target)


def test_loads_taken_back_are_ranked_by_the_watts_their_plan_adds() -> None:
    # A is planned into AI (1,000 W, $5/h) from idle; B and D into AI at 300 W for
    # $0.20/h; C into mining (1,000 W, $4/h) from AI (700 W, $3.50/h). On a 1,300 W cap
    # A's AI alone beats C's AI with B and D ($4.90/h against $3.80/h): ranked by what
    # each adds per watt back, A comes first.
    watts = [[0, 10, 50, 50], [1000, 1000, 1000, 1000], [1000, 300, 700, 300]]
    value = [[-0.1, 0.0, 0.0, -0.1], [1.2, 0.6, 4.0, 1.2], [5.0, 0.2, 3.5, 0.2]]
    plan, current = [AI, AI, MINE, AI], [IDLE, MINE, AI, MINE]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 1300)
    assert target == [AI, IDLE, IDLE, IDLE]
    assert power == 1110
    assert _keeps_the_best_fit(watts, value, plan, current, 1300, target)


def test_a_node_whose_every_option_draws_its_plans_watts_is_never_idled_by_the_cap() -> None:
    # A is planned from mining into AI, and mining, AI and idle all draw 300 W; B serves
    # AI at 100 W and idles at 300 W. Nothing here draws less than planned: on a 320 W
    # cap the site stays over, and idling A would free nothing and lose $8.10/h.
    watts = [[300, 300], [300, 100], [300, 100]]
    value = [[-0.1, -0.1], [0.6, 0.6], [8.0, 0.2]]
    target, reason, power, gave, _ = _alloc(watts, value, [AI, AI], [MINE, AI], 320)
    assert target == [AI, AI]
    assert reason == [Reason.HIGHER_VALUE] * 2
    assert power == 400
    assert gave == [-1, -1]


def test_a_node_with_one_option_below_its_plan_sheds_to_it_and_no_further() -> None:
    # A is planned into mining (300 W, $0.60/h) from AI (100 W, $2/h); its idle draws
    # 300 W, no less than the plan, so AI is its only option below. B serves AI at 100 W
    # ($0.20/h, idle 10 W). On a 120 W cap the best any allocation keeps is A back in AI
    # and B idle (110 W, $1.90/h).
    watts = [[300, 10], [300, 100], [100, 100]]
    value = [[-0.1, -0.1], [0.6, 1.2], [2.0, 0.2]]
    plan, current = [MINE, AI], [AI, AI]
    target, _, power, _, _ = _alloc(watts, value, plan, current, 120)
    assert target == [AI, IDLE]
    assert power == 110
    assert _keeps_the_best_fit(watts, value, plan, current, 120, target)


def test_a_node_inside_its_dwell_goes_when_the_site_is_still_half_a_watt_over() -> None:
    # A (inside its dwell) mines at 500 W; B, a 0.3 W load, is the only other. On a
    # 499.5 W cap idling B leaves the site 0.5 W over: A goes too, and the cap holds.
    # (The pass that sheds nodes inside their dwell takes back only those.)
    watts = [[0, 0], [500, 0.3], [500, 0.3]]
    value = [[0.0, 0.0], [1.0, 0.01], [1.0, 0.01]]
    target, reason, power, _, _ = _alloc(watts, value, [MINE, MINE], [MINE, MINE], 499.5,
                                         young=[True, False])
    assert target == [IDLE, IDLE]
    assert reason[0] == Reason.GUARD_POWER_CAP_CURTAILED
    assert power == 0


# Sites reduced from seeded ones where pricing a node's steps along its hull wrongly (the
# slope to its lower option, the cost of its second step) keeps less USD/h: on each the
# allocation fits the cap and keeps the most any allocation can (the test's own search).
HULL_CASES = {
    "second step priced from the first step's mode": (
        [[50, 50, 50, 0], [200, 1000, 100, 600], [300, 1500, 700, 100]],
        [[-0.1, 0.0, 0.0, -0.1], [1.2, 0.3, 1.2, 0.1], [3.5, 2.0, 0.9, 0.2]],
        [IDLE, AI, MINE, MINE], [AI, IDLE, AI, AI], 1350.0),
    "second step priced per watt it frees": (
        [[10, 50, 0, 10, 0], [100, 300, 200, 100, 600], [700, 100, 1000, 100, 700]],
        [[0.0, -0.1, -0.1, 0.0, 0.0], [1.2, 0.1, 4.0, 0.1, 4.0], [2.0, 0.2, 5.0, 0.9, 0.9]],
        [AI, MINE, MINE, IDLE, MINE], [IDLE, AI, MINE, AI, IDLE], 1267.0),
    "second step priced by the watts between the two options": (
        [[10, 50, 50], [600, 200, 100], [1000, 700, 1000]],
        [[0.0, 0.0, -0.1], [0.3, 2.5, 2.5], [5.0, 8.0, 8.0]],
        [MINE, AI, AI], [MINE, MINE, MINE], 1610.0),
    "slope to the lower option from the plan's USD/h": (
        [[10.5, 10.5], [11.0, 600.0], [1.5, 300.0]],
        [[-0.1, 0.0], [4.0, 0.3], [8.0, 3.5]],
        [MINE, MINE], [AI, IDLE], 549.9),
    "slope to the lower option per watt it frees": (
        [[0, 10, 100, 10], [600, 600, 300, 300], [700, 700, 700, 700]],
        [[0.0, -0.1, 0.0, -0.1], [2.5, 4.0, 0.6, 2.5], [0.9, 8.0, 8.0, 0.9]],
        [MINE, AI, AI, IDLE], [IDLE, AI, MINE, IDLE], 1407.0),
}


@pytest.mark.parametrize("case", list(HULL_CASES))
def test_steps_along_a_nodes_hull_are_priced_so_the_best_fit_is_kept(case: str) -> None:
    watts, value, plan, current, cap_w = HULL_CASES[case]
    target, _, power, _, _ = _alloc(watts, value, plan, current, cap_w)
    w = np.array(watts, dtype=np.float64)
    assert sum(w[m, i] for i, m in enumerate(target)) <= cap_w + TOL
    assert power <= cap_w + TOL
    assert _keeps_the_best_fit(watts, value, plan, current, cap_w, target)
