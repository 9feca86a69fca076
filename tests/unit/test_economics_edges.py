"""The economics formulas at their edges: halving days and the era boundaries, the
clipped divisors, the optional terms, and the power contracts' charges. Every expected
value is worked out here from the inputs (powers of two, hours, kW), not read from
`orchestrator.economics`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from orchestrator import economics as econ

#: Halving days (UTC) of the chain, and the estimate hashpivot uses for the next one.
HALVINGS = [date(2012, 11, 28), date(2016, 7, 9), date(2020, 5, 11), date(2024, 4, 20),
            date(2028, 4, 17)]


@pytest.mark.parametrize("era", range(len(HALVINGS)))
def test_each_halving_day_starts_the_new_era_and_the_day_before_ends_the_old(era: int) -> None:
    day = HALVINGS[era]
    assert econ.subsidy_btc_on_date(day) == 50.0 * 0.5 ** (era + 1)
    assert econ.subsidy_btc_on_date(day - timedelta(days=1)) == 50.0 * 0.5**era


def test_a_time_of_day_is_read_as_its_utc_date() -> None:
    # 22:00 at UTC-5 on the eve of the 2024 halving is already the halving day in UTC.
    eve = datetime(2024, 4, 19, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert econ.subsidy_btc_on_date(eve) == 50.0 / 16
    # A time with no zone is taken as UTC: still the eve.
    assert econ.subsidy_btc_on_date(datetime(2024, 4, 19, 23, 59)) == 50.0 / 8


def test_a_day_holds_144_blocks_at_the_ten_minute_target() -> None:
    # A public constant of the economics module, for policy code to import.
    assert econ.BLOCKS_PER_DAY == 24 * 3600 / (10 * 60)


def test_the_last_halvings_before_the_subsidy_runs_out() -> None:
    # 63 halvings still pay 50 / 2^63 BTC; the 64th pays nothing.
    assert econ.subsidy_btc_at_height(63 * 210_000) == 50.0 * 0.5**63
    assert econ.subsidy_btc_at_height(64 * 210_000 - 1) == 50.0 * 0.5**63
    assert econ.subsidy_btc_at_height(65 * 210_000) == 0.0
    assert econ.subsidy_btc_at_height(0) == 50.0
    # Height -1 is refused by name, not by the arithmetic that follows.
    with pytest.raises(ValueError, match="block height must be >= 0, got -1"):
        econ.subsidy_btc_at_height(-1)


def test_a_pool_fee_lowers_the_break_even_power_price() -> None:
    # 55 USD/PH/day, 2% pool fee, 21.5 J/TH: per TH 0.055 × 0.98 / 24 USD an hour against
    # 21.5 W, i.e. 21.5e-6 MWh an hour.
    expected = 0.055 * 0.98 / 24 / 21.5e-6
    got = econ.breakeven_power_price_usd_mwh(55.0, 21.5, 0.02)
    assert got == pytest.approx(expected, rel=1e-9)


def test_power_cost_without_an_adder_is_the_spot_price_alone() -> None:
    assert econ.power_cost_usd_per_hour(2500.0, 40.0) == pytest.approx(2.5e-3 * 40.0)


def test_switching_cost_adds_every_one_off_loss() -> None:
    # 30 min down losing $8/h, $1.5 wear, $2 checkpoint, $10 lease penalty.
    got = econ.switching_cost_usd(0.5, 8.0, wear_usd=1.5, checkpoint_loss_usd=2.0,
                                  lease_penalty_usd=10.0)
    assert float(got) == pytest.approx(0.5 * 8.0 + 1.5 + 2.0 + 10.0)


def test_a_stay_of_no_time_does_not_divide_by_zero() -> None:
    # Spread over at least a nanohour: a huge but finite cost per hour.
    assert econ.amortized_usd_per_hour(3.0, 0.0) == pytest.approx(3.0 / 1e-9)
    assert econ.amortized_usd_per_hour(3.0, 2.0) == pytest.approx(1.5)


def test_demand_charge_and_its_share_of_a_mwh() -> None:
    assert econ.demand_charge_usd(1500.0, 8.0) == pytest.approx(1500.0 * 8.0)
    # $6/kW-month over a 30-day month: 6 / 720 USD per kWh at the peak.
    assert econ.demand_charge_marginal_usd_mwh(6.0, 720.0) == pytest.approx(6.0 / 720 * 1000)
    # A month shorter than an hour (a bad calendar) is taken as one hour.
    assert econ.demand_charge_marginal_usd_mwh(6.0, 0.5) == pytest.approx(6.0 * 1000)


def test_coincident_peak_cost_and_charge_by_hand() -> None:
    # A 30-minute interval that is a peak with p = 0.25, $40/kW over 5 peak intervals:
    # each kWh drawn holds 2 kW through it, so 0.25 × 40 / 5 × 2 USD per kWh.
    got = econ.coincident_peak_expected_usd_mwh(0.25, 40.0, 5, 0.5)
    assert got == pytest.approx(0.25 * 40.0 / 5 * 2 * 1000)
    kw = np.array([900.0, 1100.0, 400.0])
    p = np.array([1.0, 0.5, 0.0])
    assert econ.coincident_peak_charge_usd(kw, p, 40.0, 2) == pytest.approx(
        40.0 * (900.0 + 550.0) / 2)


def test_unused_contracted_energy_is_sold_back_at_spot() -> None:
    assert econ.resale_usd(3.5, 42.0) == pytest.approx(3.5 * 42.0)


def test_difficulty_moves_only_across_a_2016_block_boundary_by_at_most_four_times() -> None:
    from orchestrator.adapters.market.quality import difficulty_check

    d = 1.0e14
    # Heights 2015 → 2016 cross the first adjustment: a doubling passes.
    assert difficulty_check(d, 2015, 2 * d, 2016) is None
    # Heights 2016 → 4031 stay inside one period: no change allowed.
    assert difficulty_check(d, 2016, 2 * d, 4031) is not None
    # One adjustment moves difficulty by at most ×4 either way; two by ×16.
    assert difficulty_check(d, 2015, 4 * d, 2016) is None
    assert difficulty_check(d, 2015, d / 4, 2016) is None
    assert difficulty_check(d, 2015, 4.01 * d, 2016) is not None
    assert difficulty_check(d, 2015, d / 4.01, 2016) is not None
    assert difficulty_check(d, 2015, 16 * d, 4032) is None
    assert difficulty_check(d, 2015, 16.1 * d, 4032) is not None
