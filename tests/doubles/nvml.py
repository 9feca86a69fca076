"""An in-memory `Nvml` for tests and benchmarks on machines without GPUs.

It implements our port, not pynvml's internals: the real pynvml path is exercised by
`tests/gpu` on a GPU machine (docs/telemetry.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.adapters.telemetry.nvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NvmlError,
    NvmlUnavailable,
)

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
GIB = 1 << 30


@dataclass
class FakeGpu:
    """One simulated board. Draw follows the power limit, as NVIDIA firmware enforces it."""

    name: str = "NVIDIA H100 80GB HBM3"
    #: What the workload would draw with no limit, W.
    demand_w: float = 650.0
    limit_w: float = 700.0
    limit_min_w: float = 200.0
    limit_max_w: float = 700.0
    utilization_pct: int = 97
    memory_utilization_pct: int = 41
    memory_used_bytes: int = 61 * GIB
    memory_total_bytes: int = 80 * GIB
    temperature_c: int = 63
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    #: Port method name → NVML return code it fails with.
    failures: dict[str, int] = field(default_factory=dict)
    #: Fell off the bus: even its handle fails.
    lost: bool = False


class FakeNvml:
    """Implements `Nvml`. `unavailable` makes `init` fail the way a driverless host does."""

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        unavailable: str | None = None,
        root: bool = True,
    ) -> None:
        self.gpus = list(gpus)
        self.unavailable = unavailable
        self.root = root
        self.initialized = False
        self.calls: Counter[str] = Counter()

    @staticmethod
    def node(count: int = 8, **gpu: Any) -> FakeNvml:
        """A node of `count` identical GPUs (default: an 8× H100 SXM server)."""
        return FakeNvml([FakeGpu(**gpu) for _ in range(count)])

    def init(self) -> None:
        self.calls["init"] += 1
        if self.unavailable is not None:
            raise NvmlUnavailable(self.unavailable, code=12)
        self.initialized = True

    def shutdown(self) -> None:
        self.calls["shutdown"] += 1
        self.initialized = False

    def device_count(self) -> int:
        self._enter("device_count")
        return len(self.gpus)

    def handle(self, index: int) -> Any:
        self._enter("handle")
        if not 0 <= index < len(self.gpus):
            raise NvmlError(f"no GPU {index}", code=NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            raise NvmlError("GPU is lost", code=NVML_ERROR_GPU_IS_LOST)
        return index

    def name(self, handle: Any) -> str:
        return self._gpu("name", handle).name

    def power_usage_mw(self, handle: Any) -> int:
        gpu = self._gpu("power_usage_mw", handle)
        return round(min(gpu.demand_w, gpu.limit_w) * 1000)

    def enforced_power_limit_mw(self, handle: Any) -> int:
        return round(self._gpu("enforced_power_limit_mw", handle).limit_w * 1000)

    def power_limit_constraints_mw(self, handle: Any) -> tuple[int, int]:
        gpu = self._gpu("power_limit_constraints_mw", handle)
        return round(gpu.limit_min_w * 1000), round(gpu.limit_max_w * 1000)

    def utilization_pct(self, handle: Any) -> tuple[int, int]:
        gpu = self._gpu("utilization_pct", handle)
        return gpu.utilization_pct, gpu.memory_utilization_pct

    def memory_bytes(self, handle: Any) -> tuple[int, int]:
        gpu = self._gpu("memory_bytes", handle)
        return gpu.memory_used_bytes, gpu.memory_total_bytes

    def temperature_c(self, handle: Any) -> int:
        return self._gpu("temperature_c", handle).temperature_c

    def clocks_mhz(self, handle: Any) -> tuple[int, int]:
        gpu = self._gpu("clocks_mhz", handle)
        return gpu.sm_clock_mhz, gpu.mem_clock_mhz

    def set_power_limit_mw(self, handle: Any, milliwatts: int) -> None:
        gpu = self._gpu("set_power_limit_mw", handle)
        if not self.root:
            raise NvmlError("Insufficient Permissions", code=NVML_ERROR_NO_PERMISSION)
        if not gpu.limit_min_w * 1000 <= milliwatts <= gpu.limit_max_w * 1000:
            raise NvmlError("Invalid Argument", code=NVML_ERROR_INVALID_ARGUMENT)
        gpu.limit_w = milliwatts / 1000.0

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if not self.initialized:
            raise NvmlError("Uninitialized", code=NVML_ERROR_UNINITIALIZED)

    def _gpu(self, method: str, handle: Any) -> FakeGpu:
        self._enter(method)
        gpu = self.gpus[int(handle)]
        code = gpu.failures.get(method)
        if code is not None:
            raise NvmlError(f"{method} failed", code=code)
        return gpu


@dataclass(frozen=True)
class FakeNodes:
    """An `NvmlFactory` of simulated nodes. Picklable, so Ray can ship it to agents.

    Nodes in `no_nvml` behave like hosts without the NVIDIA driver; in `bad_power_sensor`,
    GPU 0 cannot report its draw.
    """

    gpus_per_node: int = 8
    demand_w: float = 650.0
    no_nvml: frozenset[str] = frozenset()
    bad_power_sensor: frozenset[str] = frozenset()
    reason: str = "libnvidia-ml.so not found (simulated)"

    def __call__(self, node: str) -> FakeNvml:
        if node in self.no_nvml:
            return FakeNvml(unavailable=self.reason)
        nvml = FakeNvml.node(self.gpus_per_node, demand_w=self.demand_w)
        if node in self.bad_power_sensor and nvml.gpus:
            nvml.gpus[0].failures["power_usage_mw"] = NVML_ERROR_NOT_SUPPORTED
        return nvml
