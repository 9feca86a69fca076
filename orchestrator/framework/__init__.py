"""The policy API: context, decisions, reasons, parameters and discovery."""

from orchestrator.framework.context import (
    DecisionContext,
    MarketHistory,
    PolicyDecision,
    ScoreTable,
    best_mode,
)
from orchestrator.framework.jit import at_mode, best_of_three, compiled, mode_argmax
from orchestrator.framework.policy import PerNodePolicy, Policy, PolicyParams
from orchestrator.framework.reasons import REASON_TEXT, Reason
from orchestrator.framework.registry import load_policy, registered_policies, resolve_policy_class

__all__ = [
    "REASON_TEXT",
    "DecisionContext",
    "MarketHistory",
    "PerNodePolicy",
    "Policy",
    "PolicyDecision",
    "PolicyParams",
    "Reason",
    "ScoreTable",
    "at_mode",
    "best_mode",
    "best_of_three",
    "compiled",
    "load_policy",
    "mode_argmax",
    "registered_policies",
    "resolve_policy_class",
]
