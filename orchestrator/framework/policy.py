"""The policy API: subclass `Policy`, declare `Params`, implement `decide`.

A policy is pure: it reads the `DecisionContext`, returns a `PolicyDecision`, does no
I/O, reads no wall clock and draws no hidden randomness. Guards run after it, always.
Policy modules are trusted code: they run inside the controller with its permissions.
"""

from __future__ import annotations

import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from orchestrator.framework.context import DecisionContext, PolicyDecision
from orchestrator.framework.reasons import Reason
from orchestrator.models.modes import Mode


class PolicyParams(BaseModel):
    """Base for a policy's parameters: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Policy(ABC):
    """A decision strategy. Subclasses set `name`, optionally `Params`, and `decide`."""

    #: Registry name (entry-point name for built-ins).
    name: ClassVar[str] = ""
    #: One-line description shown by `hashpivot policies list`.
    summary: ClassVar[str] = ""
    Params: ClassVar[type[PolicyParams]] = PolicyParams
    #: Set when `decide` reads `ctx.history`, so runners build it only when needed.
    uses_history: ClassVar[bool] = False
    #: The policy's own reason codes (100–9,999) and their text, e.g.
    #: `{101: "power above the strike price for 2 h: curtailed"}`. Explanations, the
    #: journal, events and metrics show them like the built-in `Reason`s. A text may name
    #: per-node numbers the decision returns in `PolicyDecision.values`, with an optional
    #: format: `"power ${price:.0f}/MWh for {hours:.0f} h: curtailed"`.
    reasons: ClassVar[Mapping[int, str]] = {}

    def __init__(self, params: PolicyParams | dict[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params.model_validate(params)
        elif not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} expects {self.Params.__name__}")
        self.params = params

    @abstractmethod
    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        """Target mode and reason for every node."""


class PerNodePolicy(Policy):
    """Convenience base for small fleets: decide one node at a time.

    Costs a Python call per node, so prefer `Policy` with array code beyond ~10k nodes.
    """

    @abstractmethod
    def decide_node(self, ctx: DecisionContext, i: int) -> tuple[Mode, Reason]:
        """Target mode and reason for node `i`."""

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        n = ctx.fleet.n
        target = np.empty(n, dtype=np.int8)
        reason = np.empty(n, dtype=np.int16)
        for i in range(n):
            mode, why = self.decide_node(ctx, i)
            target[i] = int(mode)
            reason[i] = int(why)
        return PolicyDecision(target=target, reason=reason)


def template_fields(text: str) -> tuple[str, ...]:
    """The per-node values a reason text names (`{price:.0f}` names `price`). A text
    that is not a valid template raises ValueError saying why; literal braces are `{{`."""
    names = []
    for _literal, name, _spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.isidentifier() or conversion is not None:
            raise ValueError(f"{{{name}}} is not a value name (use letters, digits and _, "
                             "and write a literal brace as {{ or }})")
        names.append(name)
    return tuple(dict.fromkeys(names))
