"""The ramp planner (pure) and its trailing window: limits never exceeded, order strict."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.adapters.asic.ramp import RampWindow, plan_ramp_step
from orchestrator.models.asic_config import RampConfig


def _plan(mining, want, delta, prio, *, site=None, budget_w=np.inf, budget_n=np.inf,
          headroom=np.inf, movable=None):
    n = len(mining)
    site = np.zeros(n, dtype=np.int32) if site is None else np.asarray(site, dtype=np.int32)
    n_sites = int(site.max()) + 1 if n else 1
    return plan_ramp_step(
        mining=np.asarray(mining, dtype=bool), want_mining=np.asarray(want, dtype=bool),
        movable=np.ones(n, dtype=bool) if movable is None else np.asarray(movable, dtype=bool),
        delta_w=np.asarray(delta, dtype=float), priority=np.asarray(prio, dtype=float),
        site=site, budget_w=np.full(n_sites, budget_w), budget_miners=np.full(n_sites, budget_n),
        headroom_w=np.full(n_sites, headroom),
    )


def test_curtails_least_value_per_watt_first_within_the_miner_budget() -> None:
    step = _plan([1, 1, 1, 1], [0, 0, 0, 0], [3000] * 4, [0.3, 0.1, 0.4, 0.2], budget_n=2)
    assert step.curtail.tolist() == [1, 3]
    assert sorted(step.waiting.tolist()) == [0, 2]


def test_kw_budget_stops_the_sequence_in_order() -> None:
    # The second-cheapest does not fit; a smaller one after it must wait too (strict order).
    step = _plan([1, 1, 1], [0, 0, 0], [3000, 3500, 1000], [0.1, 0.2, 0.3], budget_w=5000)
    assert step.curtail.tolist() == [0]
    assert sorted(step.waiting.tolist()) == [1, 2]


def test_resumes_most_efficient_first_and_only_into_headroom() -> None:
    step = _plan([0, 0, 0], [1, 1, 1], [3000, 3000, 3000], [0.1, 0.5, 0.3], headroom=6500)
    assert step.resume.tolist() == [1, 2]
    assert step.waiting.tolist() == [0]


def test_curtailments_go_before_resumptions_and_share_the_budget() -> None:
    step = _plan([1, 0, 0], [0, 1, 1], [3000] * 3, [0.1, 0.5, 0.4], budget_n=2)
    assert step.curtail.tolist() == [0]
    assert step.resume.tolist() == [1]
    assert step.waiting.tolist() == [2]


def test_unmovable_miners_are_never_planned() -> None:
    step = _plan([1, 1], [0, 0], [3000, 3000], [0.1, 0.2], movable=[0, 1])
    assert step.curtail.tolist() == [1]
    assert step.waiting.size == 0


def test_budgets_are_per_site() -> None:
    step = _plan([1, 1, 1, 1], [0] * 4, [3000] * 4, [0.1, 0.2, 0.3, 0.4], site=[0, 0, 1, 1],
                 budget_n=1)
    assert step.curtail.tolist() == [0, 2]


def test_window_budget_rolls_over() -> None:
    w = RampWindow(RampConfig(max_kw_per_window=10, max_miners_per_window=3, window_s=60),
                   n_sites=2)
    w.record(100.0, [0, 0], [3000.0, 4000.0])
    bw, bn = w.remaining(130.0)
    assert bw.tolist() == [3000.0, 10000.0] and bn.tolist() == [1.0, 3.0]
    bw, bn = w.remaining(160.0)  # the moves at t=100 left the window
    assert bw.tolist() == [10000.0, 10000.0] and bn.tolist() == [3.0, 3.0]


def test_no_limits_means_no_budget() -> None:
    w = RampWindow(RampConfig(max_kw_per_window=None, max_miners_per_window=None), n_sites=1)
    bw, bn = w.remaining(0.0)
    assert np.isinf(bw).all() and np.isinf(bn).all()


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 40),
    seed=st.integers(0, 2**31 - 1),
    budget_kw=st.floats(0, 60),
    budget_n=st.integers(0, 12),
    headroom_kw=st.floats(0, 60),
)
def test_limits_hold_and_order_is_strict_whatever_the_inputs(
    n: int, seed: int, budget_kw: float, budget_n: int, headroom_kw: float
) -> None:
    rng = np.random.default_rng(seed)
    mining = rng.random(n) < 0.5
    want = rng.random(n) < 0.5
    movable = rng.random(n) < 0.9
    delta = rng.uniform(0, 5000, n)
    prio = rng.normal(0, 1, n)
    site = rng.integers(0, 3, n).astype(np.int32)
    step = plan_ramp_step(mining=mining, want_mining=want, movable=movable, delta_w=delta,
                          priority=prio, site=site, budget_w=np.full(3, budget_kw * 1000),
                          budget_miners=np.full(3, float(budget_n)),
                          headroom_w=np.full(3, headroom_kw * 1000))
    acted = np.concatenate([step.curtail, step.resume])
    assert np.unique(acted).size == acted.size
    assert (mining[step.curtail] & ~want[step.curtail] & movable[step.curtail]).all()
    assert (~mining[step.resume] & want[step.resume] & movable[step.resume]).all()
    for s in range(3):
        here = acted[site[acted] == s]
        assert here.size <= budget_n
        assert delta[here].sum() <= budget_kw * 1000 + 1e-6
        up = step.resume[site[step.resume] == s]
        assert delta[up].sum() <= headroom_kw * 1000 + 1e-6
        # Strict order: nothing waiting on this site ranks before something acted on.
        waiting_down = step.waiting[(site[step.waiting] == s) & mining[step.waiting]]
        cut = step.curtail[site[step.curtail] == s]
        if waiting_down.size and cut.size:
            assert prio[cut].max() <= prio[waiting_down].min() + 1e-12
        waiting_up = step.waiting[(site[step.waiting] == s) & ~mining[step.waiting]]
        if waiting_up.size and up.size:
            assert prio[up].min() >= prio[waiting_up].max() - 1e-12
    # Every movable mismatch is either acted on or waiting.
    todo = np.flatnonzero((mining != want) & movable)
    assert sorted(np.concatenate([acted, step.waiting]).tolist()) == sorted(todo.tolist())
