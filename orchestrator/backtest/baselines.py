"""Baselines run beside every backtest, so a policy's numbers have something to beat."""

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
from orchestrator.models.config import GuardConfig
from orchestrator.models.modes import Mode


class AlwaysMine(Policy):
    """Every node mines, whatever it costs (the site before hashpivot)."""

    name: ClassVar[str] = "always-mine"
    summary: ClassVar[str] = "baseline: every node mines all the time"

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        n = ctx.fleet.n
        return PolicyDecision(
            target=np.full(n, Mode.MINE, dtype=np.int8),
            reason=np.full(n, Reason.BASELINE_RULE, dtype=np.int16),
        )


class AlwaysAIElseIdle(Policy):
    """GPU nodes stay in AI; nodes that cannot serve AI stand idle."""

    name: ClassVar[str] = "always-ai-else-idle"
    summary: ClassVar[str] = "baseline: GPUs always offered for AI, ASICs idle"

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        n = ctx.fleet.n
        target = np.where(ctx.fleet.is_asic(), Mode.IDLE, Mode.AI).astype(np.int8)
        return PolicyDecision(target, np.full(n, Reason.BASELINE_RULE, dtype=np.int16))


class NaiveSwitchingParams(PolicyParams):
    margin: float = Field(
        default=0.05, ge=0, description="Switch when another mode is this much better."
    )


class NaiveSwitching(Policy):
    """Common mining-software behaviour: switch when another mode pays 5% more, no dwell,
    no switching cost considered."""

    name: ClassVar[str] = "naive-switching"
    summary: ClassVar[str] = "baseline: switch when another mode is >=5% better, no dwell"
    Params = NaiveSwitchingParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        assert isinstance(self.params, NaiveSwitchingParams)
        value = ctx.scores.value
        n = ctx.fleet.n
        best = mode_argmax(value)
        now = at_mode(value, ctx.current)
        better = at_mode(value, best) > now + np.abs(now) * self.params.margin
        target = np.where(better, best, ctx.current).astype(np.int8)
        return PolicyDecision(target, np.full(n, Reason.BASELINE_RULE, dtype=np.int16))


#: What a row ran under, as the table and report label it.
CONFIGURED_GUARDS = "configured guards"
UNGUARDED = "unguarded: no dwell or switch budgets"


def unguarded(guards: GuardConfig) -> GuardConfig:
    """The physical guards only (cap, leases, stale data): no dwell or switch budgets.
    Baselines run under the policies' own guards unless asked for unguarded rows too, so
    a comparison never mixes the two unlabelled."""
    return guards.model_copy(
        update={
            "min_dwell_s": 0.0,
            "max_switches_per_node_per_day": 1e9,
            "max_fleet_switch_share_per_hour": 1.0,
        }
    )


BASELINES: tuple[type[Policy], ...] = (AlwaysMine, AlwaysAIElseIdle, NaiveSwitching)
