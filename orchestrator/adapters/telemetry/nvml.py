"""GPU telemetry through NVML: our port, the pynvml adapter behind it, and the reader.

`Nvml` is the handful of NVML calls hashpivot makes, in NVML's own units (mW, MHz,
bytes). `PynvmlNvml` wraps the real `pynvml`; tests and benchmarks use `FakeNvml`
(tests/doubles/nvml.py). Everything above the port sees `NvmlError`, never pynvml's exception
classes, so nothing but this module imports pynvml — and only when `init()` runs,
so a machine without the NVIDIA driver can still import hashpivot.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Protocol, runtime_checkable

from orchestrator.errors import HashpivotError

# NVML return codes we act on (same numbers as nvml.h, so fakes can raise them).
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

SOURCE_NVML = "nvml"
UNAVAILABLE = "unavailable"
UNREACHABLE = "unreachable"


class NvmlError(HashpivotError):
    """An NVML call failed. `code` is NVML's return code when there is one."""

    def __init__(self, message: str, *, code: int | None = None):
        self.code = code
        super().__init__(message)


class NvmlUnavailable(NvmlError):  # noqa: N818 -- a state, not a failed call
    """NVML cannot be used on this machine at all (no library, no driver, no pynvml)."""

    def __init__(self, reason: str, *, code: int | None = None):
        self.reason = reason
        super().__init__(reason, code=code)


class PowerLimitError(HashpivotError):
    """A requested GPU power limit is outside what the board accepts."""


@runtime_checkable
class Nvml(Protocol):
    """The NVML calls hashpivot makes. Handles are opaque; units are NVML's."""

    def init(self) -> None:
        """Load the library and attach to the driver. Raises `NvmlUnavailable`."""
        ...

    def shutdown(self) -> None: ...

    def device_count(self) -> int: ...

    def handle(self, index: int) -> Any: ...

    def name(self, handle: Any) -> str: ...

    def power_usage_mw(self, handle: Any) -> int:
        """Board power draw now, mW."""
        ...

    def enforced_power_limit_mw(self, handle: Any) -> int:
        """The limit the board enforces now (the lowest of every limit set), mW."""
        ...

    def power_limit_constraints_mw(self, handle: Any) -> tuple[int, int]:
        """(min, max) a power limit may be set to, mW."""
        ...

    def utilization_pct(self, handle: Any) -> tuple[int, int]:
        """(gpu, memory) utilization over NVML's last sample period, %."""
        ...

    def memory_bytes(self, handle: Any) -> tuple[int, int]:
        """(used, total) framebuffer memory, bytes."""
        ...

    def temperature_c(self, handle: Any) -> int: ...

    def clocks_mhz(self, handle: Any) -> tuple[int, int]:
        """(SM, memory) current clocks, MHz."""
        ...

    def set_power_limit_mw(self, handle: Any, milliwatts: int) -> None:
        """Needs root (or CAP_SYS_ADMIN) on the node; raises `NvmlError` otherwise."""
        ...


