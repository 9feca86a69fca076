"""The power price of the interval being decided, before the market has published it.

Real-time prices settle after their interval: at the start of an hour the newest price a
site knows is the last hour's. Deciding on that price mines into every evening ramp and
stays curtailed for an hour after every spike. `typical_change` estimates the price now as
the newest published price plus the change seen between the same two times of day over
the past days (the median, so one spike day does not set the estimate). It reads only
rows already published (the history a context holds), so it never looks ahead.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from orchestrator.framework.context import MarketHistory

F64 = npt.NDArray[np.float64]

DAY_S = 86_400.0
#: Days of same-time-of-day changes the estimate takes the median of.
NOWCAST_DAYS = 7
#: Fewer matching days than this (a new feed, gaps): keep the published price.
MIN_DAYS = 4


def typical_change(history: MarketHistory, now_s: float, published: F64,
                   days: int = NOWCAST_DAYS) -> F64:
    """Each site's power price for the interval holding `now_s` (USD/MWh), one per
    column of `history.site_power_usd_mwh` (sites in fleet order).

    A site whose price for that interval is already published (day-ahead prices, a feed
    without delay), or whose history has fewer than `MIN_DAYS` matching days, keeps its
    `published` price."""
    out = np.array(published, dtype=np.float64)
    power = history.site_power_usd_mwh
    if history.times_s.shape[0] < 2 or power.ndim != 2:
        return out
    for site in range(min(power.shape[1], out.shape[0])):
        column = power[:, site]
        known = np.isfinite(column)
        times, prices = history.times_s[known], column[known]
        if times.shape[0] < 2:
            continue
        interval_s = float(np.median(np.diff(times[-48:])))
        latest_s = float(times[-1])
        if interval_s <= 0 or now_s < latest_s + interval_s:
            continue  # the interval being decided is published
        target_s = latest_s + float(np.floor((now_s - latest_s) / interval_s)) * interval_s
        back: F64 = DAY_S * np.arange(1, days + 1, dtype=np.float64)
        later = _price_at(times, prices, target_s - back)
        earlier = _price_at(times, prices, latest_s - back)
        change = np.subtract(later, earlier)
        change = change[np.isfinite(change)]
        if change.shape[0] >= MIN_DAYS:
            out[site] = prices[-1] + float(np.median(change))
    return out


def _price_at(times: F64, prices: F64, at_s: F64) -> F64:
    """The price of the interval starting exactly at each of `at_s` (NaN: none)."""
    i = np.searchsorted(times, at_s)
    last = np.minimum(i, times.shape[0] - 1)
    found = (i < times.shape[0]) & (times[last] == at_s)
    out: F64 = np.where(found, prices[last], np.nan)
    return out
