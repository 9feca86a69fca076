"""Lookahead: switch only if the move pays back within a forecast horizon.

The forecast uses only what was known at `now` (`ctx.history`), site by site: a site's
power prices already published for the coming hours (day-ahead markets,
`ctx.known_future`) are used as they are; otherwise hashprice holds (difficulty moves
every ~2 weeks), and the site's power price relaxes from its current value toward the
mean of the same hour over the last days.
Mode values are linear in hashprice and power price, so the horizon sums cost
O(nodes × horizon), not a simulation.

For each node and alternative mode the policy weighs "switch now, come back after k
hours" for every k in the horizon (paying both switches unless it stays to the end),
and moves only when the alternative is better in the coming hour and the best such plan
gains more than it costs. A two-hour price spike therefore curtails a miner only if the
spike outweighs the stop and restart, and a spike forecast for tomorrow afternoon does
not idle a miner tonight.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrator.framework import (
    DecisionContext,
    MarketHistory,
    Policy,
    PolicyDecision,
    PolicyParams,
    Reason,
    mode_argmax,
)
from orchestrator.models import Mode

F64 = npt.NDArray[np.float64]


class LookaheadParams(PolicyParams):
    horizon_h: int = Field(default=24, ge=1, le=168, description="Forecast horizon, hours.")
    persistence: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Hourly weight kept on the current power price vs the hour-of-day mean.",
    )
    seasonal_days: int = Field(default=7, ge=1, le=60, description="Days of history per hour mean.")
    chunk_nodes: int = Field(default=65_536, ge=1, le=100_000_000,
                             description="Nodes per block (bounds memory).")


def forecast_power(history: MarketHistory, now_s: float, current: float, p: LookaheadParams,
                   site: int = 0) -> F64:
    """Power price of site `site` for each of the next `horizon_h` hours: the value
    already published for that hour where there is one (day-ahead prices), else forecast
    from the past."""
    prices = _site_column(history, site)
    path = _forecast_from_past(history.times_s, prices, now_s, current, p)
    lo = int(np.searchsorted(history.times_s, now_s, side="right"))
    ahead = (history.times_s[lo:] // 3600 - now_s // 3600).astype(np.intp)
    known = prices[lo:]
    use = (ahead >= 1) & (ahead <= p.horizon_h) & np.isfinite(known)
    path[ahead[use] - 1] = known[use]
    return path


def forecast_sites(ctx: DecisionContext, p: LookaheadParams) -> F64:
    """`forecast_power` for every site of the fleet, (sites, horizon_h)."""
    current = ctx.prices.power_usd_mwh
    return np.stack([forecast_power(ctx.history, ctx.now_s, float(current[k]), p, k)
                     for k in range(current.shape[0])]).reshape(current.shape[0], p.horizon_h)


def _site_column(history: MarketHistory, site: int) -> F64:
    power = history.site_power_usd_mwh
    if site < power.shape[1]:
        return power[:, site]
    return np.full(history.times_s.shape, np.nan)  # the source does not price this site


def _forecast_from_past(
    times: F64, prices: F64, now_s: float, current: float, p: LookaheadParams
) -> F64:
    steps = np.arange(1, p.horizon_h + 1)
    # A site's price not yet published is NaN: no part of its hour's mean.
    keep = (times <= now_s) & (times > now_s - p.seasonal_days * 86_400.0) & np.isfinite(prices)
    if not np.any(keep):
        return np.full(p.horizon_h, current)
    hours = ((times[keep] // 3600) % 24).astype(np.intp)
    sums = np.bincount(hours, weights=prices[keep], minlength=24)
    counts = np.bincount(hours, minlength=24)
    overall = float(np.mean(prices[keep]))
    seasonal = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
    future_hours = ((now_s // 3600 + steps) % 24).astype(np.intp)
    w = p.persistence**steps
    return w * current + (1.0 - w) * seasonal[future_hours]


class Lookahead(Policy):
    name: ClassVar[str] = "lookahead"
    summary: ClassVar[str] = "switch only when the move pays back over a forecast horizon"
    Params = LookaheadParams
    uses_history: ClassVar[bool] = True

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, LookaheadParams)
        n = ctx.fleet.n
        target = ctx.current.copy()
        reason = np.zeros(n, dtype=np.int16)
        if n == 0:
            return PolicyDecision(target=target, reason=reason)
        cum_power = np.cumsum(forecast_sites(ctx, p), axis=1)  # per site: Σ USD/MWh, k hours
        ks = np.arange(1, p.horizon_h + 1, dtype=np.float64)
        for start in range(0, n, p.chunk_nodes):
            sl = slice(start, min(start + p.chunk_nodes, n))
            t, r = self._decide_block(ctx, sl, cum_power, ks)
            target[sl], reason[sl] = t, r
        return PolicyDecision(target=target, reason=reason)

    def _decide_block(
        self, ctx: DecisionContext, sl: slice, cum_power: F64, ks: F64
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int16]]:
        s = ctx.scores
        fleet = ctx.fleet
        current = fleet.mode[sl].astype(np.intp)
        m = current.shape[0]
        idx = np.arange(m)
        site = fleet.site[sl]
        adder = np.array([x.tariff_adder_usd_mwh for x in fleet.sites])[site]
        # value_m(t) = revenue_m − MW_m × (price(t) + adder): a constant plus a slope in the
        # power price, so horizon sums need only Σ price.
        idle_w = fleet.watts_idle[sl]
        ai_w = idle_w + (fleet.watts_ai[sl] - idle_w) * s.ai_fill[sl]
        mw = np.stack([idle_w, fleet.watts_mine[sl], ai_w]) / 1e6
        constant = s.revenue[:, sl] - mw * adder
        constant[Mode.AI, ~np.isfinite(s.value[Mode.AI, sl])] = -np.inf
        best_gain = np.zeros(m)
        best_mode = current.copy()
        cum_node = cum_power[site]  # (m, H): each node's site's price sums
        for mode in Mode:
            alt = np.full(m, int(mode))
            d_const = constant[mode] - constant[current, idx]
            d_mw = mw[mode] - mw[current, idx]
            # Gain of staying in `mode` for k hours: (m, H), at each node's site's prices.
            gain_k = d_const[:, None] * ks[None, :] - d_mw[:, None] * cum_node
            # The score table prices moves out of the current mode; the way back is taken
            # to cost the same (same downtime and wear).
            cost = s.switch_cost_usd[mode, sl]
            net_k = gain_k - cost[:, None]
            net_k[:, :-1] -= cost[:, None]  # coming back before the horizon ends pays again
            best_k = np.max(net_k, axis=1)
            # Only switch to a mode that is better now: one that pays only later can be
            # entered later, so moving early would just lose the hours in between.
            better_now = gain_k[:, 0] > 0
            better = (alt != current) & better_now & np.isfinite(best_k) & (best_k > best_gain)
            best_gain = np.where(better, best_k, best_gain)
            best_mode = np.where(better, alt, best_mode)
        changed = best_mode != current
        reason = np.where(changed, Reason.PAYS_BACK_IN_HORIZON, Reason.UNCHANGED).astype(np.int16)
        immediate = mode_argmax(s.value[:, sl] - s.switch_cost_per_h[:, sl]) != current
        reason[~changed & immediate] = Reason.NO_PAYBACK_IN_HORIZON
        return best_mode.astype(np.int8), reason
