"""Economics against hand-computed values and published hashprice points."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from orchestrator import economics as econ
from tests.conftest import hashprice_by_hand


def test_network_hashrate_from_difficulty() -> None:
    # D × 2^32 / 600: 1.1e14 difficulty ≈ 787 EH/s.
    assert econ.network_hashrate_hs(1.1e14) == pytest.approx(1.1e14 * 4294967296 / 600)
    assert econ.network_hashrate_hs(1.1e14) / 1e18 == pytest.approx(787.4, rel=1e-3)


def hand_hashprice_usd_per_ph_day(difficulty: float, price: float, subsidy: float,
                                  fees: float) -> float:
    return hashprice_by_hand(difficulty, price, subsidy, fees) * 1000.0


def test_hashprice_design_check_value() -> None:
    # The design's check value, worked out by hand: 57.21 USD/PH/day.
    hp = econ.hashprice_usd_per_ph_day(1.1e14, 97_000.0, 3.125, 0.1)
    assert hp == pytest.approx(57.21, abs=0.005)
    assert hp == pytest.approx(hand_hashprice_usd_per_ph_day(1.1e14, 97_000.0, 3.125, 0.1),
                               rel=1e-12)
    per_th = econ.hashprice_usd_per_th_day(1.1e14, 97_000.0, 3.125, 0.1)
    assert per_th * 1000 == pytest.approx(57.21, abs=0.005)
    # Fees count: without them the same network pays 55.43.
    assert econ.hashprice_usd_per_ph_day(1.1e14, 97_000.0, 3.125, 0.0) == pytest.approx(
        55.43, abs=0.005)


@pytest.mark.parametrize(
    ("difficulty", "price", "fees", "published"),
    [
        # Hashrate Index roundups (USD/PH/day); the index averages exchange prices over
        # the day, so a single price lands within 1% of it.
        (108.52e12, 93_450.0, 0.093, 55.21),  # 2024-12-23
        (110.57e12, 86_350.0, 0.03, 49.40),  # 2025-03-03, fees typical of that week
    ],
)
def test_hashprice_matches_published_points(
    difficulty: float, price: float, fees: float, published: float
) -> None:
    hp = econ.hashprice_usd_per_ph_day(difficulty, price, 3.125, fees)
    assert hp == pytest.approx(hand_hashprice_usd_per_ph_day(difficulty, price, 3.125, fees),
                               rel=1e-12)
    assert hp == pytest.approx(published, rel=0.01)


def test_live_market_snapshot_prices_mining_with_fees() -> None:
    """The live and dry-run path (a market snapshot aligned with the fleet) prices an
    S21's mining at the design's 57.21 USD/PH/day, fees included."""
    from datetime import UTC, datetime

    from orchestrator.engine import build_context
    from orchestrator.engine.prices import snapshot_to_prices
    from orchestrator.models import DemandSummary, FleetTable, Mode, Site
    from orchestrator.models.config import GuardConfig
    from orchestrator.models.market import MarketSnapshot, Observed
    from tests.conftest import profiles

    at = datetime(2026, 1, 1, tzinfo=UTC)

    def obs(v: float) -> Observed:
        return Observed(value=v, source="test", observed_at=at)

    snap = MarketSnapshot(btc_usd=obs(97_000.0), difficulty=obs(1.1e14),
                          fees_btc_per_block=obs(0.1), subsidy_btc=obs(3.125),
                          power_usd_mwh={"default": obs(40.0)})
    fleet = FleetTable.build(profiles("s21"), [Site(pool_fee=0.02)], [0], modes=[1])
    prices = snapshot_to_prices(snap, fleet)
    per_th = 57.21 / 1000.0
    assert prices.usd_per_unit_day[0] == pytest.approx(per_th, abs=5e-6)
    ctx = build_context(now_s=at.timestamp(), prices=prices, demand=DemandSummary.empty(0),
                        fleet=fleet, guards=GuardConfig())
    # 200 TH/s × 0.05721 USD/TH/day ÷ 24 h × (1 − 2% pool fee).
    assert ctx.scores.revenue[Mode.MINE, 0] == pytest.approx(200 * per_th / 24 * 0.98,
                                                              rel=1e-4)


def test_hashprice_vectorizes() -> None:
    d = np.array([1e14, 2e14])
    hp = econ.hashprice_usd_per_ph_day(d, 90_000.0, 3.125, 0.0)
    assert hp[0] == pytest.approx(2 * hp[1])


@pytest.mark.parametrize(
    ("height", "subsidy"),
    [(0, 50.0), (209_999, 50.0), (210_000, 25.0), (420_000, 12.5), (630_000, 6.25),
     (839_999, 6.25), (840_000, 3.125), (1_050_000, 1.5625)],
)
def test_subsidy_by_height(height: int, subsidy: float) -> None:
    assert econ.subsidy_btc_at_height(height) == subsidy


def test_subsidy_after_64_halvings_is_zero() -> None:
    assert econ.subsidy_btc_at_height(64 * 210_000) == 0.0
    with pytest.raises(ValueError):
        econ.subsidy_btc_at_height(-1)


@pytest.mark.parametrize(
    ("day", "subsidy"),
    [
        (date(2012, 11, 27), 50.0),
        (date(2012, 11, 28), 25.0),
        (date(2016, 7, 8), 25.0),
        (date(2016, 7, 9), 12.5),
        (date(2020, 5, 11), 6.25),
        (date(2024, 4, 19), 6.25),
        (date(2024, 4, 20), 3.125),
        (date(2026, 11, 22), 3.125),
    ],
)
def test_subsidy_by_date(day: date, subsidy: float) -> None:
    assert econ.subsidy_btc_on_date(day) == subsidy


@pytest.mark.parametrize(
    ("efficiency", "expected"),
    [
        (21.5, 41.6667 * 55.0 / 21.5),  # S19 XP at 55 USD/PH/day ≈ 106.6 USD/MWh
        (17.5, 41.6667 * 55.0 / 17.5),  # S21 ≈ 131 USD/MWh
    ],
)
def test_breakeven_power_price(efficiency: float, expected: float) -> None:
    got = econ.breakeven_power_price_usd_mwh(55.0, efficiency)
    assert got == pytest.approx(expected, rel=1e-4)
    # At the break-even price, revenue per hour equals power cost per hour.
    th = 100.0
    revenue = econ.mining_revenue_usd_per_hour(th, 0.055, 0.0)
    cost = econ.power_cost_usd_per_hour(th * efficiency, got)
    assert revenue == pytest.approx(cost, rel=1e-6)


def test_s19xp_breakeven_between_100_and_110() -> None:
    assert 100 < econ.breakeven_power_price_usd_mwh(55.0, 21.5) < 110


def test_mining_revenue_per_hour() -> None:
    # 200 TH/s at 0.05721 USD/TH/day with a 2% pool fee.
    assert econ.mining_revenue_usd_per_hour(200.0, 0.05721, 0.02) == pytest.approx(
        200 * 0.05721 / 24 * 0.98
    )


def test_gpu_hashpower_price_shares_the_formula() -> None:
    usd = econ.hashpower_usd_per_unit_day(0.00001, 100_000.0)
    assert usd == pytest.approx(1.0)
    assert econ.mining_revenue_usd_per_hour(8.0, usd, 0.0) == pytest.approx(8 / 24)


def test_ai_revenue_and_power_cost() -> None:
    assert econ.ai_revenue_usd_per_hour(8, 2.0, 0.5, 0.1) == pytest.approx(8 * 2 * 0.5 * 0.9)
    assert econ.power_cost_usd_per_hour(3500.0, 40.0, 5.0) == pytest.approx(3.5e-3 * 45)


def test_switching_cost_amortized_over_stay() -> None:
    one_off = econ.switching_cost_usd(
        downtime_h=0.5, lost_value_usd_per_h=10.0, wear_usd=1.0, checkpoint_loss_usd=2.0,
        lease_penalty_usd=3.0,
    )
    assert float(one_off) == pytest.approx(5.0 + 1 + 2 + 3)
    assert econ.amortized_usd_per_hour(float(one_off), 11.0) == pytest.approx(1.0)
    # A mode that loses money is not "lost output" while the node is down.
    assert float(econ.switching_cost_usd(downtime_h=1.0, lost_value_usd_per_h=-5.0)) == 0.0


def test_a_live_snapshot_prices_each_algorithm_and_gpu_model_of_the_fleet() -> None:
    """`snapshot_to_prices`: sha256 at the hashprice, another algorithm at its BTC rate ×
    the BTC price (names before and after "sha256" alike), a GPU model without a price
    as NaN; each with the time it was observed."""
    from datetime import UTC, datetime, timedelta

    from orchestrator.engine.prices import snapshot_to_prices
    from orchestrator.models import FleetTable, Site
    from orchestrator.models.hardware import HardwareProfile, builtin_catalog
    from orchestrator.models.market import MarketSnapshot, Observed

    h100 = builtin_catalog()["h100-sxm-8x"]
    zhash = HardwareProfile(**{**h100.model_dump(), "name": "z-node", "mine_algorithm": "zhash",
                               "gpu_model": "UNPRICED_GPU"})
    fleet = FleetTable.build([builtin_catalog()["s21"], h100, zhash], [Site()], [0, 1, 2])
    t0 = datetime(2025, 1, 1, tzinfo=UTC)

    def obs(value: float, minutes: int) -> Observed:
        return Observed(value=value, source="test", observed_at=t0 + timedelta(minutes=minutes))

    snap = MarketSnapshot(
        btc_usd=obs(90_000.0, 0), difficulty=obs(1.1e14, -5), fees_btc_per_block=obs(0.1, -10),
        subsidy_btc=obs(3.125, -20), power_usd_mwh={"default": obs(40.0, -1)},
        gpu_usd_per_gpu_hour={h100.gpu_model: obs(2.25, -3)},
        hashpower_btc_per_unit_day={"gpu-hashpower": obs(1e-5, -7), "zhash": obs(3e-5, 4)},
    )
    prices = snapshot_to_prices(snap, fleet)
    unit = dict(zip(fleet.algorithms, prices.usd_per_unit_day.tolist(), strict=True))
    assert unit["sha256"] == pytest.approx(hashprice_by_hand(1.1e14, 90_000.0, 3.125, 0.1))
    assert unit["gpu-hashpower"] == pytest.approx(1e-5 * 90_000.0)
    assert unit["zhash"] == pytest.approx(3e-5 * 90_000.0)
    unit_at = dict(zip(fleet.algorithms, prices.observed_source.usd_per_unit_day.tolist(),
                       strict=True))
    # A rate in BTC is as old as the older of itself and the BTC price.
    assert unit_at["gpu-hashpower"] == (t0 - timedelta(minutes=7)).timestamp()
    assert unit_at["zhash"] == t0.timestamp()
    assert unit_at["sha256"] == (t0 - timedelta(minutes=20)).timestamp()
    gpu = dict(zip(fleet.gpu_models, prices.gpu_usd_per_gpu_hour.tolist(), strict=True))
    assert gpu[h100.gpu_model] == 2.25 and np.isnan(gpu["UNPRICED_GPU"])
    gpu_at = dict(zip(fleet.gpu_models, prices.observed_source.gpu_usd_per_gpu_hour.tolist(),
                      strict=True))
    assert gpu_at[h100.gpu_model] == (t0 - timedelta(minutes=3)).timestamp()
    assert np.isnan(gpu_at["UNPRICED_GPU"])
