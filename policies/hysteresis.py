"""Hysteresis: switch only when the gain clears the switching cost, and asymmetrically.

A rise (another mode becoming better) must persist `confirm_ticks` cycles before the
node moves; a fall (the current mode now loses money against standing idle) acts at
once, and so does a GPU node moving to AI while jobs wait for GPUs. The threshold comes
from the modeled switching cost, not a fixed percentage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrator.framework import (
    DecisionContext,
    Policy,
    PolicyDecision,
    PolicyParams,
    Reason,
    best_of_three,
    compiled,
)
from orchestrator.framework.jit import AI, IDLE


class HysteresisParams(PolicyParams):
    threshold_multiplier: float = Field(
        default=1.0, ge=0, description="Gain needed, as a multiple of the amortized switch cost."
    )
    min_gain_usd_h: float = Field(
        default=0.0, ge=0, description="Extra gain per node-hour required on top, USD."
    )
    confirm_ticks: int = Field(
        default=2, ge=1, le=100_000,
        description="Cycles a rise must persist before the node switches.",
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
        n = ctx.fleet.n
        prev_streak, prev_candidate = _previous(ctx.policy_state, n)
        target = np.empty(n, dtype=np.int8)
        reason = np.empty(n, dtype=np.int16)
        streak = np.empty(n, dtype=np.int64)
        candidate = np.empty(n, dtype=np.int64)
        _decide_nodes(
            ctx.scores.value,
            ctx.scores.switch_cost_per_h,
            ctx.current,
            prev_streak,
            prev_candidate,
            ctx.demand.pending_gpus,
            ctx.demand.pending_gpus_any_model,
            p.threshold_multiplier,
            p.min_gain_usd_h,
            p.confirm_ticks,
            target,
            reason,
            streak,
            candidate,
        )
        return PolicyDecision(
            target=target, reason=reason, state={"streak": streak, "candidate": candidate}
        )


def _previous(
    state: Mapping[str, npt.NDArray[np.generic]], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Last cycle's streaks and candidates; a fresh start when there are none or they do
    not fit this fleet (e.g. a journal edited by hand)."""
    try:
        # Last cycle's own output is int64 already: used as it is, not copied.
        streak = np.asarray(state["streak"]).astype(np.int64, copy=False)
        candidate = np.asarray(state["candidate"]).astype(np.int64, copy=False)
    except (KeyError, TypeError, ValueError):
        streak = candidate = np.zeros(0, dtype=np.int64)
    if streak.shape != (n,) or candidate.shape != (n,):
        return np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    return streak, candidate


_UNCHANGED = int(Reason.UNCHANGED)
_BELOW_THRESHOLD = int(Reason.BELOW_THRESHOLD)
_AWAITING_CONFIRMATION = int(Reason.AWAITING_CONFIRMATION)
_RISE_CONFIRMED = int(Reason.RISE_CONFIRMED)
_FALL_IMMEDIATE = int(Reason.FALL_IMMEDIATE)
_AI_DEMAND_WAITING = int(Reason.AI_DEMAND_WAITING)


@compiled
def _decide_nodes(
    value: npt.NDArray[np.float64],
    switch_per_h: npt.NDArray[np.float64],
    current: npt.NDArray[np.int8],
    prev_streak: npt.NDArray[np.int64],
    prev_candidate: npt.NDArray[np.int64],
    pending_gpus: npt.NDArray[np.float64],
    pending_gpus_any_model: float,
    threshold_multiplier: float,
    min_gain_usd_h: float,
    confirm_ticks: int,
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    streak: npt.NDArray[np.int64],
    candidate: npt.NDArray[np.int64],
) -> None:
    """One node at a time: the best mode after amortized switching cost, then whether
    the gain clears the threshold and how long it has."""
    # Jobs already waiting are revenue lost every hour a GPU node hesitates.
    jobs_waiting = pending_gpus.sum() + pending_gpus_any_model > 0
    for i in range(current.shape[0]):
        now = current[i]
        best = best_of_three(
            value[0, i] - switch_per_h[0, i],
            value[1, i] - switch_per_h[1, i],
            value[2, i] - switch_per_h[2, i],
        )
        value_now = value[now, i]
        margin = value[best, i] - value_now
        required = threshold_multiplier * switch_per_h[best, i] + min_gain_usd_h
        wants = best != now and margin > required
        # A fall (the current mode loses money against standing idle) acts at once.
        fall = wants and value_now < value[IDLE, i]
        urgent_ai = wants and best == AI and jobs_waiting and not fall
        run = 0
        if wants:
            run = prev_streak[i] + 1 if prev_candidate[i] == best else 1
        rise = wants and not fall and not urgent_ai and run >= confirm_ticks
        go = fall or urgent_ai or rise
        target[i] = best if go else now
        if urgent_ai:
            reason[i] = _AI_DEMAND_WAITING
        elif fall:
            reason[i] = _FALL_IMMEDIATE
        elif rise:
            reason[i] = _RISE_CONFIRMED
        elif wants:
            reason[i] = _AWAITING_CONFIRMATION
        elif best != now:
            reason[i] = _BELOW_THRESHOLD
        else:
            reason[i] = _UNCHANGED
        # A node that switches starts a fresh streak next cycle.
        streak[i] = 0 if go else run
        candidate[i] = best if wants and not go else -1
