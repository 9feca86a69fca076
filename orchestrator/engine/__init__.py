"""The pure decision engine: score, plan, guard, explain. No I/O, no wall clock."""

from orchestrator.engine.explain import NodeExplanation
from orchestrator.engine.guards import GuardedPlan, apply_guards
from orchestrator.engine.plan import Plan, build_context, decide
from orchestrator.engine.scoring import build_scores
from orchestrator.models.config import GuardConfig, ScoringConfig

__all__ = [
    "GuardConfig",
    "GuardedPlan",
    "NodeExplanation",
    "Plan",
    "ScoringConfig",
    "apply_guards",
    "build_context",
    "build_scores",
    "decide",
]
