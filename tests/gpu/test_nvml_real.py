"""The real pynvml path, on a machine with an NVIDIA GPU and driver (docs/telemetry.md).

Skipped, with the reason, where NVML is absent (CI has no GPU). With
HASHPIVOT_REQUIRE_NVML=1 an absent NVML fails instead, so a GPU runner cannot pass
by skipping. Setting power limits changes the hardware and needs root, so that test
also needs HASHPIVOT_NVML_SET_LIMITS=1; it restores the limit it found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from orchestrator.adapters.telemetry import (
    NvmlUnavailable,
    PynvmlNvml,
    read_gpus,
    read_node,
    set_power_limit,
)
from orchestrator.adapters.telemetry.agent import TelemetryAgentImpl

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def nvml() -> Iterator[PynvmlNvml]:
    real = PynvmlNvml()
    try:
        real.init()
    except NvmlUnavailable as exc:
        message = f"NVML is not present on this machine: {exc.reason}"
        if os.environ.get("HASHPIVOT_REQUIRE_NVML") == "1":
            pytest.fail(f"{message} (HASHPIVOT_REQUIRE_NVML=1)")
        pytest.skip(f"{message}; run on a GPU machine, see docs/telemetry.md")
    try:
        yield real
    finally:
        real.shutdown()


def test_every_gpu_reads_with_plausible_values(nvml: PynvmlNvml) -> None:
    count = nvml.device_count()
    assert count >= 1
    gpus = read_gpus(nvml)
    assert [g.index for g in gpus] == list(range(count))
    for g in gpus:
        assert g.name and g.name != "unknown", g.errors
        assert g.memory_total_bytes is not None and g.memory_total_bytes > 0, g.errors
        assert g.temperature_c is None or 0 <= g.temperature_c < 130
        if g.power_w is not None:  # some boards (e.g. many consumer cards) do not report it
            assert 0 <= g.power_w < 2000
        low, limit, high = g.power_limit_min_w, g.power_limit_w, g.power_limit_max_w
        if low is not None and limit is not None and high is not None:
            assert low <= limit <= high
        print(g)


def test_node_sample_and_agent_use_the_real_nvml(nvml: PynvmlNvml) -> None:
    node = read_node(nvml, "this-node")
    assert node.has_nvml and len(node.gpus) == nvml.device_count()
    agent = TelemetryAgentImpl()  # default factory: the real pynvml
    sample = agent.sample()
    assert sample.has_nvml, sample.source
    agent.close()


@pytest.mark.skipif(
    os.environ.get("HASHPIVOT_NVML_SET_LIMITS") != "1",
    reason="changes GPU 0's power limit (root); set HASHPIVOT_NVML_SET_LIMITS=1 to run",
)
def test_set_power_limit_on_gpu_zero_and_restore(nvml: PynvmlNvml) -> None:
    handle = nvml.handle(0)
    before_mw = nvml.enforced_power_limit_mw(handle)
    low_mw, _ = nvml.power_limit_constraints_mw(handle)
    try:
        assert set_power_limit(nvml, 0, low_mw / 1000.0) == low_mw / 1000.0
    finally:
        set_power_limit(nvml, 0, before_mw / 1000.0)
    assert nvml.enforced_power_limit_mw(handle) == before_mw


@pytest.mark.ray
def test_ray_pins_an_agent_to_this_gpu_node(nvml: PynvmlNvml) -> None:
    import ray

    from orchestrator.adapters.telemetry.agent import TelemetryCollector, spawn_gpu_agents

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        agents = spawn_gpu_agents()  # Ray detects the GPUs and offers a "GPU" resource
        assert len(agents) == 1
        tick = TelemetryCollector(agents, timeout_s=60.0).collect()
        assert tick.calls == 1 and tick.samples[0].has_nvml, tick.samples[0].source
        assert len(tick.samples[0].gpus) == nvml.device_count()
    finally:
        ray.shutdown()
