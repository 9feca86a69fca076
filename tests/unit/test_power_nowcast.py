"""`engine.nowcast.typical_change`, worked by hand on small histories."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.engine.nowcast import MIN_DAYS, NOWCAST_DAYS, typical_change
from orchestrator.framework.context import MarketHistory

HOUR, DAY = 3600.0, 86_400.0


def _history(times: np.ndarray, power: np.ndarray) -> MarketHistory:
    power = power.reshape(times.shape[0], -1)
    return MarketHistory(times, np.zeros(times.shape[0]), power[:, 0].copy(), power)


def test_the_hour_is_the_last_price_plus_the_median_change_between_the_same_hours() -> None:
    now = 30 * DAY + 5 * HOUR  # deciding 05:00; the newest published price is 04:00's
    times = np.arange(now - 10 * DAY, now, HOUR)  # rows up to 04:00
    hour = (times // HOUR) % 24
    # 04:00 costs 30, 05:00 costs 30 + k² on the k-th day back (k = 1..10), else 25.
    days_back = ((now - times) // DAY).astype(int)  # 05:00 rows: exactly k days back
    power = np.where(hour == 4, 30.0, 25.0)
    power = np.where(hour == 5, 30.0 + days_back**2, power)
    power[-1] = 50.0  # today's 04:00
    out = typical_change(_history(times, power), now, np.array([50.0]))
    # Changes 04:00 → 05:00 over the last 7 days: +k² for k = 1..7 → median +16.
    changes = [float(k * k) for k in range(1, NOWCAST_DAYS + 1)]
    assert float(np.median(changes)) == 16.0
    assert out[0] == pytest.approx(50.0 + float(np.median(changes)))


def test_a_published_interval_keeps_its_price() -> None:
    now = 30 * DAY + 5 * HOUR
    times = np.arange(now - 10 * DAY, now + HOUR, HOUR)  # 05:00 is published (day-ahead)
    out = typical_change(_history(times, np.linspace(10, 90, times.shape[0])), now,
                         np.array([77.0]))
    assert out[0] == 77.0


def test_too_few_matching_days_keep_the_published_price() -> None:
    now = 30 * DAY + 5 * HOUR
    times = np.arange(now - (MIN_DAYS - 1) * DAY - HOUR, now, HOUR)
    out = typical_change(_history(times, np.full(times.shape[0], 40.0)), now,
                         np.array([40.0]))
    assert out[0] == 40.0


def test_each_site_is_nowcast_from_its_own_column() -> None:
    now = 30 * DAY + 2 * HOUR
    times = np.arange(now - 9 * DAY, now, HOUR)
    hour = (times // HOUR) % 24
    a = np.where(hour == 2, 60.0, 20.0)  # site a: 02:00 dearer by 40
    b = np.full(times.shape[0], np.nan)  # site b: nothing published
    out = typical_change(_history(times, np.stack([a, b], axis=1)), now,
                         np.array([20.0, 33.0]))
    assert out.tolist() == [60.0, 33.0]
