"""`hashpivot plan`'s answers on runs of the real site: when converting cannot pay, when it
clearly does, that a higher GPU rent never lowers the recommended size, and that stressed
scenarios move the money the way they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.planning.config import Plan, load_plan
from orchestrator.planning.model import SizeSummary, recommend
from orchestrator.planning.run import PlanResult, run_plan
from tests.unit.planning_helpers import small_plan

HOURS_PER_YEAR = 8766.0


def _most_a_converted_mw_can_return(plan: Plan, rent: float) -> float:
    """Every GPU rented every hour at `rent`, no fee, no power, no discounting, plus
    everything the horizon gives back: more than a converted MW can ever return."""
    c, f = plan.file.conversion, plan.file.financing
    revenue = c.gpus_per_mw * rent * HOURS_PER_YEAR * f.horizon_years
    gpu_left = c.gpus_per_mw * c.capex_per_gpu_usd * max(
        0.0, 1 - (f.horizon_years - c.build_months / 12) / f.gpu_life_years)
    works_left = (c.capex_per_mw_usd + c.tier_capex_per_mw_usd) * f.facility_residual_share
    asic_sale = 1e6 / 3010 * 140 * f.asic_resale_usd_per_th  # a MW of the S19 XP that go first
    return revenue + gpu_left + works_left + asic_sale


def _capex_per_mw(plan: Plan) -> float:
    c = plan.file.conversion
    return c.capex_per_mw_usd + c.tier_capex_per_mw_usd + c.gpus_per_mw * c.capex_per_gpu_usd


def _best_by_mean(result: PlanResult) -> float:
    means = {s: np.mean([o.npv_usd for o in result.outcomes if o.size_mw == s])
             for s in {o.size_mw for o in result.outcomes}}
    top = max(means.values())
    return min(s for s, v in means.items() if v >= top - 0.01)


def test_converting_cannot_pay_recommends_zero(tmp_path: Path) -> None:
    plan = load_plan(small_plan(tmp_path, rent=1.0,
                                conversion={"capex_per_gpu_usd": 60_000, "build_months": 9}))
    assert _most_a_converted_mw_can_return(plan, 1.0) < _capex_per_mw(plan)  # the premise
    result = run_plan(plan)
    assert result.recommendation.size_mw == 0
    assert "keep the hall mining" in result.recommendation.why
    assert all(o.delta_npv_usd < 0 for o in result.outcomes if o.size_mw > 0)
    # Cash earned never covers the capex (residual values at the horizon do not count).
    assert all(o.payback_years is None for o in result.outcomes if o.size_mw > 0)
    assert _best_by_mean(result) == 0


def test_converting_clearly_pays_recommends_a_conversion(tmp_path: Path) -> None:
    # Nothing to pay for the conversion and a rent no mining MW comes near.
    free = {"capex_per_gpu_usd": 0, "capex_per_mw_usd": 0, "tier_capex_per_mw_usd": 0,
            "tier_opex_per_mw_year_usd": 0, "build_months": 0}
    plan = load_plan(small_plan(tmp_path, rent=20.0, conversion=free))
    result = run_plan(plan)
    rec = result.recommendation.size_mw
    assert rec > 0
    assert rec == _best_by_mean(result)
    mine = [o for o in result.outcomes if o.size_mw == rec]
    assert all(o.delta_npv_usd > 0 for o in mine)
    assert all(o.irr is None for o in mine)  # nothing invested: no rate of return to speak of
    assert all(o.payback_years == 0.0 for o in mine)  # nothing owed at any time
    assert "convert" in result.recommendation.why


def test_higher_gpu_rent_never_lowers_the_recommended_size(tmp_path: Path) -> None:
    rents = [0.5, 2.0, 8.0, 32.0]
    recs = []
    for rent in rents:
        plan = load_plan(small_plan(tmp_path, rent=rent, name=f"plan-{rent}.yaml"))
        recs.append(run_plan(plan).recommendation.size_mw)
    assert recs == sorted(recs)
    low = load_plan(small_plan(tmp_path, rent=rents[0]))
    assert _most_a_converted_mw_can_return(low, rents[0]) < _capex_per_mw(low)
    assert recs[0] == 0
    assert recs[-1] > 0


def test_stressed_scenarios_scale_the_money_they_name(tmp_path: Path) -> None:
    plan = load_plan(small_plan(tmp_path, rent=3.0))
    result = run_plan(plan)
    cell = {(c.scenario, c.size_mw): c for c in result.cells}
    base = result.scenarios[0].name
    stress = {s.name: s for s in result.scenarios[1:]}
    hp = stress["hashprice -50%"]
    rent = stress["GPU rent -40%"]
    # All-mining hall: revenue halves with hashprice, or falls further if miners stop.
    before = cell[(base, 0.0)].mine_revenue.sum()
    after = cell[(hp.name, 0.0)].mine_revenue.sum()
    assert after <= hp.hashprice * before * (1 + 1e-9)
    assert after > 0
    # GPU rent: rented GPU-hours cannot grow when rent falls, so AI revenue scales by at most
    # the factor.
    ai_before = cell[(base, 2.0)].ai_revenue.sum()
    ai_after = cell[(rent.name, 2.0)].ai_revenue.sum()
    assert 0 < ai_after <= rent.gpu_rent * ai_before * (1 + 1e-9)
    assert cell[(rent.name, 2.0)].mean_gpu_rent == pytest.approx(
        rent.gpu_rent * cell[(base, 2.0)].mean_gpu_rent)
    summary = result.summary()
    texts = {s["name"]: s["assumptions"] for s in summary["scenarios"]}
    assert "hashprice × 0.5 (-50%)" in texts["hashprice -50%"]
    assert "GPU rent × 0.6 (-40%)" in texts["GPU rent -40%"]
    assert "blocks" in texts["bootstrap"]


def _size(mw: float, mean: float, worst: float) -> SizeSummary:
    return SizeSummary(
        size_mw=mw, npv_mean=mean, npv_min=worst, npv_max=mean + (mean - worst), npv_std=1.0,
        delta_npv_mean=0.0, irr_median=None, payback_years_median=None,
        revenue_usd_per_year=0.0, value_per_mw=0.0, positive_share=0.5, bootstrap_p10=None,
        bootstrap_p50=None, bootstrap_p90=None, breakeven_gpu_rent=None,
        breakeven_hashprice=None, converted_mw_value=None, capex_usd=0.0,
    )


@pytest.mark.parametrize(("objective", "expected"), [("mean", 2.0), ("worst", 1.0)])
def test_objective_picks_by_mean_or_worst_case(
    tmp_path: Path, objective: str, expected: float
) -> None:
    plan = load_plan(small_plan(tmp_path, objective=objective))
    sizes = [_size(0, 10e6, 8e6), _size(1, 12e6, 9e6), _size(2, 13e6, 1e6)]
    rec = recommend(plan, sizes, 3)
    assert rec.size_mw == expected
    assert f"convert {expected:g} MW" in rec.why
    # A tie goes to the smaller conversion.
    tie = recommend(plan, [_size(0, 10e6, 8e6), _size(1, 10e6, 8e6)], 3)
    assert tie.size_mw == 0
