"""The hindsight oracle's bound on a site with a power contract against an exact MILP
(HiGHS): on small sites with a fixed-price block resold at spot, a fixed or time-of-use
price, a demand charge, coincident-peak alerts, a demand-response event (availability and
energy payments, shortfall penalty) and a curtailment credit, no schedule earns more than
the bound.

The MILP is written here, node by node, from the inputs and the ledger's formulas in
docs/contracts.md, not from the oracle's classes or prices: x[n,t,m] ∈ {0,1} is node n in
mode m at step t, f[n,t] the GPUs demand fills, kw[t] the site's average draw, and every
max(·, 0) of the ledger (unused contracted energy, the energy payment's reduction below
the baseline, the credit's reduction below its baseline, the shortfall) an exact
big-M pair. Switching times are 0 so a node draws its mode's power all step; wear is paid.
The demand-response event's cap is left to the penalty: the MILP may exceed it and pay.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import highspy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.backtest.oracle import hindsight_oracle
from orchestrator.engine.contracts import AlertSeries, ContractBook, EventCalendar
from orchestrator.models import FleetTable, Site
from orchestrator.models.contract import (
    CoincidentPeak,
    CreditHours,
    CurtailmentCredit,
    DemandResponse,
    EventCalendarSource,
    FixedPrice,
    PowerContract,
    TimeOfUsePrice,
    TouPeriod,
)
from tests.conftest import profiles
from tests.unit.exact_milp import maximize

DT_S = 3600.0
POOL_FEE, PLATFORM_FEE, ADDER = 0.02, 0.1, 3.0
T0 = datetime(2024, 8, 20, 9, tzinfo=UTC).timestamp()  # a Tuesday, 09:00 UTC
MONTH_H = 31 * 24.0  # August
FIXED_USD_MWH = 42.0


def _exact_optimum(fleet: FleetTable, unit: np.ndarray, gpu: np.ndarray, spot: np.ndarray,
                   demand: np.ndarray, cap_w: float, terms: dict[str, Any]) -> float:
    steps, n = spot.shape[0], fleet.n
    dt_h = DT_S / 3600.0
    times = T0 + DT_S * np.arange(steps)
    inf = highspy.kHighsInf
    obj: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    integer: list[int] = []
    rows: list[tuple[dict[int, float], float, float]] = []

    def var(cost: float, lo: float = 0.0, hi: float = 1.0, is_int: bool = True) -> int:
        obj.append(cost)
        lower.append(lo)
        upper.append(hi)
        integer.append(1 if is_int else 0)
        return len(obj) - 1

    full_kw = float(np.sum(np.maximum(np.maximum(fleet.watts_mine, fleet.watts_ai),
                                      fleet.watts_idle))) / 1000.0
    big = 10.0 * (full_kw + 100.0)

    def positive_part(expr: dict[int, float], const: float, usd_per_unit: float) -> None:
        """g = max(expr + const, 0) exactly (a binary picks the branch), earning
        `usd_per_unit` per unit of g (negative: a cost)."""
        g = var(usd_per_unit, hi=big, is_int=False)
        z = var(0.0)
        rows.append(({g: 1.0, **{k: -v for k, v in expr.items()}}, const, inf))
        rows.append(({g: 1.0, **{k: -v for k, v in expr.items()}, z: big}, -inf, const + big))
        rows.append(({g: 1.0, z: -big}, -inf, 0.0))

    x: dict[tuple[int, int, int], int] = {}
    kw = [var(0.0, hi=big, is_int=False) for _ in range(steps)]
    kw_rows: list[dict[int, float]] = [{kw[t]: 1.0} for t in range(steps)]
    price = terms["price"]
    for i in range(n):
        p = fleet.profiles[int(fleet.profile[i])]
        gpus = float(p.gpus)
        modes = 3 if p.gpus else 2
        for t in range(steps):
            energy_price = _energy_price(price, times[t], float(spot[t, 0])) + ADDER
            v = [-p.watts_idle * energy_price / 1e6,
                 p.mine_hashrate * unit[t, fleet.algorithm[i]] / 24 * (1 - POOL_FEE)
                 - p.watts_mine * energy_price / 1e6]
            v.append(v[0])
            for m in range(modes):
                x[i, t, m] = var(v[m] * dt_h)
            rows.append(({x[i, t, m]: 1.0 for m in range(modes)}, 1.0, 1.0))
            watts = [p.watts_idle, p.watts_mine, p.watts_idle]
            for m in range(modes):
                kw_rows[t][x[i, t, m]] = -watts[m] / 1000.0
            if p.gpus:
                step_w = (p.watts_ai - p.watts_idle) / gpus
                f = var((gpu[t, 0] * (1 - PLATFORM_FEE) - step_w * energy_price / 1e6) * dt_h,
                        hi=gpus, is_int=False)
                rows.append(({f: 1.0, x[i, t, 2]: -gpus}, -inf, 0.0))
                x[i, t, 3] = f
                kw_rows[t][f] = -step_w / 1000.0
            for a in range(modes):
                for b in range(modes):
                    if a == b:
                        continue
                    y = var(-p.wear_usd_per_switch, is_int=False)
                    if t == 0:
                        if a == int(fleet.mode[i]):
                            rows.append(({y: 1.0, x[i, t, b]: -1.0}, 0.0, inf))
                    else:
                        rows.append(({y: 1.0, x[i, t - 1, a]: -1.0, x[i, t, b]: -1.0},
                                     -1.0, inf))
    for t in range(steps):
        rows.append((kw_rows[t], 0.0, 0.0))
        full: dict[int, float] = {}
        fills: dict[int, float] = {}
        for i in range(n):
            p = fleet.profiles[int(fleet.profile[i])]
            for m, w in enumerate([p.watts_idle, p.watts_mine, p.watts_ai][:3 if p.gpus else 2]):
                full[x[i, t, m]] = w
            if p.gpus:
                fills[x[i, t, 3]] = 1.0
        rows.append((full, -inf, cap_w))
        if fills:
            rows.append((fills, -inf, float(demand[t])))
    constant = 0.0
    # Fixed block resold at spot: unused MWh = max(block − energy, 0) pays the contract
    # price and earns spot.
    if isinstance(price, FixedPrice) and price.resale_at_spot:
        block_mwh = float(price.contracted_kw or 0.0) * dt_h / 1000.0
        for t in range(steps):
            positive_part({kw[t]: -dt_h / 1000.0}, block_mwh,
                          float(spot[t, 0]) - price.usd_mwh)
    # Demand charge: rate × the highest hourly draw × the share of the month covered.
    rate = terms["demand_rate"]
    if rate > 0:
        peak = var(-rate * steps * dt_h / MONTH_H, hi=big, is_int=False)
        for t in range(steps):
            rows.append(({peak: 1.0, kw[t]: -1.0}, 0.0, inf))
    # Coincident peak: usd_per_kw × draw × p ÷ intervals, each step.
    cp = terms["cp"]
    for t in range(steps):
        obj[kw[t]] -= cp.usd_per_kw * float(terms["alerts"][t]) / cp.peak_intervals
    # Demand response: availability (fixed), shortfall above max_draw_kw and the energy
    # payment below the baseline (the draw over the hour before the call) inside the event.
    dr: DemandResponse = terms["dr"]
    due, end, called = terms["event"]
    constant += steps * dr.committed_kw * dr.availability_usd_per_kw_month * dt_h / MONTH_H
    base_weight = np.clip(np.minimum(times + DT_S, called)
                          - np.maximum(times, called - dr.baseline_h * 3600.0), 0.0, None)
    for t in range(steps):
        inside_h = max(min(end, times[t] + DT_S) - max(due, times[t]), 0.0) / 3600.0
        if inside_h <= 0:
            continue
        positive_part({kw[t]: 1.0}, -dr.max_draw_kw, -dr.shortfall_usd_mwh * inside_h / 1000)
        if base_weight[: t + 1].sum() > 0:
            w = base_weight[: t + 1] / base_weight[: t + 1].sum()
            expr = {kw[u]: float(w[u]) for u in range(t + 1) if w[u] > 0}
            expr[kw[t]] = expr.get(kw[t], 0.0) - 1.0
            positive_part(expr, 0.0, dr.energy_usd_mwh * inside_h / 1000)
    # Curtailment credit in its hours: usd_mwh × max(baseline − draw, 0).
    credit: CurtailmentCredit = terms["credit"]
    for t in range(steps):
        hour = datetime.fromtimestamp(float(times[t]), UTC).hour
        if any(c.start_hour <= hour < c.end_hour for c in credit.hours):
            positive_part({kw[t]: -1.0}, credit.baseline_kw, credit.usd_mwh * dt_h / 1000)
    return maximize(obj, lower, upper, integer, rows) + constant


def _energy_price(price: object, t_s: float, spot: float) -> float:
    """What the ledger bills a MWh drawn at `t_s` (before the adder)."""
    if isinstance(price, FixedPrice):
        return price.usd_mwh
    if isinstance(price, TimeOfUsePrice):
        hour = datetime.fromtimestamp(t_s, UTC).hour
        usd = price.default_usd_mwh
        for period in price.periods:
            if period.start_hour <= hour < period.end_hour:
                usd = period.usd_mwh
        return usd
    return spot


@st.composite
def contract_sites(draw: st.DrawFn) -> tuple[Any, ...]:
    steps = draw(st.integers(3, 5))
    prof = draw(st.lists(st.integers(0, 2), min_size=2, max_size=3))
    modes = [draw(st.integers(0, 2 if p == 2 else 1)) for p in prof]
    # No switching time: a node draws its mode's power all step, as the MILP counts it.
    still = [p.model_copy(update={"mine_stop_s": 0.0, "mine_start_s": 0.0, "ai_start_s": 0.0,
                                  "ai_drain_s": 0.0})
             for p in profiles("s19-xp", "s21", "h100-sxm-8x")]
    probe = FleetTable.build(still, [Site(name="s")], prof, modes=modes)
    full_w = float(np.sum(np.maximum(probe.watts_mine, probe.watts_ai)))
    cap_w = float(draw(st.sampled_from([0.55, 0.8, 1.0]))) * full_w
    kind = draw(st.sampled_from(["spot", "fixed", "resale-tiny", "resale-small",
                                 "resale-large", "tou"]))
    price: Any = "spot"
    if kind == "fixed":
        price = FixedPrice(usd_mwh=FIXED_USD_MWH)
    elif kind.startswith("resale"):
        # A block below every node's idle draw, inside the site's range, above its cap.
        share = {"resale-tiny": 1e-6, "resale-small": 0.5, "resale-large": 1.2}[kind]
        price = FixedPrice(usd_mwh=FIXED_USD_MWH, resale_at_spot=True,
                           contracted_kw=share * cap_w / 1000.0)
    elif kind == "tou":
        price = TimeOfUsePrice(default_usd_mwh=30.0, periods=[
            TouPeriod(start_hour=10, end_hour=12, usd_mwh=300.0)])
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    alerts = rng.choice([0.0, 0.0, 0.05, 0.5], steps)
    dr = DemandResponse(
        max_draw_kw=float(draw(st.sampled_from([0.2, 0.6]))) * full_w / 1000.0,
        committed_kw=5.0, availability_usd_per_kw_month=4.0, energy_usd_mwh=120.0,
        shortfall_usd_mwh=float(draw(st.sampled_from([50.0, 2000.0]))),
        events=EventCalendarSource(path="events.csv"))
    credit = CurtailmentCredit(
        usd_mwh=80.0, baseline_kw=float(draw(st.sampled_from([0.3, 0.7, 1.5]))) * full_w / 1000,
        hours=[CreditHours(start_hour=9, end_hour=11)])
    contract = PowerContract(
        price=price, demand_charge_usd_per_kw_month=float(draw(st.sampled_from([0.0, 60.0]))),
        coincident_peak=CoincidentPeak(months=[8], usd_per_kw=60.0, alerts=0.0),
        demand_response=dr, curtailment_credit=credit)
    site = Site(name="s", power_cap_kw=cap_w / 1000, tariff_adder_usd_mwh=ADDER,
                pool_fee=POOL_FEE, ai_platform_fee=PLATFORM_FEE, timezone="UTC",
                contract=contract)
    fleet = FleetTable.build(still, [site], prof, modes=modes)
    times = T0 + DT_S * np.arange(steps)
    # One event: called during the first step, due part-way into the second.
    called = T0 + DT_S * float(draw(st.sampled_from([0.25, 1.0])))
    due = T0 + DT_S * 1.5
    end = T0 + DT_S * float(draw(st.sampled_from([2.0, 3.0])))
    book = ContractBook(
        [site], alerts={"s": AlertSeries(times, alerts)},
        events={"s": EventCalendar.of(np.array([due]), np.array([end]), np.array([called]),
                                      0.0)})
    hp = rng.uniform(0.035, 0.07, steps)
    unit = np.stack([hp if a == "sha256" else rng.uniform(0.5, 2.0, steps)
                     for a in fleet.algorithms], axis=1)
    gpu = rng.uniform(1.0, 4.0, (steps, max(len(fleet.gpu_models), 1)))
    spot = rng.choice([-10.0, 15.0, 40.0, 90.0, 400.0], (steps, 1))
    demand = rng.choice([0.0, 4.0, 8.0, 16.0], steps)
    terms = {"price": price, "demand_rate": contract.demand_charge_usd_per_kw_month,
             "cp": contract.coincident_peak, "alerts": alerts, "dr": dr,
             "event": (due, end, called), "credit": credit}
    return fleet, unit, gpu[:, : len(fleet.gpu_models)], spot, demand, cap_w, book, times, terms


@settings(max_examples=60, deadline=None)
@given(contract_sites())
def test_the_bound_holds_the_exact_optimum_under_a_power_contract(case: tuple[Any, ...]) -> None:
    fleet, unit, gpu, spot, demand, cap_w, book, times, terms = case
    best = _exact_optimum(fleet, unit, gpu, spot, demand, cap_w, terms)
    oracle = hindsight_oracle(
        fleet, realized_unit_price=unit, realized_gpu_price=gpu, realized_power=spot,
        demand_gpus=demand, dt_s=DT_S, max_iterations=300, tolerance=1e-4,
        contracts=book, times_s=times,
    )
    scale = max(1.0, abs(best))
    assert oracle.bound_usd >= best - 1e-7 * scale
    # The contract's lines are in the bound: priced at spot and without them, the oracle's
    # bound is another number.
    blind = hindsight_oracle(
        fleet, realized_unit_price=unit, realized_gpu_price=gpu, realized_power=spot,
        demand_gpus=demand, dt_s=DT_S, max_iterations=300, tolerance=1e-4,
    )
    assert blind.bound_usd != oracle.bound_usd


@settings(max_examples=1, deadline=None)
@given(contract_sites())
def test_a_contract_needs_each_steps_time(case: tuple[Any, ...]) -> None:
    fleet, unit, gpu, spot, demand, _, book, _, _ = case
    try:
        hindsight_oracle(fleet, realized_unit_price=unit, realized_gpu_price=gpu,
                         realized_power=spot, demand_gpus=demand, dt_s=DT_S, contracts=book)
    except ValueError as exc:
        assert "times_s" in str(exc)
    else:
        raise AssertionError("a contract without step times was accepted")


@pytest.mark.parametrize("spot_usd_mwh", [-10.0, 15.0, 90.0])
@pytest.mark.parametrize("block_share", [1e-6, 0.5, 1.2])
@pytest.mark.parametrize("mode", [0, 1])
def test_one_miner_one_step_with_a_resold_block(spot_usd_mwh: float, block_share: float,
                                                mode: int) -> None:
    """Nothing couples or relaxes here, so the bound is each mode's own linear price of its
    energy: it must stay at or above both modes' net, worked out by the ledger's formula
    (energy at the contract price, the unused part of the block resold at spot; no
    switching time, so a switch costs its wear only)."""
    p = profiles("s19-xp")[0].model_copy(update={"mine_stop_s": 0.0, "mine_start_s": 0.0})
    block_kw = block_share * p.watts_mine / 1000.0
    site = Site(name="s", tariff_adder_usd_mwh=ADDER, pool_fee=POOL_FEE, timezone="UTC",
                contract=PowerContract(price=FixedPrice(
                    usd_mwh=FIXED_USD_MWH, resale_at_spot=True, contracted_kw=block_kw)))
    fleet = FleetTable.build([p], [site], [0], modes=[mode])
    unit = np.array([[0.05]])  # USD per TH/s per day
    spot = np.array([[spot_usd_mwh]])
    oracle = hindsight_oracle(
        fleet, realized_unit_price=unit, realized_gpu_price=np.zeros((1, 0)),
        realized_power=spot, demand_gpus=np.zeros(1), dt_s=DT_S,
        contracts=ContractBook([site]), times_s=np.array([T0]))

    def net(watts: float, revenue: float) -> float:
        used_mwh = watts / 1e6
        unused_mwh = max(block_kw / 1000.0 - used_mwh, 0.0)
        return (revenue - used_mwh * (FIXED_USD_MWH + ADDER)
                - unused_mwh * FIXED_USD_MWH + unused_mwh * spot_usd_mwh)

    mining = p.mine_hashrate * 0.05 / 24 * (1 - POOL_FEE)
    wear = p.wear_usd_per_switch
    best = max(net(p.watts_idle, 0.0) - (wear if mode == 1 else 0.0),
               net(p.watts_mine, mining) - (wear if mode == 0 else 0.0))
    assert oracle.bound_usd >= best - 1e-9
