"""The hindsight oracle against an exact MILP (HiGHS) on small capped sites with switching
costs and AI demand: its feasible value never exceeds the true optimum, its bound never
falls below it, and the gap it reports is the distance between the two.

The MILP is written here from the inputs (hardware nameplate values, prices, the cap),
node by node, not from the oracle's classes: x[n,t,m] ∈ {0,1} is node n in mode m at
step t, f[n,t] the GPUs demand fills, y[n,t,a,b] a switch a→b paid once.
"""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.backtest.oracle import hindsight_oracle
from orchestrator.models import FleetTable, Site
from tests.conftest import profiles
from tests.unit.exact_milp import maximize

DT_S = 3600.0
POOL_FEE, PLATFORM_FEE, ADDER = 0.02, 0.1, 3.0


def _milp_optimum(fleet: FleetTable, unit: np.ndarray, gpu: np.ndarray, power: np.ndarray,
                  demand: np.ndarray, cap_w: float) -> float:
    steps, n = power.shape[0], fleet.n
    dt_h = DT_S / 3600.0
    inf = highspy.kHighsInf
    obj: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    integer: list[int] = []

    def var(cost: float, hi: float = 1.0, is_int: bool = True) -> int:
        obj.append(cost)
        lower.append(0.0)
        upper.append(hi)
        integer.append(1 if is_int else 0)
        return len(obj) - 1

    rows: list[tuple[dict[int, float], float, float]] = []
    x: dict[tuple[int, int, int], int] = {}
    stop = {0: 0.0, 1: 30.0, 2: 0.0}
    for i in range(n):
        p = fleet.profiles[int(fleet.profile[i])]
        stop = {0: 0.0, 1: p.mine_stop_s / 3600, 2: p.ai_drain_s / 3600}
        start = {0: 0.0, 1: p.mine_start_s / 3600, 2: p.ai_start_s / 3600}
        gpus = float(p.gpus)
        for t in range(steps):
            price = power[t, 0] + ADDER
            hashrate_unit = unit[t, fleet.algorithm[i]]
            v = {
                0: -p.watts_idle * price / 1e6,
                1: p.mine_hashrate * hashrate_unit / 24 * (1 - POOL_FEE)
                - p.watts_mine * price / 1e6,
            }
            v[2] = v[0]
            margin = 0.0
            if p.gpus:
                margin = gpu[t, 0] * (1 - PLATFORM_FEE) - (p.watts_ai - p.watts_idle) / gpus \
                    * price / 1e6
            for m in range(3 if p.gpus else 2):
                x[i, t, m] = var(v[m] * dt_h)
            rows.append(({x[i, t, m]: 1.0 for m in range(3 if p.gpus else 2)}, 1.0, 1.0))
            if p.gpus:
                f = var(margin * dt_h, hi=gpus, is_int=False)
                rows.append(({f: 1.0, x[i, t, 2]: -gpus}, -inf, 0.0))
                x[i, t, 3] = f
            # What a switch into b costs: downtime × b's hourly value above idle (full),
            # plus wear: the switching node draws idle power and earns nothing.
            worth = {0: v[0], 1: v[1], 2: v[0] + gpus * max(margin, 0.0)}
            for a in range(3 if p.gpus else 2):
                for b in range(3 if p.gpus else 2):
                    if a == b:
                        continue
                    cost = min(stop[a] + start[b], dt_h) * max(worth[b] - worth[0], 0.0) \
                        + p.wear_usd_per_switch
                    y = var(-cost, is_int=False)
                    if t == 0:
                        if a == int(fleet.mode[i]):
                            rows.append(({y: 1.0, x[i, t, b]: -1.0}, 0.0, inf))
                    else:
                        rows.append(({y: 1.0, x[i, t - 1, a]: -1.0, x[i, t, b]: -1.0}, -1.0, inf))
    for t in range(steps):
        draw: dict[int, float] = {}
        fills: dict[int, float] = {}
        for i in range(n):
            p = fleet.profiles[int(fleet.profile[i])]
            watts = [p.watts_idle, p.watts_mine, p.watts_ai]
            for m in range(3 if p.gpus else 2):
                draw[x[i, t, m]] = watts[m]
            if p.gpus:
                fills[x[i, t, 3]] = 1.0
        rows.append((draw, -inf, cap_w))
        if fills:
            rows.append((fills, -inf, float(demand[t])))
    return maximize(obj, lower, upper, integer, rows)


