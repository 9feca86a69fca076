"""A strike-price policy whose reason texts show per-node numbers: each site's nodes stop
while its power price is above the strike and mine again below it, and the explanation
says at what price (`PolicyDecision.values`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams
from orchestrator.models.modes import Mode


class StrikeProbeParams(PolicyParams):
    strike_usd_mwh: float = Field(default=500.0, description="Curtail above this, USD/MWh.")


class StrikeProbe(Policy):
    name: ClassVar[str] = "strike-probe"
    Params = StrikeProbeParams
    CURTAILED: ClassVar[int] = 140
    RESUMED: ClassVar[int] = 141
    reasons: ClassVar[dict[int, str]] = {
        CURTAILED: "power ${price:.0f}/MWh above the ${strike:.0f}/MWh strike: curtailed",
        RESUMED: "power ${price:.2f}/MWh back under the strike: mining again",
    }

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, StrikeProbeParams)
        price = ctx.prices.power_usd_mwh[ctx.fleet.site]
        hot = price > p.strike_usd_mwh
        target = np.where(hot, Mode.IDLE, Mode.MINE).astype(np.int8)
        reason = np.where(target == ctx.current, 0,
                          np.where(hot, self.CURTAILED, self.RESUMED)).astype(np.int16)
        values = {"price": price, "strike": np.full(ctx.fleet.n, p.strike_usd_mwh)}
        return PolicyDecision(target=target, reason=reason, values=values)
