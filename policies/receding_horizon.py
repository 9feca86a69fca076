"""Receding horizon: plan the whole site over the next hours, commit the first step.

Each cycle the policy values every node's modes over the coming `horizon_h` hours: this
hour at the score table's values, the hours after at the power prices already published
for them (day-ahead, `ctx.known_future`) or forecast from the past (as lookahead does),
less the one-off cost of switching into the mode. Each node's plan is the mode worth most
over the horizon. The site's power cap then applies to the plan as a whole: loads are
kept by horizon value per watt, leases first, and the rest wait idle. The first step of
that plan is the decision; the next cycle plans again with what it knows then.

A heuristic, not an LP: a node holds one mode over the horizon (a mode worth entering
only later is entered later, by a later cycle), which keeps a decision O(n log n): the
sort behind the cap.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams, Reason
from orchestrator.models import Mode
from policies.lookahead import LookaheadParams, forecast_sites

F64 = npt.NDArray[np.float64]


class RecedingHorizonParams(PolicyParams):
    horizon_h: int = Field(default=12, ge=1, le=168, description="Planning horizon, hours.")
    persistence: float = Field(
        default=0.8, ge=0, le=1,
        description="Hourly weight kept on the current power price vs the hour-of-day mean, "
        "for hours with no published price.",
    )
    seasonal_days: int = Field(default=7, ge=1, le=60, description="Days of history per hour mean.")


class RecedingHorizon(Policy):
    name: ClassVar[str] = "receding-horizon"
    summary: ClassVar[str] = (
        "plans the site over the next hours (cap and switching costs included), commits the first"
    )
    Params = RecedingHorizonParams
    uses_history: ClassVar[bool] = True

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, RecedingHorizonParams)
        fleet, s = ctx.fleet, ctx.scores
        n = fleet.n
        current = fleet.mode.astype(np.intp)
        if n == 0:
            return PolicyDecision(current.astype(np.int8), np.zeros(0, dtype=np.int16))
        # Each site's coming prices (published or forecast), summed over the horizon.
        path_sum = forecast_sites(ctx, LookaheadParams(
            horizon_h=p.horizon_h, persistence=p.persistence, seasonal_days=p.seasonal_days,
        )).sum(axis=1)[fleet.site]
        # Hours after this one: revenue − MW × (price + adder), so only Σ price is needed.
        adder = np.array([x.tariff_adder_usd_mwh for x in fleet.sites])[fleet.site]
        idle_w = fleet.watts_idle
        mw = np.stack([idle_w, fleet.watts_mine, idle_w + (fleet.watts_ai - idle_w) * s.ai_fill])
        mw /= 1e6
        later = p.horizon_h * (s.revenue - mw * adder[None, :]) - mw * path_sum[None, :]
        worth = s.value + later - s.switch_cost_usd  # (3, n), USD over the horizon
        worth[Mode.AI, ~np.isfinite(s.value[Mode.AI])] = -np.inf
        # Each node's plan: the mode worth most (ties keep the current mode).
        idx = np.arange(n)
        best = np.argmax(worth, axis=0)
        best = np.where(worth[best, idx] > worth[current, idx], best, current)
        target = best.astype(np.int8)
        reason = np.where(target != current, Reason.PAYS_BACK_IN_HORIZON,
                          Reason.UNCHANGED).astype(np.int16)
        self._fit_caps(ctx, worth, target, reason)
        return PolicyDecision(target, reason)

    @staticmethod
    def _fit_caps(
        ctx: DecisionContext, worth: F64, target: npt.NDArray[np.int8],
        reason: npt.NDArray[np.int16],
    ) -> None:
        """Keep each site's plan under its cap: leases first, then the loads of most horizon
        value per watt above idle; the others wait idle."""
        fleet, w = ctx.fleet, ctx.scores.watts
        idx = np.arange(fleet.n)
        planned_w = w[target, idx]
        idle_w = w[Mode.IDLE]
        leased = ((fleet.mode == Mode.AI) & (fleet.lease_until > ctx.now_s)
                  & ~fleet.ai_interruptible)
        fixed = leased | fleet.opt_out | ~fleet.reachable
        extra = planned_w - idle_w
        per_watt = (worth[target, idx] - worth[Mode.IDLE, idx]) / np.maximum(extra, 1e-9)
        for site, cap in enumerate(ctx.site_power_cap_w):
            here = fleet.site == site
            if not np.isfinite(cap) or planned_w[here].sum() <= cap:
                continue
            room = cap - idle_w[here & ~fixed].sum() - planned_w[here & fixed].sum()
            loads = np.flatnonzero(here & ~fixed & (extra > 0))
            order = loads[np.argsort(-per_watt[loads], kind="stable")]
            fits = np.cumsum(extra[order]) <= room
            shed = order[~fits]
            target[shed] = Mode.IDLE
            reason[shed] = Reason.CAP_CURTAILED_BY_POLICY