@st.composite
def small_sites(draw: st.DrawFn) -> tuple[Any, ...]:
    steps = draw(st.integers(2, 5))
    prof = draw(st.lists(st.integers(0, 2), min_size=2, max_size=4))
    modes = [draw(st.integers(0, 2 if p == 2 else 1)) for p in prof]
    site = Site(name="s", power_cap_kw=1.0, tariff_adder_usd_mwh=ADDER, pool_fee=POOL_FEE,
                ai_platform_fee=PLATFORM_FEE)
    fleet = FleetTable.build(profiles("s19-xp", "s21", "h100-sxm-8x"), [site], prof,
                             modes=modes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    hp = rng.uniform(0.035, 0.07, steps)  # USD per TH/s per day
    unit = np.stack([hp if a == "sha256" else rng.uniform(0.5, 2.0, steps)
                     for a in fleet.algorithms], axis=1)
    gpu = rng.uniform(1.0, 4.0, (steps, max(len(fleet.gpu_models), 1)))
    power = rng.choice([15.0, 40.0, 90.0, 400.0], (steps, 1))
    demand = rng.choice([0.0, 4.0, 8.0, 16.0], steps)
    full = float(np.sum(np.maximum(fleet.watts_mine, fleet.watts_ai)))
    cap_w = float(draw(st.sampled_from([0.3, 0.55, 0.8]))) * full
    return fleet, unit, gpu[:, : len(fleet.gpu_models)], power, demand, cap_w


@settings(max_examples=40)
@given(small_sites())
def test_feasible_value_and_bound_bracket_the_exact_optimum(case: tuple[Any, ...]) -> None:
    fleet, unit, gpu, power, demand, cap_w = case
    fleet = FleetTable.build(
        fleet.profiles, [fleet.sites[0].model_copy(update={"power_cap_kw": cap_w / 1000})],
        fleet.profile, modes=fleet.mode,
    )
    best = _milp_optimum(fleet, unit, gpu, power, demand, cap_w)
    oracle = hindsight_oracle(
        fleet, realized_unit_price=unit, realized_gpu_price=gpu, realized_power=power,
        demand_gpus=demand, dt_s=DT_S, max_iterations=300, tolerance=1e-4,
    )
    scale = max(1.0, abs(best))
    assert oracle.feasible_usd <= best + 1e-7 * scale
    assert oracle.bound_usd >= best - 1e-7 * scale
    assert oracle.net_usd == oracle.feasible_usd
    assert oracle.gap == max(oracle.bound_usd - oracle.feasible_usd, 0) / abs(oracle.feasible_usd)
    assert oracle.net_per_step.sum() == np.float64(oracle.feasible_usd) or np.isclose(
        oracle.net_per_step.sum(), oracle.feasible_usd, rtol=1e-9)
    # Every node is counted in a mode at every step.
    assert np.all(oracle.modes.sum(axis=1) == fleet.n)
    # Held to the running total of the demand instead of each step's, the bound is looser
    # (served work may move later) and still above the optimum.
    cumulative = hindsight_oracle(
        fleet, realized_unit_price=unit, realized_gpu_price=gpu, realized_power=power,
        demand_gpus=demand, arrived_gpus=demand, dt_s=DT_S, max_iterations=300,
        tolerance=1e-4,
    )
    assert cumulative.bound_usd >= best - 1e-7 * scale
    assert cumulative.bound_demand == "arrivals, cumulative"


def test_the_iteration_limit_and_tolerance_are_reported() -> None:
    fleet = FleetTable.build(profiles("s19-xp", "s21"),
                             [Site(name="s", power_cap_kw=4.0)], [0, 1, 1], modes=[1, 1, 1])
    steps = 6
    unit = np.stack([np.linspace(0.04, 0.06, steps)], axis=1)
    power = np.array([[20.0], [30.0], [200.0], [25.0], [35.0], [45.0]])
    oracle = hindsight_oracle(fleet, realized_unit_price=unit, realized_gpu_price=np.zeros((6, 0)),
                              realized_power=power, demand_gpus=np.zeros(steps), dt_s=DT_S,
                              max_iterations=3, tolerance=0.0)
    assert oracle.iterations <= 3 and oracle.max_iterations == 3
    assert f"{oracle.iterations} of 3 iterations" in oracle.kind
    assert f"gap {oracle.gap:.2%}" in oracle.kind
