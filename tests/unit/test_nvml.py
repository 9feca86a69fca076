"""NVML telemetry against a fake NVML at our own port: reader, power limits, fallback, and
how samples correct the fleet table. No GPU and no Ray needed."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pytest

from orchestrator.adapters.telemetry import (
    HostWatts,
    MeasuredFleetSource,
    NodeTelemetry,
    Nvml,
    NvmlError,
    NvmlUnavailable,
    PowerLimitError,
    PynvmlNvml,
    apply_telemetry,
    measure_fleet,
    read_gpus,
    read_node,
    set_power_limit,
)
from orchestrator.adapters.telemetry.agent import NodeSampler, TelemetryAgentImpl
from orchestrator.adapters.telemetry.nvml import (
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_TIMEOUT,
)
from orchestrator.models import FleetTable, Mode, Site
from orchestrator.models.modes import NodeState
from tests.conftest import profiles
from tests.doubles.nvml import FakeGpu, FakeNodes, FakeNvml

GIB = 1 << 30


def opened(nvml: FakeNvml) -> FakeNvml:
    nvml.init()
    return nvml


def eight_gpus_one_bad() -> FakeNvml:
    """An 8× H100 node whose GPU 3 cannot report power (NVML_ERROR_NOT_SUPPORTED)."""
    nvml = FakeNvml.node(8)
    nvml.gpus[3].failures["power_usage_mw"] = NVML_ERROR_NOT_SUPPORTED
    return opened(nvml)


# --- the port -----------------------------------------------------------------------


def test_fake_and_real_implement_the_port() -> None:
    assert isinstance(FakeNvml(), Nvml)
    assert isinstance(PynvmlNvml(), Nvml)


def test_reader_converts_units_for_eight_gpus() -> None:
    gpus = read_gpus(opened(FakeNvml.node(8)))
    assert [g.index for g in gpus] == list(range(8))
    g = gpus[0]
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.power_w == 650.0
    assert (g.power_limit_w, g.power_limit_min_w, g.power_limit_max_w) == (700.0, 200.0, 700.0)
    assert (g.utilization_pct, g.memory_utilization_pct) == (97.0, 41.0)
    assert (g.memory_used_bytes, g.memory_total_bytes) == (61 * GIB, 80 * GIB)
    assert g.temperature_c == 63.0
    assert (g.sm_clock_mhz, g.mem_clock_mhz) == (1980, 2619)
    assert g.errors == ()
    node = read_node(opened(FakeNvml.node(8)), "gpu-0", now_s=10.0)
    assert node.source == "nvml" and node.sampled_at == 10.0
    assert node.total_power_w == 8 * 650.0
    assert node.power_limit_total_w == 8 * 700.0


def test_samples_survive_pickling_as_ray_ships_them() -> None:
    import pickle

    node = read_node(eight_gpus_one_bad(), "gpu-0", now_s=5.0)
    assert pickle.loads(pickle.dumps(node)) == node
    gone = NodeTelemetry.unreachable("gpu-1", "agent gone", now_s=5.0)
    assert pickle.loads(pickle.dumps(gone)) == gone


def test_a_failing_power_sensor_is_recorded_not_raised() -> None:
    node = read_node(eight_gpus_one_bad(), "gpu-0")
    bad = node.gpus[3]
    assert bad.power_w is None
    assert bad.errors and bad.errors[0].startswith("power_w:")
    # Its other metrics and the other GPUs are still read.
    assert bad.temperature_c == 63.0 and bad.power_limit_w == 700.0
    assert all(g.power_w == 650.0 for i, g in enumerate(node.gpus) if i != 3)
    # A partial sum would understate the node: no total at all.
    assert node.total_power_w is None
    assert node.reachable and node.has_nvml


def test_a_lost_gpu_and_several_failing_metrics() -> None:
    nvml = FakeNvml.node(8)
    nvml.gpus[5].lost = True
    nvml.gpus[6].failures.update(temperature_c=NVML_ERROR_TIMEOUT, clocks_mhz=NVML_ERROR_TIMEOUT)
    gpus = read_gpus(opened(nvml))
    assert gpus[5].power_w is None and gpus[5].name == "unknown"
    assert "GPU is lost" in gpus[5].errors[0]
    assert gpus[6].temperature_c is None and gpus[6].sm_clock_mhz is None
    assert len(gpus[6].errors) == 2 and gpus[6].power_w == 650.0


def test_device_count_failure_makes_the_node_unavailable() -> None:
    nvml = FakeNvml.node(8)  # never initialized: every call fails
    node = read_node(nvml, "gpu-0")
    assert node.source.startswith("unavailable: device count failed")
    assert node.gpus == () and node.total_power_w is None and node.reachable


# --- power limits -------------------------------------------------------------------


def test_set_power_limit_in_range_and_draw_follows() -> None:
    nvml = opened(FakeNvml.node(8))
    assert set_power_limit(nvml, 2, 300.0) == 300.0
    gpus = read_gpus(nvml)
    assert gpus[2].power_limit_w == 300.0 and gpus[2].power_w == 300.0
    assert gpus[1].power_limit_w == 700.0


def test_set_power_limit_refuses_out_of_range_with_the_range() -> None:
    nvml = opened(FakeNvml.node(8))
    with pytest.raises(PowerLimitError, match=r"GPU 0: power limit 150 W .* 200–700 W"):
        set_power_limit(nvml, 0, 150.0)
    with pytest.raises(PowerLimitError, match="outside"):
        set_power_limit(nvml, 0, 900.0)
    for bad in (math.nan, -5.0, 0.0):
        with pytest.raises(PowerLimitError, match="positive"):
            set_power_limit(nvml, 0, bad)
    assert nvml.gpus[0].limit_w == 700.0  # nothing was set


def test_set_power_limit_clamps_when_asked() -> None:
    nvml = opened(FakeNvml.node(8))
    assert set_power_limit(nvml, 0, 150.0, clamp=True) == 200.0
    assert set_power_limit(nvml, 1, 900.0, clamp=True) == 700.0


def test_set_power_limit_without_root_says_so() -> None:
    nvml = opened(FakeNvml([FakeGpu()], root=False))
    with pytest.raises(NvmlError, match="needs root") as info:
        set_power_limit(nvml, 0, 400.0)
    assert info.value.code == NVML_ERROR_NO_PERMISSION


# --- the agent's sampler and its fallback ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_nvml_absent_falls_back_logged_once_and_retries(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    nvml = FakeNvml(unavailable="libnvidia-ml.so not found")
    sampler = NodeSampler("gpu-7", nvml, retry_s=60.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        samples = [sampler.sample() for _ in range(3)]
    assert {s.source for s in samples} == {"unavailable: libnvidia-ml.so not found"}
    assert all(s.reachable and not s.has_nvml and s.total_power_w is None for s in samples)
    warnings = [r for r in caplog.records if "NVML unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "gpu-7" in warnings[0].getMessage()
    assert "libnvidia-ml.so not found" in warnings[0].getMessage()
    assert nvml.calls["init"] == 1  # not once per tick
    # A driver shows up: the next try after retry_s uses it.
    nvml.unavailable = None
    clock.t += 61.0
    assert sampler.sample().source == "nvml"
    assert nvml.calls["init"] == 2


def test_nvml_lost_mid_run_is_reopened_after_retry_s() -> None:
    clock = Clock()
    nvml = FakeNvml.node(8)
    sampler = NodeSampler("gpu-0", nvml, retry_s=60.0, clock=clock)
    assert sampler.sample().has_nvml
    nvml.initialized = False  # the driver was reloaded under us
    assert sampler.sample().source.startswith("unavailable: device count failed")
    clock.t += 10.0
    assert sampler.sample().source.startswith("unavailable: device count failed")
    assert nvml.calls["init"] == 1
    clock.t += 60.0
    assert sampler.sample().has_nvml
    assert nvml.calls["init"] == 2


def test_sampler_opens_nvml_once() -> None:
    nvml = FakeNvml.node(8)
    sampler = NodeSampler("gpu-0", nvml)
    for _ in range(5):
        assert sampler.sample().total_power_w == 5200.0
    assert nvml.calls["init"] == 1
    sampler.close()
    assert nvml.calls["shutdown"] == 1


def test_agent_sets_power_limits_for_efficient_mining() -> None:
    agent = TelemetryAgentImpl(["gpu-0", "gpu-1"], FakeNodes(no_nvml=frozenset({"gpu-1"})))
    assert agent.set_power_limits(280.0, node="gpu-0") == dict.fromkeys(range(8), 280.0)
    assert agent.set_power_limits({0: 150.0}, node="gpu-0", clamp=True) == {0: 200.0}
    assert agent.sample("gpu-0").total_power_w == 200.0 + 7 * 280.0
    with pytest.raises(NvmlUnavailable, match="gpu-1"):
        agent.set_power_limits(280.0, node="gpu-1")
    with pytest.raises(KeyError, match="hosts"):
        agent.sample("gpu-9")
    assert [s.source[:11] for s in agent.sample_all()] == ["nvml", "unavailable"]


# --- the real pynvml, on a machine without a GPU ---------------------------------------


def test_real_pynvml_init_either_works_or_says_why() -> None:
    nvml = PynvmlNvml()
    try:
        nvml.init()
    except NvmlUnavailable as exc:
        assert exc.reason.startswith("nvmlInit failed:") or "library" in exc.reason
        return
    assert nvml.device_count() >= 0  # a GPU machine: tests/gpu covers the rest
    nvml.shutdown()


def test_missing_pynvml_package_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml → ImportError
    with pytest.raises(NvmlUnavailable, match="pynvml is not installed"):
        PynvmlNvml().init()


def test_calls_before_init_fail_as_nvml_errors() -> None:
    with pytest.raises(NvmlError, match="not initialized"):
        PynvmlNvml().device_count()


# --- samples into the fleet table ----------------------------------------------------

NODES = ["mine", "ai", "idle", "no-nvml", "starting", "gone", "bad-sensor", "silent", "seven"]


def gpu_fleet() -> FleetTable:
    modes = [Mode.MINE] * 10
    modes[NODES.index("ai")] = modes[NODES.index("starting")] = Mode.AI
    modes[NODES.index("idle")] = Mode.IDLE
    fleet = FleetTable.build(
        profiles("h100-sxm-8x", "s21"),
        [Site()],
        [0] * 9 + [1],
        names=[*NODES, "asic"],
        modes=modes,
    )
    state = fleet.state.copy()
    state[NODES.index("starting")] = NodeState.STARTING_AI
    return fleet.with_columns(state=state)


def fleet_samples() -> list[NodeTelemetry]:
    """One tick as agents would report it."""
    nodes = FakeNodes(no_nvml=frozenset({"no-nvml"}), bad_power_sensor=frozenset({"bad-sensor"}))
    out = []
    for name in ["mine", "ai", "idle", "no-nvml", "starting", "bad-sensor"]:
        nvml = opened_or_not(nodes(name))
        if name == "mine":  # efficient mining: limits lowered to 300 W
            for i in range(8):
                set_power_limit(nvml, i, 300.0)
        if name == "ai":  # the operator capped AI boards at 600 W
            for i in range(8):
                set_power_limit(nvml, i, 600.0)
        if name == "idle":
            for gpu in nvml.gpus:
                gpu.demand_w = 70.0
        sample = NodeSampler(name, nvml).sample()
        if name in ("mine", "ai"):  # a miner-reported rate, as a miner reader would add
            sample = NodeTelemetry(
                sample.node, sample.gpus, sample.sampled_at, sample.source, hashrate=7.5
            )
        out.append(sample)
    seven = FakeNvml.node(7)
    out.append(NodeSampler("seven", seven).sample())
    out.append(NodeTelemetry.unreachable("gone", "agent gone: RayActorError"))
    out.append(NodeTelemetry.unavailable("asic", "no GPUs", now_s=0.0))
    out.append(NodeTelemetry.unavailable("not-in-fleet", "x", now_s=0.0))
    return out


def opened_or_not(nvml: FakeNvml) -> FakeNvml:
    if nvml.unavailable is None:
        nvml.init()
    return nvml


def test_apply_telemetry_measures_the_current_steady_mode() -> None:
    fleet = gpu_fleet()
    before = {k: getattr(fleet, k).copy() for k in ("watts_mine", "watts_ai", "watts_idle")}
    res = measure_fleet(fleet, fleet_samples())
    out = res.fleet
    i = NODES.index
    # Mining at lowered limits: 8 × 300 W + the host allowance; the engine now prices it.
    assert out.watts_mine[i("mine")] == 8 * 300.0 + 600.0
    assert out.watts_mine[i("mine")] < fleet.watts_mine[i("mine")]
    assert out.hashrate[i("mine")] == 7.5 and out.hashrate_measured[i("mine")]
    # AI: the enforced limits (600 W each), a ceiling the cap can trust, not today's draw.
    assert out.watts_ai[i("ai")] == 8 * 600.0 + 1500.0
    assert out.hashrate[i("ai")] == fleet.hashrate[i("ai")]
    assert not out.hashrate_measured[i("ai")]
    assert out.watts_idle[i("idle")] == 8 * 70.0 + 600.0
    # Only the current mode's column moves.
    assert out.watts_mine[i("ai")] == fleet.watts_mine[i("ai")]
    assert out.watts_ai[i("mine")] == fleet.watts_ai[i("mine")]
    assert np.flatnonzero(res.watts_measured).tolist() == [i("mine"), i("ai"), i("idle")]
    # Nameplate kept, flagged, for: no NVML, in transition, partial GPUs, unreachable, silent.
    for name in ("no-nvml", "starting", "bad-sensor", "seven", "gone", "silent"):
        k = i(name)
        assert not res.watts_measured[k], name
        for col in ("watts_mine", "watts_ai", "watts_idle"):
            assert getattr(out, col)[k] == getattr(fleet, col)[k], (name, col)
    assert res.unreachable.tolist() == [n == "gone" for n in [*NODES, "asic"]]
    assert out.reachable.tolist() == [n != "gone" for n in [*NODES, "asic"]]
    assert np.flatnonzero(res.no_sample).tolist() == [i("silent")]
    assert res.unknown_nodes == ("not-in-fleet",)
    # Inputs untouched.
    for col, values in before.items():
        assert np.array_equal(getattr(fleet, col), values)
    assert fleet.reachable.all()


def test_telemetry_never_revives_a_node_the_cluster_reports_down() -> None:
    fleet = gpu_fleet()
    down = fleet.reachable.copy()
    down[0] = False
    fleet = fleet.with_columns(reachable=down)
    out = apply_telemetry(fleet, fleet_samples())
    assert not out.reachable[0]


def test_host_watts_are_configurable_and_no_samples_change_nothing() -> None:
    fleet = gpu_fleet()
    out = apply_telemetry(fleet, fleet_samples(), host=HostWatts(idle=100, mine=200, ai=300))
    assert out.watts_mine[0] == 8 * 300.0 + 200.0
    assert out.watts_ai[1] == 8 * 600.0 + 300.0
    same = apply_telemetry(fleet, [])
    assert np.array_equal(same.watts_mine, fleet.watts_mine)
    assert np.array_equal(same.reachable, fleet.reachable)


def test_measured_fleet_source_wraps_another_source() -> None:
    fleet = gpu_fleet()

    class Static:
        def fleet(self, now_s: float) -> FleetTable:
            return fleet

    source = MeasuredFleetSource(Static(), fleet_samples)
    out = source.fleet(0.0)
    assert out.watts_mine[0] == 3000.0
    assert source.last is not None and source.last.no_sample.sum() == 1
