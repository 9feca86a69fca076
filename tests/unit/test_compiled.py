"""The compiled per-node loops agree with the numpy meaning they replace."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from orchestrator.engine import build_scores
from orchestrator.framework import at_mode, best_of_three, mode_argmax
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from tests.conftest import make_prices, profiles

# Integers as floats make ties common, which is where argmax conventions differ.
tables = st.integers(0, 30).flatmap(
    lambda n: arrays(np.float64, (3, n), elements=st.integers(-5, 5).map(float))
)


@settings(max_examples=200, deadline=None)
@given(tables)
def test_mode_argmax_is_argmax_down_the_modes(table: np.ndarray) -> None:
    assert np.array_equal(mode_argmax(table), np.argmax(table, axis=0))


@settings(max_examples=200, deadline=None)
@given(tables, st.data())
def test_at_mode_gathers_one_mode_per_node(table: np.ndarray, data: st.DataObject) -> None:
    n = table.shape[1]
    modes = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int8)
    assert np.array_equal(at_mode(table, modes), table[modes, np.arange(n)])


def test_nan_never_wins_over_a_number() -> None:
    nan = float("nan")
    assert best_of_three(nan, 1.0, 0.0) == Mode.MINE
    assert best_of_three(nan, nan, -3.0) == Mode.AI
    assert best_of_three(2.0, nan, nan) == Mode.IDLE
    table = np.array([[nan, 0.0], [1.0, nan], [0.5, -1.0]])
    assert mode_argmax(table).tolist() == [Mode.MINE, Mode.IDLE]


@st.composite
def gpu_fleets(draw: st.DrawFn) -> tuple[FleetTable, float]:
    n = draw(st.integers(1, 25))
    prof = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int32)
    is_gpu = prof == 1
    modes = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int8)
    modes[(modes == Mode.AI) & ~is_gpu] = Mode.MINE
    busy = np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)), np.float64)
    busy = np.where(is_gpu & (modes == Mode.AI), busy, 0.0)
    reachable = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    fleet = FleetTable.build(
        profiles("s21", "h100-sxm-8x"), [Site(name="s")], prof, modes=modes
    ).with_columns(ai_gpus_busy=busy, reachable=reachable | ~is_gpu)
    pending = float(draw(st.integers(0, 120)))
    return fleet, pending


@settings(max_examples=300, deadline=None)
@given(gpu_fleets())
def test_demand_fills_free_gpus_ai_nodes_first_then_least_mining_value(
    case: tuple[FleetTable, float],
) -> None:
    fleet, pending = case
    demand = DemandSummary(np.array([pending]), np.array([np.nan]))
    # Every GPU model is priced, so the score table's fill is the allocation itself.
    scores = build_scores(fleet, make_prices(fleet, observed_s=0.0), demand)
    fill = scores.ai_fill
    gpus = fleet.gpus
    usable = fleet.statics.is_gpu & fleet.reachable
    assert np.all((fill >= 0) & (fill <= 1 + 1e-12))
    assert np.all(fill[~usable] == 0)
    filled = fill * gpus
    busy = np.minimum(fleet.ai_gpus_busy, gpus)
    # Running work stays; pending work takes free GPUs up to what is free.
    assert np.all(filled[usable] >= busy[usable] - 1e-9)
    new = filled - busy
    free_total = float(np.sum((gpus - busy)[usable]))
    assert np.isclose(new[usable].sum(), min(pending, free_total))
    # A node only gets new work once every node ahead of it in the order is full:
    # AI nodes first, then by mining value given up (ties in fleet order).
    mine_value = scores.revenue[Mode.MINE] - scores.power_cost[Mode.MINE]
    rows = np.flatnonzero(usable & (gpus - busy > 0))
    order = rows[np.lexsort((mine_value[rows], fleet.mode[rows] != Mode.AI))]
    got = new[order] > 1e-9
    full = np.isclose(new[order], (gpus - busy)[order])
    for k in range(len(order)):
        if got[k]:
            assert np.all(full[:k])


def _import_with(env: dict[str, str], code: str) -> list[str]:
    """Run `code` in a fresh interpreter (the cache directory is chosen at import) with
    `env` over this one's, no NUMBA_CACHE_DIR; its printed words."""
    full = {**os.environ, **env}
    full.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_compiled_code_cache_goes_to_a_writable_directory(tmp_path: Path) -> None:
    # A read-only home (as in the chart's container) must not stop the engine importing.
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    out = _import_with(
        {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
        "import os, orchestrator.engine.kernels;"
        "d = os.environ['NUMBA_CACHE_DIR']; print(d, os.access(d, os.W_OK))",
    )
    if os.geteuid() != 0:  # root may write anywhere
        assert not out[0].startswith(str(home))
    assert out[1] == "True"


def test_guards_take_any_real_dtype_a_policy_returns() -> None:
    from orchestrator.engine import apply_guards, build_context
    from orchestrator.framework import PolicyDecision, Reason
    from orchestrator.models.config import GuardConfig

    fleet = FleetTable.build(profiles("s21"), [Site(name="s")], np.zeros(4, np.int32))
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(now_s=0.0, prices=make_prices(fleet, observed_s=0.0),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
    wanted = [Mode.MINE, Mode.IDLE, 7, Mode.MINE]  # 7 is not a mode
    for dtype in (np.float16, np.longdouble, ">i8", "<u2", ">f8", np.int8):
        decision = PolicyDecision(
            target=np.array(wanted, dtype=dtype),  # type: ignore[arg-type]
            reason=np.full(4, Reason.HIGHER_VALUE, dtype=">i4"),  # type: ignore[arg-type]
        )
        plan = apply_guards(ctx, decision, guards)
        target, reason = plan.target, plan.reason
        assert target.tolist() == [Mode.MINE, Mode.IDLE, Mode.IDLE, Mode.MINE], dtype
        assert reason[2] == Reason.GUARD_INVALID_TARGET


def test_misaligned_inputs_are_refused_not_read_out_of_bounds() -> None:
    import pytest

    from orchestrator.engine import apply_guards, build_context
    from orchestrator.framework import PolicyDecision
    from orchestrator.models.config import GuardConfig

    fleet = FleetTable.build(profiles("s21", "h100-sxm-8x"), [Site(name="s")],
                             np.array([0, 1], np.int32))
    prices = make_prices(fleet, observed_s=0.0)
    with pytest.raises(ValueError, match="pending_gpus"):
        build_scores(fleet, prices, DemandSummary(np.zeros(2), np.full(2, np.nan)))
    with pytest.raises(ValueError, match="power_usd_mwh"):
        build_scores(fleet, replace(prices, power_usd_mwh=np.zeros(0)), DemandSummary.empty(1))
    with pytest.raises(ValueError, match=r"power_usd_mwh.*shape \(\)"):
        build_scores(fleet, replace(prices, power_usd_mwh=np.float64(40.0)),  # type: ignore[arg-type]
                     DemandSummary.empty(1))
    with pytest.raises(ValueError, match="table"):
        mode_argmax(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="one mode per node"):
        at_mode(np.zeros((3, 5)), np.zeros(4, np.int8))
    with pytest.raises(IndexError, match="mode out of range"):
        at_mode(np.zeros((3, 2)), np.array([0, 5], np.int8))
    ctx = build_context(now_s=0.0, prices=prices, demand=DemandSummary.empty(1), fleet=fleet,
                        guards=GuardConfig())
    with pytest.raises(ValueError, match="switch_load"):
        apply_guards(ctx, PolicyDecision.keep(ctx), GuardConfig(), np.zeros(5))
    with pytest.raises(ValueError, match="site_power_cap_w"):
        apply_guards(replace(ctx, site_power_cap_w=np.zeros(3)), PolicyDecision.keep(ctx),
                     GuardConfig())
    # One cap for every site still reads as that cap per site.
    plan = apply_guards(replace(ctx, site_power_cap_w=np.array(0.0)), PolicyDecision.keep(ctx),
                        GuardConfig())
    assert plan.site_over_cap.shape == (1,)


def test_a_cache_directory_others_can_write_is_never_used(tmp_path: Path) -> None:
    # Numba unpickles its cache index: a directory another user can write is refused.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    shared = tmp_path / f"hashpivot-numba-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    out = _import_with(
        {"TMPDIR": str(tmp_path), "XDG_CACHE_HOME": str(blocker)},
        "import os, orchestrator.framework.jit as jit;"
        "print(jit._CACHE_ON_DISK, os.environ.get('NUMBA_CACHE_DIR'))",
    )
    assert out == ["False", "None"]


def _cover_by_sorting(saving: np.ndarray, priority: np.ndarray, need: float) -> list[int]:
    """The cap's shedding order written the obvious way: a stable sort, then a scan."""
    covered = 0.0
    picked = []
    for j in np.argsort(priority, kind="stable"):
        if covered < need:
            picked.append(int(j))
            covered += saving[j]
    return picked


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_power_cap_sheds_in_the_order_a_stable_sort_gives(data: st.DataObject) -> None:
    from orchestrator.engine.kernels import _offer_step

    m = data.draw(st.integers(0, 40))
    # Few distinct values, so ties, NaN and infinities all occur.
    priority = np.array(data.draw(st.lists(
        st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 2.0, np.inf, np.nan]), min_size=m, max_size=m)))
    saving = np.array(data.draw(st.lists(
        st.sampled_from([0.5, 1.0, 3.0, 10.0]), min_size=m, max_size=m)))
    need = data.draw(st.sampled_from([-5.0, 0.0, 0.5, 2.0, 7.0, 100.0]))
    # Steps arrive in any order; the set kept must not depend on it.
    offered = data.draw(st.permutations(range(m)))
    base = data.draw(st.integers(0, 3))
    heap = np.full(base + m, -1, dtype=np.intp)
    size, covered = 0, 0.0
    for j in offered:
        size, covered = _offer_step(j, heap, base, size, covered, need, priority, saving)
    kept = heap[base : base + size].tolist()
    assert sorted(kept) == sorted(_cover_by_sorting(saving, priority, need))
    assert covered == sum(saving[j] for j in kept)
