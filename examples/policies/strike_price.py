"""Strike-price curtailment, as mining hosts run it: stop the ASICs once power has stayed
above a strike price for N hours, start them again once it has stayed below for M hours.

    hashpivot policies check examples/policies/strike_price.py --params strike_usd_mwh=90
    hashpivot backtest -c examples/west-texas/site.yaml \\
        -p examples/policies/strike_price.py --report reports/strike

The hour counters live in the policy's `state` (numeric arrays, one entry per site): the
controller journals them and hands them back after a restart, so a restart in the middle
of a price spike does not reset the count. A cycle the controller missed still counts the
time it covered (`ctx.interval_s` × (1 + `ctx.skipped_cycles`)). GPU nodes are left to
their best mode: AI work is not curtailed by a power price, only mining is.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams, Reason
from orchestrator.framework.context import best_mode
from orchestrator.models import Mode


class StrikePriceParams(PolicyParams):
    strike_usd_mwh: float = Field(default=90.0, description="Curtail above this power price.")
    curtail_after_h: float = Field(
        default=2.0, ge=0, description="Hours above the strike before the ASICs stop.")
    resume_after_h: float = Field(
        default=3.0, ge=0, description="Hours below the strike before they start again.")


class StrikePrice(Policy):
    name: ClassVar[str] = "strike-price"
    summary: ClassVar[str] = (
        "Curtail ASICs after N hours above a strike price, resume after M below")
    Params = StrikePriceParams
    #: The policy's own reason codes: explanations, the journal, events and metrics
    #: show these texts.
    CURTAILED: ClassVar[int] = 101
    RESUMED: ClassVar[int] = 102
    reasons: ClassVar[dict[int, str]] = {
        CURTAILED: "power above the strike price long enough: ASICs curtailed",
        RESUMED: "power below the strike price long enough: ASICs mine again",
    }

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, StrikePriceParams)
        n_sites = ctx.site_power_cap_w.shape[0]
        state = ctx.policy_state
        above = np.asarray(state.get("hours_above", np.zeros(n_sites)), dtype=np.float64)
        below = np.asarray(state.get("hours_below", np.zeros(n_sites)), dtype=np.float64)
        curtailed = np.asarray(state.get("curtailed", np.zeros(n_sites, dtype=bool)), dtype=bool)
        if above.shape != (n_sites,):  # the site layout changed: start counting afresh
            above, below, curtailed = np.zeros(n_sites), np.zeros(n_sites), np.zeros(n_sites, bool)

        hours = ctx.interval_s / 3600.0 * (1 + ctx.skipped_cycles) if ctx.interval_s else 1.0
        hot = ctx.prices.power_usd_mwh > p.strike_usd_mwh
        above = np.where(hot, above + hours, 0.0)
        below = np.where(hot, 0.0, below + hours)
        curtailed = np.where(curtailed, below < p.resume_after_h, above >= p.curtail_after_h)

        best, _ = best_mode(ctx.scores)
        asic = ctx.fleet.is_asic()
        stop = asic & curtailed[ctx.fleet.site]
        target = np.where(stop, Mode.IDLE, np.where(asic, Mode.MINE, best)).astype(np.int8)
        # ASICs that are not curtailed mine only while mining beats idling.
        unprofitable = asic & ~stop & (ctx.scores.value[Mode.MINE] <= ctx.scores.value[Mode.IDLE])
        target[unprofitable] = Mode.IDLE
        reason = np.where(target == ctx.current, Reason.UNCHANGED, Reason.HIGHER_VALUE)
        reason = np.where(stop & (ctx.current != Mode.IDLE), self.CURTAILED, reason)
        resumed = asic & ~stop & (target == Mode.MINE) & (ctx.current != Mode.MINE)
        reason = np.where(resumed, self.RESUMED, reason)
        return PolicyDecision(
            target=target,
            reason=reason.astype(np.int16),
            state={"hours_above": above, "hours_below": below, "curtailed": curtailed},
        )
