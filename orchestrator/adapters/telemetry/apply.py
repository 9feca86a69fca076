"""Measured telemetry into the fleet table, without I/O.

A node's draw is measured only in the mode it is in, so one tick can correct one of
its three watts columns:

- steady IDLE: `watts_idle` = GPU draw + host watts;
- steady MINING: `watts_mine` = GPU draw + host watts (this is where lowered power
  limits show up: the engine then prices mining at the efficient draw), and a
  miner-reported `hashrate` sets `hashrate` and `hashrate_measured`;
- steady AI: `watts_ai` = sum of the enforced GPU power limits + host watts. The power
  cap reads `watts_ai` as *full-load* draw (guards.py) while a tenant's load comes
  and goes, so today's draw would understate it; the enforced limit is a ceiling the
  GPU firmware guarantees, and it is what NVML can measure about full load;
- starting, stopping or draining: nothing, because the draw is a mix of two workloads.

NVML sees GPU boards only; CPUs, fans, NICs and PSU losses are added as `HostWatts`,
by default the same host allowance the built-in GPU profiles assume. A sample missing
any GPU's draw (or fewer GPUs than the node should have) corrects nothing: a partial
sum would understate the node to the power cap. Nodes whose agent did not answer are
marked unreachable (the guards then leave them alone); telemetry never marks a node
reachable that the cluster reports down. Without a sample, nameplate values stay and
`TelemetryApplied.watts_measured` is False for the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.adapters.telemetry.nvml import NodeTelemetry
from orchestrator.models.fleet import FleetTable
from orchestrator.models.modes import NodeState
from orchestrator.ports import FleetSource

B = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class HostWatts:
    """Node power NVML cannot see (CPUs, fans, NICs, PSU losses) per mode, W."""

    idle: float = 600.0
    mine: float = 600.0
    ai: float = 1500.0


@dataclass(frozen=True, slots=True)
class TelemetryApplied:
    """The corrected fleet and which rows telemetry actually touched."""

    fleet: FleetTable
    #: The column of the node's current steady mode now holds a measurement.
    watts_measured: B
    #: The node's agent did not answer this tick.
    unreachable: B
    #: No sample at all for the node: nameplate values kept.
    no_sample: B
    #: Samples naming nodes the fleet does not have (ignored).
    unknown_nodes: tuple[str, ...]


def apply_telemetry(
    fleet: FleetTable, samples: Sequence[NodeTelemetry], *, host: HostWatts | None = None
) -> FleetTable:
    """`fleet` with measured watts, hashrate and reachability (module docstring)."""
    return measure_fleet(fleet, samples, host=host).fleet


def measure_fleet(
    fleet: FleetTable, samples: Sequence[NodeTelemetry], *, host: HostWatts | None = None
) -> TelemetryApplied:
    """Like `apply_telemetry`, also saying which nodes were measured. Inputs are not mutated."""
    host = host or HostWatts()
    n = fleet.n
    row_of = {str(name): i for i, name in enumerate(fleet.names)}
    # The last sample wins if a node appears twice (an agent restarted mid-tick).
    latest = {s.node: s for s in samples}
    known = [s for name, s in latest.items() if name in row_of]
    unknown = tuple(name for name in latest if name not in row_of)
    rows = np.array([row_of[s.node] for s in known], dtype=np.intp)
    nan = math.nan
    gpu_w = np.array([_or_nan(s.total_power_w) for s in known], dtype=np.float64)
    ceiling_w = np.array([_or_nan(s.power_limit_total_w) for s in known], dtype=np.float64)
    n_gpus = np.array([len(s.gpus) for s in known], dtype=np.float64)
    hashrate = np.array(
        [nan if s.hashrate is None else s.hashrate for s in known], dtype=np.float64
    )
    answered = np.array([s.reachable for s in known], dtype=bool)
    if rows.size:
        # Fewer GPUs seen than the node has: one fell off the bus; the sum is partial.
        complete = n_gpus >= fleet.gpus[rows]
        gpu_w = np.where(complete, gpu_w, nan)
        ceiling_w = np.where(complete, ceiling_w, nan)

    state = fleet.state[rows]
    watts_idle = fleet.watts_idle.copy()
    watts_mine = fleet.watts_mine.copy()
    watts_ai = fleet.watts_ai.copy()
    measured = np.zeros(n, dtype=bool)

    def put(column: F64, steady: NodeState, value: F64) -> None:
        hit = answered & (state == steady) & np.isfinite(value)
        column[rows[hit]] = value[hit]
        measured[rows[hit]] = True

    put(watts_idle, NodeState.IDLE, gpu_w + host.idle)
    put(watts_mine, NodeState.MINING, gpu_w + host.mine)
    # A draw above the limit (a brief spike) still counts; no known limit, no AI figure.
    ai_w = np.where(np.isfinite(ceiling_w), np.fmax(ceiling_w, gpu_w), nan)
    put(watts_ai, NodeState.AI, ai_w + host.ai)

    hashrate_col = fleet.hashrate.copy()
    hashrate_measured = fleet.hashrate_measured.copy()
    mined = answered & (state == NodeState.MINING) & np.isfinite(hashrate) & (hashrate >= 0)
    hashrate_col[rows[mined]] = hashrate[mined]
    hashrate_measured[rows[mined]] = True

    unreachable = np.zeros(n, dtype=bool)
    unreachable[rows[~answered]] = True
    no_sample = np.ones(n, dtype=bool)
    no_sample[rows] = False
    out = fleet.with_columns(
        watts_idle=watts_idle,
        watts_mine=watts_mine,
        watts_ai=watts_ai,
        hashrate=hashrate_col,
        hashrate_measured=hashrate_measured,
        reachable=fleet.reachable & ~unreachable,
    )
    return TelemetryApplied(out, measured, unreachable, no_sample, unknown)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


class MeasuredFleetSource:
    """A `FleetSource` that corrects another's fleet with each tick's telemetry."""

    def __init__(
        self,
        inner: FleetSource,
        samples: Callable[[], Sequence[NodeTelemetry]],
        *,
        host: HostWatts | None = None,
    ) -> None:
        self.inner = inner
        self.samples = samples
        self.host = host
        self.last: TelemetryApplied | None = None

    def fleet(self, now_s: float) -> FleetTable:
        self.last = measure_fleet(self.inner.fleet(now_s), self.samples(), host=self.host)
        return self.last.fleet
