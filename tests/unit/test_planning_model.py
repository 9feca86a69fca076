"""Conversion planning's model of a site: stressed scenarios reach every price a policy
reads, the ASICs that make room are only ever taken away, and monthly cash flows and
break-even prices match cases worked by hand."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.backtest.runner import prepare_backtest
from orchestrator.models.build import profile_catalog
from orchestrator.planning.config import load_plan
from orchestrator.planning.evaluate import CellResult, Scenario, _stress, sized_config
from orchestrator.planning.model import flows, outcomes, summarize
from tests.unit.planning_helpers import small_plan
from tests.unit.test_cli import hashpivot


def test_a_stressed_scenario_scales_the_history_a_forecasting_policy_reads(
    tmp_path: Path,
) -> None:
    plan = load_plan(small_plan(tmp_path, rent=3.0))
    start = datetime(2024, 7, 6, 6, tzinfo=UTC)
    sc = Scenario("stress", "stressed", start, datetime(2024, 7, 8, 6, tzinfo=UTC),
                  hashprice=0.5, power=1.3)
    cfg, _ = sized_config(plan, 0.0, sc)
    inputs = prepare_backtest(cfg, needs_history=True)
    assert inputs.history is not None
    before_hp = inputs.history.hashprice.copy()
    before_power = inputs.history.power.copy()
    stressed = _stress(inputs, sc)
    assert stressed.history is not None
    # What the policy sees of the past is the same market, stressed the same way.
    np.testing.assert_allclose(stressed.history.hashprice, 0.5 * before_hp)
    np.testing.assert_allclose(stressed.history.power, 1.3 * before_power)
    now = float(inputs.times[-1])
    seen = stressed.history.at(now)
    assert seen.hashprice_usd_ph_day.size > 0
    np.testing.assert_allclose(seen.hashprice_usd_ph_day,
                               0.5 * inputs.history.at(now).hashprice_usd_ph_day)
    # The unstressed inputs are left as they were (other cells share them).
    np.testing.assert_array_equal(inputs.history.hashprice, before_hp)


def test_room_for_the_conversion_never_adds_asics(tmp_path: Path) -> None:
    # A big, inefficient group first, then a smaller, efficient one: rounding the first to
    # whole machines overshoots the room by up to half a machine, which the second must
    # not give back as machines the site does not have.
    path = small_plan(tmp_path)
    data = yaml.safe_load(path.read_text())
    site = data["site_overrides"]["sites"][0]["name"]
    data["site_overrides"]["fleet"] = [
        {"profile": "s19-hydro", "count": 100, "site": site, "mode": "mine"},
        {"profile": "s21", "count": 100, "site": site, "mode": "mine"},
    ]
    path.write_text(yaml.safe_dump(data))
    plan = load_plan(path)
    catalog = profile_catalog(plan.site)
    big, small = catalog["s19-hydro"], catalog["s21"]
    assert big.watts_mine / big.mine_hashrate > small.watts_mine / small.mine_hashrate
    # Room for 10.6 of the big ones: 11 go, and 0.4 of one is over; that is more than half
    # an S21, yet no S21 may be added back.
    assert 0.4 * big.watts_mine > 0.5 * small.watts_mine
    size_mw = 10.6 * big.watts_mine / 1e6
    sc = Scenario("r", "recorded", datetime(2024, 7, 6, 6, tzinfo=UTC),
                  datetime(2024, 7, 8, 6, tzinfo=UTC))
    sized, facts = sized_config(plan, size_mw, sc)
    after = {g.profile: g.count for g in sized.fleet}
    assert after["s19-hydro"] == 100 - 11
    assert after["s21"] == 100
    assert facts["removed_asics"] == 11
    assert facts["removed_th"] == pytest.approx(11 * big.mine_hashrate)
    assert facts["kept_th"] == pytest.approx(89 * big.mine_hashrate + 100 * small.mine_hashrate)


def _cell(size_mw: float, **over: object) -> CellResult:
    days = 10
    base: dict[str, object] = {
        "size_mw": size_mw, "scenario": "s",
        "mine_revenue": np.full(days, 100.0), "ai_revenue": np.full(days, 1000.0),
        "power_cost": np.full(days, 300.0), "switching_cost": np.full(days, 10.0),
        "existing_net_per_day": 50.0, "existing_mine_per_day": 80.0,
        "new_gpus": 1600, "removed_asics": 30, "removed_th": 5000.0, "kept_th": 20000.0,
        "mean_gpu_rent": 2.0, "mean_hashprice": 50.0, "totals": {},
    }
    base.update(over)
    return CellResult(**base)  # type: ignore[arg-type]


def test_monthly_cash_flows_match_a_case_worked_by_hand(tmp_path: Path) -> None:
    conv = {"capex_per_gpu_usd": 25_000, "capex_per_mw_usd": 5_000_000,
            "tier": 3, "tier_capex_per_mw_usd": 1_000_000, "tier_opex_per_mw_year_usd": 120_000,
            "build_months": 3}
    fin = {"discount_rate": 0.1, "horizon_years": 1, "gpu_life_years": 2,
           "asic_resale_usd_per_th": 4.0, "asic_residual_share": 0.5,
           "facility_residual_share": 0.25}
    plan = load_plan(small_plan(tmp_path, conversion=conv, financing=fin))
    avail = 0.99982  # Tier III
    f = flows(plan, _cell(2.0))
    # Whole days in month m (1-based): the days whose start falls in it, 365.25/12 a month.
    dpm = 365.25 / 12
    days_in = [math.floor(m * dpm) - math.floor((m - 1) * dpm) for m in range(1, 13)]
    capex = 2 * (5_000_000 + 1_000_000) + 1600 * 25_000
    assert f.capex == capex
    assert f.total[0] == pytest.approx(-capex + 5000 * 4.0)
    net_per_day = 100 + 1000 * avail - 300 - 10
    terminal = (1600 * 25_000 * (1 - 0.75 / 2)  # 9 months in service of a 2-year life
                + 20000 * 4.0 * 0.5 + 2 * 6_000_000 * 0.25)
    assert f.terminal == pytest.approx(terminal)
    for m in range(1, 13):
        if m <= 3:  # being built: the kept nodes earn their daily average
            want, mine, ai = 50 * dpm, 80 * dpm, 0.0
        else:
            want = net_per_day * days_in[m - 1] - 2 * 120_000 / 12
            mine, ai = 100 * days_in[m - 1], 1000 * avail * days_in[m - 1]
        if m == 12:
            want += terminal
        assert f.total[m] == pytest.approx(want), m
        assert f.mine_revenue[m] == pytest.approx(mine), m
        assert f.ai_revenue[m] == pytest.approx(ai), m
    assert f.total.shape == (13,)
    # Revenue per year is what the run earned, AI at the tier's availability as above.
    zero = _cell(0.0, new_gpus=0, removed_th=0.0)
    got = next(o for o in outcomes(plan, [zero, _cell(2.0)]) if o.size_mw == 2.0)
    assert got.revenue_usd_per_year == pytest.approx((100 + 1000 * avail) * 365.25)


def test_break_even_hashprice_zeroes_the_conversions_npv(tmp_path: Path) -> None:
    # Mining money (in the run and while the conversion is built) scaled to the break-even
    # hashprice leaves the conversion's NPV at zero, decisions held as simulated.
    conv = {"capex_per_gpu_usd": 0, "capex_per_mw_usd": 100_000, "tier_capex_per_mw_usd": 0,
            "tier_opex_per_mw_year_usd": 0, "build_months": 6}
    plan = load_plan(small_plan(tmp_path, conversion=conv))
    zero = _cell(0.0, ai_revenue=np.zeros(10), existing_net_per_day=0.0,
                 existing_mine_per_day=0.0, new_gpus=0, removed_th=0.0, kept_th=25000.0)
    conv_cell = _cell(1.0, existing_mine_per_day=30.0, existing_net_per_day=30.0 - 20.0)
    results = outcomes(plan, [zero, conv_cell])
    summary = summarize(plan, results, {}, "s")
    be = next(s for s in summary if s.size_mw == 1.0).breakeven_hashprice
    assert be is not None
    k = be / 50.0

    def scaled(c: CellResult) -> CellResult:
        extra = (k - 1) * c.existing_mine_per_day
        return dataclasses.replace(
            c, mine_revenue=c.mine_revenue * k, existing_mine_per_day=c.existing_mine_per_day * k,
            existing_net_per_day=c.existing_net_per_day + extra)

    again = outcomes(plan, [scaled(zero), scaled(conv_cell)])
    delta = next(o for o in again if o.size_mw == 1.0).delta_npv_usd
    assert delta == pytest.approx(0.0, abs=1e-6 * abs(results[1].delta_npv_usd))


def test_a_demand_stress_on_a_site_without_a_demand_trace_is_refused(tmp_path: Path) -> None:
    # The stress would run as recorded while its assumptions claim another load factor;
    # a site without the trace gives converted MW nothing to earn, stressed or not.
    path = small_plan(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["site_overrides"]["demand"] = None
    data["scenarios"]["stresses"] = [{"name": "low demand", "load_factor": 0.3}]
    path.write_text(yaml.safe_dump(data))
    proc = hashpivot("plan", "-c", str(path), "--no-ray")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs an AI demand trace" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    # With the trace, the same stress is a plan like any other.
    data["site_overrides"].pop("demand")
    path.write_text(yaml.safe_dump(data))
    assert load_plan(path).file.scenarios.stresses[0].load_factor == 0.3