class PynvmlNvml:
    """The real NVML, through `pynvml` (package `nvidia-ml-py`)."""

    def __init__(self) -> None:
        self._nv: Any = None

    def init(self) -> None:
        try:
            import pynvml
        except ImportError as exc:  # the package is a dependency, but images get trimmed
            raise NvmlUnavailable(f"pynvml is not installed ({exc})") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            raise NvmlUnavailable(_init_reason(code, str(exc)), code=code) from exc
        except OSError as exc:  # a broken libnvidia-ml.so fails in ctypes, not in NVML
            raise NvmlUnavailable(f"NVML library could not be loaded: {exc}") from exc
        self._nv = pynvml

    def shutdown(self) -> None:
        if self._nv is not None:
            self._call("nvmlShutdown")
            self._nv = None

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def name(self, handle: Any) -> str:
        raw = self._call("nvmlDeviceGetName", handle)
        # Older bindings return bytes, newer ones str.
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def power_usage_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", handle))

    def enforced_power_limit_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetEnforcedPowerLimit", handle))

    def power_limit_constraints_mw(self, handle: Any) -> tuple[int, int]:
        low, high = self._call("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        return int(low), int(high)

    def utilization_pct(self, handle: Any) -> tuple[int, int]:
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        return int(rates.gpu), int(rates.memory)

    def memory_bytes(self, handle: Any) -> tuple[int, int]:
        info = self._call("nvmlDeviceGetMemoryInfo", handle)
        return int(info.used), int(info.total)

    def temperature_c(self, handle: Any) -> int:
        nv = self._require()
        return int(self._call("nvmlDeviceGetTemperature", handle, nv.NVML_TEMPERATURE_GPU))

    def clocks_mhz(self, handle: Any) -> tuple[int, int]:
        nv = self._require()
        sm = self._call("nvmlDeviceGetClockInfo", handle, nv.NVML_CLOCK_SM)
        mem = self._call("nvmlDeviceGetClockInfo", handle, nv.NVML_CLOCK_MEM)
        return int(sm), int(mem)

    def set_power_limit_mw(self, handle: Any, milliwatts: int) -> None:
        self._call("nvmlDeviceSetPowerManagementLimit", handle, int(milliwatts))

    def _require(self) -> Any:
        if self._nv is None:
            raise NvmlError("NVML is not initialized: call init() first")
        return self._nv

    def _call(self, function: str, *args: Any) -> Any:
        nv = self._require()
        try:
            return getattr(nv, function)(*args)
        except nv.NVMLError as exc:
            code = getattr(exc, "value", None)
            raise NvmlError(f"{function}: {exc}", code=code) from exc


def _init_reason(code: int | None, message: str) -> str:
    hints = {
        NVML_ERROR_LIBRARY_NOT_FOUND: "libnvidia-ml.so not found (no NVIDIA driver here)",
        NVML_ERROR_DRIVER_NOT_LOADED: "NVIDIA driver not loaded",
        NVML_ERROR_NO_PERMISSION: "no permission to open the NVIDIA device files",
    }
    return f"nvmlInit failed: {hints.get(code or 0, message)}"


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant. A metric the GPU did not give is None, with why in `errors`."""

    index: int
    name: str = "unknown"
    power_w: float | None = None
    power_limit_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    utilization_pct: float | None = None
    memory_utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    errors: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type[GpuSample], tuple[Any, ...]]:
        # Ray pickles thousands of these a tick; positional fields pickle twice as fast
        # as the slots dataclass's default state dict.
        return (GpuSample, _GPU_FIELDS(self))


@dataclass(frozen=True, slots=True)
class NodeTelemetry:
    """What one node reported in one tick.

    `source` is "nvml", "unavailable: <reason>" (the agent answered but has no NVML) or
    "unreachable: <reason>" (the agent did not answer). `hashrate` is a miner-reported
    rate in the algorithm's unit; NVML cannot see it, so NVML agents leave it None.
    """

    node: str
    gpus: tuple[GpuSample, ...]
    sampled_at: float
    source: str = SOURCE_NVML
    hashrate: float | None = None

    @property
    def reachable(self) -> bool:
        return not self.source.startswith(UNREACHABLE)

    @property
    def has_nvml(self) -> bool:
        return self.source == SOURCE_NVML

    @property
    def total_power_w(self) -> float | None:
        """Sum of GPU board power, W; None unless every GPU reported its draw.

        A partial sum would understate the node, which the power cap must not see.
        """
        if not self.has_nvml or not self.gpus:
            return None
        draws = [g.power_w for g in self.gpus]
        if any(d is None for d in draws):
            return None
        return float(sum(d for d in draws if d is not None))

    @property
    def power_limit_total_w(self) -> float | None:
        """Sum of the enforced GPU power limits: the most the GPUs can draw, W."""
        if not self.has_nvml or not self.gpus:
            return None
        limits = [g.power_limit_w for g in self.gpus]
        if any(v is None for v in limits):
            return None
        return float(sum(v for v in limits if v is not None))

    def __reduce__(self) -> tuple[type[NodeTelemetry], tuple[Any, ...]]:
        return (NodeTelemetry, _NODE_FIELDS(self))

    @staticmethod
    def unavailable(node: str, reason: str, now_s: float | None = None) -> NodeTelemetry:
        return NodeTelemetry(node, (), _now(now_s), f"{UNAVAILABLE}: {reason}")

    @staticmethod
    def unreachable(node: str, reason: str, now_s: float | None = None) -> NodeTelemetry:
        return NodeTelemetry(node, (), _now(now_s), f"{UNREACHABLE}: {reason}")


_GPU_FIELDS = attrgetter(*(f.name for f in fields(GpuSample)))
_NODE_FIELDS = attrgetter(*(f.name for f in fields(NodeTelemetry)))


def _now(now_s: float | None) -> float:
    return time.time() if now_s is None else now_s


def _mw_to_w(milliwatts: int) -> float:
    return milliwatts / 1000.0


def read_gpu(nvml: Nvml, index: int) -> GpuSample:
    """Every metric of one GPU. A failing metric is recorded, never raised: one sensor
    that is unsupported (common on consumer boards) must not hide the others."""
    errors: list[str] = []

    def get(metric: str, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except NvmlError as exc:
            errors.append(f"{metric}: {exc}")
            return None

    handle = get("handle", nvml.handle, index)
    if handle is None:
        return GpuSample(index=index, errors=tuple(errors))
    name = get("name", nvml.name, handle)
    power = get("power_w", nvml.power_usage_mw, handle)
    limit = get("power_limit_w", nvml.enforced_power_limit_mw, handle)
    constraints = get("power_limit_constraints", nvml.power_limit_constraints_mw, handle)
    util = get("utilization_pct", nvml.utilization_pct, handle)
    memory = get("memory_bytes", nvml.memory_bytes, handle)
    temp = get("temperature_c", nvml.temperature_c, handle)
    clocks = get("clocks_mhz", nvml.clocks_mhz, handle)
    return GpuSample(
        index=index,
        name=name if name is not None else "unknown",
        power_w=None if power is None else _mw_to_w(power),
        power_limit_w=None if limit is None else _mw_to_w(limit),
        power_limit_min_w=None if constraints is None else _mw_to_w(constraints[0]),
        power_limit_max_w=None if constraints is None else _mw_to_w(constraints[1]),
        utilization_pct=None if util is None else float(util[0]),
        memory_utilization_pct=None if util is None else float(util[1]),
        memory_used_bytes=None if memory is None else int(memory[0]),
        memory_total_bytes=None if memory is None else int(memory[1]),
        temperature_c=None if temp is None else float(temp),
        sm_clock_mhz=None if clocks is None else int(clocks[0]),
        mem_clock_mhz=None if clocks is None else int(clocks[1]),
        errors=tuple(errors),
    )


def read_gpus(nvml: Nvml) -> list[GpuSample]:
    """Every GPU of an initialized NVML. Raises `NvmlError` only if the count fails."""
    return [read_gpu(nvml, i) for i in range(nvml.device_count())]


def read_node(nvml: Nvml, node: str, now_s: float | None = None) -> NodeTelemetry:
    """One node's telemetry; an NVML that stops answering becomes an "unavailable" sample."""
    try:
        gpus = read_gpus(nvml)
    except NvmlError as exc:
        return NodeTelemetry.unavailable(node, f"device count failed: {exc}", now_s)
    return NodeTelemetry(node, tuple(gpus), _now(now_s), SOURCE_NVML)


def set_power_limit(nvml: Nvml, index: int, watts: float, *, clamp: bool = False) -> float:
    """Set GPU `index`'s power limit; returns the limit now enforced, W.

    Lower limits are how GPUs mine efficiently: hashrate falls far less than power. A
    request outside the board's constraints is refused with the allowed range, or with
    `clamp=True` moved to the nearest end of it.
    """
    if not math.isfinite(watts) or watts <= 0:
        raise PowerLimitError(f"GPU {index}: power limit must be a positive number, got {watts}")
    handle = nvml.handle(index)
    low_mw, high_mw = nvml.power_limit_constraints_mw(handle)
    want_mw = round(watts * 1000.0)
    if not low_mw <= want_mw <= high_mw:
        if not clamp:
            raise PowerLimitError(
                f"GPU {index}: power limit {watts:g} W is outside the board's range "
                f"{_mw_to_w(low_mw):g}–{_mw_to_w(high_mw):g} W"
            )
        want_mw = min(max(want_mw, low_mw), high_mw)
    try:
        nvml.set_power_limit_mw(handle, want_mw)
    except NvmlError as exc:
        if exc.code == NVML_ERROR_NO_PERMISSION:
            raise NvmlError(
                f"GPU {index}: setting a power limit needs root (or CAP_SYS_ADMIN) on the "
                f"node: {exc}",
                code=exc.code,
            ) from exc
        raise
    return _mw_to_w(nvml.enforced_power_limit_mw(handle))
