"""Ports: what one cycle needs from the outside world (design §2).

live, shadow and backtest differ only in which adapter stands behind each port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from orchestrator.engine.plan import Plan
from orchestrator.framework.context import MarketHistory
from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.fleet import FleetTable
from orchestrator.models.journal import CycleRecord
from orchestrator.models.market import MarketSnapshot


@runtime_checkable
class Clock(Protocol):
    def now_s(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


@runtime_checkable
class MarketSource(Protocol):
    def snapshot(self, now_s: float) -> MarketSnapshot:
        """The latest validated values observed at or before `now_s`."""
        ...

    def history(self, now_s: float) -> MarketHistory:
        """Series observed at or before `now_s` (for forecasting policies)."""
        ...


@runtime_checkable
class DemandSource(Protocol):
    def demand(self, now_s: float) -> DemandSnapshot:
        """AI jobs waiting for GPUs at `now_s`."""
        ...


@runtime_checkable
class FleetSource(Protocol):
    def fleet(self, now_s: float) -> FleetTable:
        """The fleet as it is now: modes, states, leases and measured telemetry."""
        ...


@dataclass(slots=True)
class ActuationResult:
    """What the actuator did with a plan. Errors are reported, not raised."""

    writes: int = 0
    started: list[str] = field(default_factory=list)
    #: Switches the actuator began on its own since its last pass, carrying out an
    #: earlier plan (an ASIC ramp's later steps): node → when. They count against the
    #: switch budgets like `started`.
    began_earlier: dict[str, float] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: Other changes the pass made, key → what (a scheduler queue's quota set, a queued
    #: job deactivated): journaled with the result.
    notes: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Actuator(Protocol):
    def apply(self, plan: Plan, fleet: FleetTable) -> ActuationResult:
        """Move nodes toward the plan's targets. Idempotent: applying twice is harmless."""
        ...


@runtime_checkable
class Journal(Protocol):
    def record(self, record: CycleRecord) -> None:
        """Append one cycle's inputs, plan and result durably."""
        ...
