"""Conversion planning's model of a site: stressed scenarios reach every price a policy
reads and the ASICs that make room
are only ever taken away."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.backtest.runner import prepare_backtest
from orchestrator.models.build import profile_catalog
from orchestrator.planning.config import load_plan
from orchestrator.planning.evaluate import Scenario, _stress, sized_config
from tests.unit.planning_helpers import small_plan


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
