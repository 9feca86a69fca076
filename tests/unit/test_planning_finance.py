"""NPV, IRR and payback against cases worked by hand."""

from __future__ import annotations

import math

import pytest

from orchestrator.planning.finance import (
    annual_rate,
    irr,
    npv,
    payback_periods,
    periodic_rate,
)


def test_npv_by_hand() -> None:
    # -100 now, 60 after one and two periods, at 10%: -100 + 60/1.1 + 60/1.21
    assert npv(0.10, [-100, 60, 60]) == pytest.approx(-100 + 60 / 1.1 + 60 / 1.1**2)
    assert npv(0.0, [-5, 2, 2, 2]) == pytest.approx(1.0)


def test_irr_two_periods_solves_the_quadratic() -> None:
    # 60x^2 + 60x - 100 = 0 with x = 1/(1+r)
    x = (-60 + math.sqrt(60**2 + 4 * 60 * 100)) / (2 * 60)
    assert irr([-100, 60, 60]) == pytest.approx(1 / x - 1, abs=1e-9)
    assert irr([-100, 110]) == pytest.approx(0.10, abs=1e-9)


def test_irr_is_where_npv_is_zero_over_a_long_monthly_series() -> None:
    flows = [-10_000.0] + [130.0] * 119 + [2_000.0]
    r = irr(flows)
    assert r is not None
    assert npv(r, flows) == pytest.approx(0.0, abs=1e-5)


def test_irr_negative_rate_and_none() -> None:
    # Getting back 90 of 100 a period later is a -10% return.
    assert irr([-100, 90]) == pytest.approx(-0.10, abs=1e-9)
    assert irr([100, 50]) is None  # nothing is ever invested
    assert irr([-100, -50]) is None  # nothing ever comes back
    assert irr([-100]) is None


def test_irr_two_roots_returns_the_lower() -> None:
    # (1+r)^2 * -100 + 230 (1+r) - 132 = 0 has roots r = 10% and r = 20%.
    assert irr([-100, 230, -132]) == pytest.approx(0.10, abs=1e-9)


def test_payback_interpolates_within_the_period() -> None:
    assert payback_periods([-100, 60, 60]) == pytest.approx(1 + 40 / 60)
    assert payback_periods([-100, 50]) is None
    assert payback_periods([10, 5]) == 0.0
    # Dips below zero again later: payback counts from the last time it turns positive.
    assert payback_periods([-100, 150, -100, 100]) == pytest.approx(2 + 50 / 100)


def test_periodic_and_annual_rates_round_trip() -> None:
    m = periodic_rate(0.12, 12)
    assert (1 + m) ** 12 == pytest.approx(1.12)
    assert annual_rate(m, 12) == pytest.approx(0.12)
    with pytest.raises(ValueError, match="above -100%"):
        npv(-1.0, [1.0])
