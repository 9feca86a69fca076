"""What a policy reads about the site's power and the switch budgets, against values
worked out here from the hardware profiles and the switch times the test sets."""

from __future__ import annotations

import numpy as np

from orchestrator.engine import build_context
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from orchestrator.models.config import GuardConfig
from tests.conftest import make_prices, profiles

NOW = 10_000_000.0


def test_site_power_headroom_and_switches_used() -> None:
    s21, h100 = profiles("s21", "h100-sxm-8x")
    fleet = FleetTable.build(
        [s21, h100], [Site(name="a", power_cap_kw=20.0), Site(name="b")], [0, 0, 1, 1],
        node_sites=[0, 0, 0, 1], modes=[Mode.MINE, Mode.IDLE, Mode.AI, Mode.AI],
        since_s=NOW - 86_400.0)
    guards = GuardConfig(max_switches_per_node_per_day=4, max_fleet_switch_share_per_hour=0.5)
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(1), fleet=fleet, guards=guards,
                        switch_load=np.array([2.0, 0.0, 1.0, 4.0]))
    site_a = s21.watts_mine + s21.watts_idle + h100.watts_ai
    np.testing.assert_allclose(ctx.site_power_w, [site_a, h100.watts_ai])
    np.testing.assert_allclose(ctx.site_headroom_w[0], 20_000.0 - site_a)
    assert np.isinf(ctx.site_headroom_w[1])
    # One day since each node's last switch: half of each count is left.
    np.testing.assert_allclose(ctx.switches_24h, [1.0, 0.0, 0.5, 2.0])
    assert ctx.max_switches_per_node_per_day == 4
    assert ctx.fleet_switches_per_hour == 2


def test_no_switch_history_reads_as_none_used() -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], [0, 0], modes=[Mode.MINE, Mode.MINE])
    ctx = build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW),
                        demand=DemandSummary.empty(0), fleet=fleet, guards=GuardConfig())
    np.testing.assert_array_equal(ctx.switches_24h, [0.0, 0.0])


def test_efficiency_and_switching_time_from_the_profiles() -> None:
    s21, h100 = profiles("s21", "h100-sxm-8x")
    fleet = FleetTable.build([s21, h100], [Site()], [0, 0, 1],
                             modes=[Mode.MINE, Mode.IDLE, Mode.AI])
    eff = fleet.efficiency_j_per_unit()
    assert eff[0] == s21.watts_mine / s21.mine_hashrate
    # To mining: the mining ASIC stays (0 h); the idle one starts; the GPU node drains
    # its AI work and starts mining.
    np.testing.assert_allclose(fleet.switch_hours(Mode.MINE), [
        0.0, s21.mine_start_s / 3600.0, (h100.ai_drain_s + h100.mine_start_s) / 3600.0])
    np.testing.assert_allclose(fleet.switch_hours([Mode.IDLE, Mode.IDLE, Mode.AI]),
                               [s21.mine_stop_s / 3600.0, 0.0, 0.0])
