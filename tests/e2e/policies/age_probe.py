"""A policy that discounts an old power price: a site whose price was observed more than
`max_age_h` ago idles its nodes until a fresh one comes. It writes when each value it
was given was observed to `observed_seen.jsonl` beside itself, so a test can check them
against the recorded files (a test probe: real policies do no I/O)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams
from orchestrator.models.modes import Mode

SEEN = Path(__file__).with_name("observed_seen.jsonl")


class AgeProbeParams(PolicyParams):
    max_age_h: float = Field(default=3.5, gt=0, description="Oldest power price acted on, h.")


class AgeProbe(Policy):
    name: ClassVar[str] = "age-probe"
    Params = AgeProbeParams
    OLD_PRICE: ClassVar[int] = 121
    FRESH_PRICE: ClassVar[int] = 122
    reasons: ClassVar[dict[int, str]] = {
        OLD_PRICE: "the site's power price is too old to act on: idled",
        FRESH_PRICE: "a fresh power price for the site: mining again",
    }

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, AgeProbeParams)
        seen = ctx.observed_s
        with SEEN.open("a") as out:
            out.write(json.dumps({
                "now": ctx.now_s, "btc": seen.btc_usd, "difficulty": seen.difficulty,
                "fees": seen.fees_btc_per_block, "subsidy": seen.subsidy_btc,
                "units": seen.usd_per_unit_day.tolist(),
                "gpus": seen.gpu_usd_per_gpu_hour.tolist(),
                "power": seen.power_usd_mwh.tolist(),
            }) + "\n")
        old = (ctx.now_s - seen.power_usd_mwh) > p.max_age_h * 3600.0
        idle = old[ctx.fleet.site]
        target = np.where(idle, Mode.IDLE, Mode.MINE).astype(np.int8)
        reason = np.where(target == ctx.current, 0,
                          np.where(idle, self.OLD_PRICE, self.FRESH_PRICE))
        return PolicyDecision(target=target, reason=reason.astype(np.int16))
