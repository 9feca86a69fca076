"""The journal record of one decision cycle: enough to replay and to explain it."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.market import MarketSnapshot

JOURNAL_SCHEMA_VERSION = 1
#: 9999-12-31T23:59:59Z, the last time Python's dates can show.
_LAST_CLOCK_S = 253_402_300_799.0


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
    # A time a clock can show (a record with another is unreadable, skipped on reading).
    now_s: float = Field(ge=0, le=_LAST_CLOCK_S, allow_inf_nan=False)
    market: MarketSnapshot | None
    market_rejected: str | None = Field(default=None, description="Why the market was unusable.")
    demand: DemandSnapshot
    fleet_modes: dict[str, int]
    plan: dict[str, Any]
    changes: list[NodeChange]
    actuation: dict[str, Any] = Field(default_factory=dict)
    decision_latency_s: float = 0.0
    fleet_columns: FleetColumns | None = Field(
        default=None, description="The fleet as decided on (small fleets), for replay."
    )
    pending_jobs_total: int = 0
    expected_gpus: float | None = Field(
        default=None, description="Smoothed AI demand level (GPUs) the decision used."
    )
    policy_state_in: dict[str, StateArray | list[float]] | None = Field(
        default=None, description="Policy state handed to the decision (replayable fleets)."
    )
    grid_signals: dict[str, Any] | None = Field(
        default=None,
        description="Per site, the live grid events and alerts the decision saw "
        "(`LiveBook.snapshot`); None: no site has live signals.",
    )
    decision_inputs: DecisionInputs | None = Field(
        default=None,
        description="What the decision step read besides market, fleet and jobs (replayable "
        "fleets): the exact pending demand, the switch history, the cycle interval.",
    )


class StateArray(BaseModel):
    """One policy state array, exactly: dtype, shape and values in C order (NaN and
    infinities included, written as JSON's usual NaN and Infinity)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    dtype: str
    shape: list[int]
    values: list[float]

    @staticmethod
    def of(array: npt.ArrayLike) -> StateArray:
        a = np.asarray(array)
        return StateArray(dtype=a.dtype.str, shape=list(a.shape),
                          values=a.astype(np.float64).ravel().tolist())

    def array(self) -> npt.NDArray[np.generic]:
        return np.asarray(self.values, dtype=np.float64).astype(np.dtype(self.dtype)).reshape(
            self.shape)


class DecisionInputs(BaseModel):
    """The decision step's inputs beyond the market, the fleet and the job list."""

    model_config = ConfigDict(extra="forbid")

    pending_gpus: list[float]
    #: Per GPU model of the fleet; None where the market rental price applies.
    offered_usd_per_gpu_hour: list[float | None]
    pending_gpus_any_model: float = 0.0
    #: Per node (fleet order): when it last switched (0: never) and its decaying count.
    switch_since: list[float]
    switch_load: list[float]
    interval_s: float = 0.0
    skipped_cycles: int = 0
    frozen: bool = False
    #: Per site, the month-to-date peak (kW) a power contract's demand charge started
    #: from (None: no site has a contract).
    contract_peak_kw: list[float] | None = None
    #: Per site, the power price the score table used for the interval before it was
    #: published (`scoring.power_nowcast`; None: the published price).
    power_nowcast_usd_mwh: list[float] | None = None


class FleetColumns(BaseModel):
    """Enough of a fleet table to decide again on it: node rows by profile and site name."""

    model_config = ConfigDict(extra="forbid")

    names: list[str]
    profile: list[str]
    site: list[str]
    mode: list[int]
    state: list[int]
    since: list[float]
    lease_until: list[float]
    ai_gpus_busy: list[float]
    ai_interruptible: list[bool]
    opt_out: list[bool]
    reachable: list[bool]
    hashrate: list[float]

    @model_validator(mode="after")
    def _one_row_per_node(self) -> FleetColumns:
        # A record cut or edited by hand would be decided on misaligned rows.
        lengths = {name: len(getattr(self, name)) for name in type(self).model_fields}
        short = {name: n for name, n in lengths.items() if n != len(self.names)}
        if short:
            raise ValueError(f"{len(self.names)} node names, but columns of other lengths: "
                             f"{short}")
        return self


CycleRecord.model_rebuild()


def fleet_columns(fleet: Any) -> FleetColumns:
    """The replayable columns of a `FleetTable` (names resolved to profile and site)."""
    profiles = [p.name for p in fleet.profiles]
    sites = [s.name for s in fleet.sites]
    return FleetColumns(
        names=[str(x) for x in fleet.names],
        profile=[profiles[i] for i in fleet.profile],
        site=[sites[i] for i in fleet.site],
        mode=fleet.mode.astype(int).tolist(),
        state=fleet.state.astype(int).tolist(),
        since=fleet.since.tolist(),
        lease_until=fleet.lease_until.tolist(),
        ai_gpus_busy=fleet.ai_gpus_busy.tolist(),
        ai_interruptible=fleet.ai_interruptible.tolist(),
        opt_out=fleet.opt_out.tolist(),
        reachable=fleet.reachable.tolist(),
        hashrate=fleet.hashrate.tolist(),
    )
