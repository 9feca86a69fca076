"""Power-capped: fill each site's power cap by value per watt; least efficient curtailed first."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.framework import (
    DecisionContext,
    Policy,
    PolicyDecision,
    PolicyParams,
    Reason,
    at_mode,
    mode_argmax,
)
from orchestrator.models import Mode


class PowerCappedParams(PolicyParams):
    headroom: float = Field(
        default=0.0, ge=0, lt=1, description="Share of the cap kept free as a safety margin."
    )


class PowerCapped(Policy):
    name: ClassVar[str] = "power-capped"
    summary: ClassVar[str] = "fill the site power cap by value per watt, least efficient curtailed"
    Params = PowerCappedParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, PowerCappedParams)
        scores, fleet = ctx.scores, ctx.fleet
        n = fleet.n
        current = ctx.current
        net = scores.value - scores.switch_cost_per_h
        best = mode_argmax(net)
        idle_w = scores.watts[Mode.IDLE]
        extra_w = np.maximum(at_mode(scores.watts, best) - idle_w, 0.0)
        gain_over_idle = at_mode(net, best) - scores.value[Mode.IDLE]
        per_watt = gain_over_idle / np.maximum(extra_w, 1e-9)
        # Nodes the guards will keep anyway (leases) are placed first.
        leased = (current == Mode.AI) & (fleet.lease_until > ctx.now_s) & ~fleet.ai_interruptible
        best[leased] = Mode.AI
        extra_w[leased] = np.maximum(scores.watts[Mode.AI, leased] - idle_w[leased], 0.0)
        priority = np.where(leased, np.inf, per_watt)

        cap = ctx.site_power_cap_w * (1.0 - p.headroom)
        room = cap - np.bincount(fleet.site, weights=idle_w, minlength=cap.shape[0])
        order = np.lexsort((-priority, fleet.site))
        site_sorted = fleet.site[order]
        used = np.cumsum(extra_w[order])
        offset = np.zeros(n)
        if n:
            starts = np.flatnonzero(np.r_[True, site_sorted[1:] != site_sorted[:-1]])
            base = np.r_[0.0, used][starts]
            offset = np.repeat(base, np.diff(np.r_[starts, n]))
        fits_sorted = (used - offset) <= room[site_sorted]
        fits = np.empty(n, dtype=bool)
        fits[order] = fits_sorted

        target = np.where(fits | (extra_w == 0), best, Mode.IDLE).astype(np.int8)
        reason = np.where(target != current, Reason.CAP_FILL_BY_VALUE_PER_WATT, Reason.UNCHANGED)
        reason = reason.astype(np.int16)
        reason[(target == Mode.IDLE) & (best != Mode.IDLE)] = Reason.CAP_CURTAILED_BY_POLICY
        reason[(best == Mode.IDLE) & (current != Mode.IDLE)] = Reason.NOT_PROFITABLE
        return PolicyDecision(target=target, reason=reason)
