"""Node telemetry: measured GPU power and health into the fleet table (docs/telemetry.md).

- nvml.py: the `Nvml` port, `PynvmlNvml` (real, pynvml imported lazily), `read_gpus`,
  `GpuSample`, `NodeTelemetry`, `set_power_limit`.
- apply.py: `apply_telemetry` (pure) and `MeasuredFleetSource` (the FleetSource port).
- agent.py: the Ray side, `TelemetryAgent` and the batched `TelemetryCollector`. Not
  re-exported here, so reading telemetry does not import Ray.

The in-memory NVML the tests and benchmarks use (`FakeNvml`) lives in `tests/doubles`.
"""

from orchestrator.adapters.telemetry.apply import (
    HostWatts,
    MeasuredFleetSource,
    TelemetryApplied,
    apply_telemetry,
    measure_fleet,
)
from orchestrator.adapters.telemetry.nvml import (
    GpuSample,
    NodeTelemetry,
    Nvml,
    NvmlError,
    NvmlUnavailable,
    PowerLimitError,
    PynvmlNvml,
    read_gpus,
    read_node,
    set_power_limit,
)

__all__ = [
    "GpuSample",
    "HostWatts",
    "MeasuredFleetSource",
    "NodeTelemetry",
    "Nvml",
    "NvmlError",
    "NvmlUnavailable",
    "PowerLimitError",
    "PynvmlNvml",
    "TelemetryApplied",
    "apply_telemetry",
    "measure_fleet",
    "read_gpus",
    "read_node",
    "set_power_limit",
]
