"""A test policy that asks for the modes it is told to: the fault tests decide the flips,
the guards (power cap, leases, budgets) still decide what is allowed."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams, Reason
from orchestrator.models import Mode

ModeName = Literal["idle", "mine", "ai"]


class ScriptedParams(PolicyParams):
    #: Mode for every node not named in `targets` (None: keep its mode).
    mode: ModeName | None = None
    targets: dict[str, ModeName] = Field(default_factory=dict)


class Scripted(Policy):
    name: ClassVar[str] = "scripted"
    summary: ClassVar[str] = "test double: the modes it is given"
    Params = ScriptedParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        assert isinstance(self.params, ScriptedParams)
        target = ctx.fleet.mode.copy()
        for i, name in enumerate(ctx.fleet.names):
            wanted = self.params.targets.get(str(name), self.params.mode)
            if wanted is not None:
                target[i] = Mode.parse(wanted)
        changed = target != ctx.fleet.mode
        reason = np.where(changed, Reason.HIGHER_VALUE, Reason.UNCHANGED).astype(np.int16)
        return PolicyDecision(target=target, reason=reason)
