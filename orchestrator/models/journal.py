"""The journal record of one decision cycle: enough to replay and to explain it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.market import MarketSnapshot

JOURNAL_SCHEMA_VERSION = 1


class NodeChange(BaseModel):
    """One node's decision with the numbers behind it."""

    model_config = ConfigDict(extra="forbid")

    node: str
    current: str
    target: str
    reason: str
    reason_code: int
    value_usd_h: dict[str, float]
    switch_cost_usd_h: float
    ai_fill: float
    text: str


class CycleRecord(BaseModel):
    """One cycle: inputs (market, demand, fleet summary), plan summary, changes, result."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = JOURNAL_SCHEMA_VERSION
    decision_id: str
    mode: str = Field(description="live, shadow or dry-run")
    policy: str
    now_s: float
    market: MarketSnapshot | None
    market_rejected: str | None = Field(default=None, description="Why the market was unusable.")
    demand: DemandSnapshot
    fleet_modes: dict[str, int]
    plan: dict[str, Any]
    changes: list[NodeChange]
    actuation: dict[str, Any] = Field(default_factory=dict)
    decision_latency_s: float = 0.0
