"""Data models: pydantic at the edges, numpy columns in the core."""

from orchestrator.models.demand import AIJob, DemandSnapshot, DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import HardwareKind, HardwareProfile, builtin_catalog
from orchestrator.models.market import MarketPrices, MarketSnapshot, Observed
from orchestrator.models.modes import Mode, NodeState
from orchestrator.models.site import Site

__all__ = [
    "AIJob",
    "DemandSnapshot",
    "DemandSummary",
    "FleetTable",
    "HardwareKind",
    "HardwareProfile",
    "MarketPrices",
    "MarketSnapshot",
    "Mode",
    "NodeState",
    "Observed",
    "Site",
    "builtin_catalog",
]
