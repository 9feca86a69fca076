"""Greedy: every node takes its mode of highest net value right now."""

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
    mode_argmax,
)
from orchestrator.models import Mode


class GreedyParams(PolicyParams):
    include_switch_cost: bool = Field(
        default=True,
        description="Compare modes after the amortized switching cost (False: raw value).",
    )


class Greedy(Policy):
    name: ClassVar[str] = "greedy"
    summary: ClassVar[str] = "each node takes its highest-value mode every cycle"
    Params = GreedyParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        assert isinstance(self.params, GreedyParams)
        scores = ctx.scores
        net = (
            scores.value - scores.switch_cost_per_h
            if self.params.include_switch_cost
            else (scores.value)
        )
        target = mode_argmax(net)
        changed = target != ctx.current
        reason = np.where(changed, Reason.HIGHER_VALUE, Reason.UNCHANGED).astype(np.int16)
        reason[changed & (target == Mode.IDLE)] = Reason.NOT_PROFITABLE
        return PolicyDecision(target=target, reason=reason)
