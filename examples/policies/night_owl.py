"""An example policy as a policy author writes one: mine at night, AI by day.

Run it from a file, by module path, or (once this folder is pip-installed) by name:
    hashpivot backtest -c examples/west-texas/site.yaml -p examples/policies/night_owl.py
    hashpivot backtest -c examples/west-texas/site.yaml -p night-owl

Policies get a read-only `DecisionContext` and return a target mode and a reason code per
node. Use whole-array numpy code: one call decides the whole fleet. Guards (power cap,
leases, dwell, budgets, stale data) are applied after you, always.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams, Reason
from orchestrator.models import Mode


class NightOwlParams(PolicyParams):
    day_starts_h: int = Field(default=8, ge=0, le=23, description="First day hour, UTC.")
    day_ends_h: int = Field(default=20, ge=1, le=24, description="First night hour, UTC.")


class NightOwl(Policy):
    name: ClassVar[str] = "night-owl"
    summary: ClassVar[str] = "GPUs rent by day and mine at night; ASICs mine when profitable"
    Params = NightOwlParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, NightOwlParams)
        hour = int(ctx.now_s // 3600) % 24
        day = p.day_starts_h <= hour < p.day_ends_h
        value = ctx.scores.value
        mining_pays = value[Mode.MINE] > value[Mode.IDLE]
        gpu_mode = Mode.AI if day else Mode.MINE
        target = np.where(
            ctx.fleet.is_asic(),
            np.where(mining_pays, Mode.MINE, Mode.IDLE),
            gpu_mode,
        ).astype(np.int8)
        reason = np.where(target != ctx.current, Reason.HIGHER_VALUE, Reason.UNCHANGED)
        return PolicyDecision(target=target, reason=reason.astype(np.int16))
