"""Hysteresis: switch only when the gain clears the switching cost, and asymmetrically.

A rise (another mode becoming better) must persist `confirm_ticks` cycles before the
node moves; a fall (the current mode now loses money against standing idle) acts at
once, and so does a GPU node moving to AI while jobs wait for GPUs. The threshold comes
from the modeled switching cost, not a fixed percentage.
"""

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


class HysteresisParams(PolicyParams):
    threshold_multiplier: float = Field(
        default=1.0, ge=0, description="Gain needed, as a multiple of the amortized switch cost."
    )
    min_gain_usd_h: float = Field(
        default=0.0, ge=0, description="Extra gain per node-hour required on top, USD."
    )
    confirm_ticks: int = Field(
        default=2, ge=1, description="Cycles a rise must persist before the node switches."
    )


class Hysteresis(Policy):
    name: ClassVar[str] = "hysteresis"
    summary: ClassVar[str] = (
        "switch when the gain beats the modeled switching cost; rises confirm, falls act at once"
    )
    Params = HysteresisParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, HysteresisParams)
        scores = ctx.scores
        n = ctx.fleet.n
        current = ctx.current
        value, per_h = scores.value, scores.switch_cost_per_h
        best = mode_argmax(value - per_h)
        value_now = at_mode(value, current)
        margin = at_mode(value, best) - value_now
        required = p.threshold_multiplier * at_mode(per_h, best) + p.min_gain_usd_h
        moves = best != current
        wants = moves & (margin > required)
        fall = wants & (value_now < value[Mode.IDLE])
        # Jobs already waiting are revenue lost every hour a GPU node hesitates.
        waiting = float(ctx.demand.pending_gpus.sum()) + ctx.demand.pending_gpus_any_model
        urgent_ai = wants & (best == Mode.AI) & ~fall if waiting > 0 else np.zeros(n, bool)

        prev_streak = ctx.policy_state.get("streak")
        prev_candidate = ctx.policy_state.get("candidate")
        if prev_streak is None or prev_candidate is None or prev_streak.shape != (n,):
            prev_streak = np.zeros(n, dtype=np.int16)
            prev_candidate = np.full(n, -1, dtype=np.int8)
        same = prev_candidate == best
        streak = np.where(wants, np.where(same, prev_streak + 1, 1), 0).astype(np.int16)
        rise = wants & ~fall & ~urgent_ai & (streak >= p.confirm_ticks)
        go = fall | urgent_ai | rise

        target = np.where(go, best, current).astype(np.int8)
        reason = np.zeros(n, dtype=np.int16)  # Reason.UNCHANGED
        reason[moves & ~wants] = Reason.BELOW_THRESHOLD
        reason[wants & ~go] = Reason.AWAITING_CONFIRMATION
        reason[rise] = Reason.RISE_CONFIRMED
        reason[fall] = Reason.FALL_IMMEDIATE
        reason[urgent_ai] = Reason.AI_DEMAND_WAITING
        # A node that switches starts a fresh streak next cycle.
        streak[go] = 0
        candidate = np.where(wants & ~go, best, -1).astype(np.int8)
        return PolicyDecision(
            target=target, reason=reason, state={"streak": streak, "candidate": candidate}
        )
