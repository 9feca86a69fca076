"""Telemetry agents on a local Ray: one batched round per tick, dead agents reported, not
fatal. The agents run the fake NVML (no GPU here); tests/gpu runs the real one."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray")

from orchestrator.adapters.telemetry import apply_telemetry  # noqa: E402
from orchestrator.adapters.telemetry.agent import (  # noqa: E402
    AgentRef,
    TelemetryAgent,
    TelemetryCollector,
    spawn_gpu_agents,
    spawn_local_agents,
)
from orchestrator.models import FleetTable, Mode, Site  # noqa: E402
from tests.conftest import profiles  # noqa: E402
from tests.doubles.nvml import FakeNodes  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

GPU_NODE = "hashpivot-test-gpu-node"
NAMES = [f"gpu-{i:03d}" for i in range(50)]
FACTORY = FakeNodes(
    no_nvml=frozenset({"gpu-007"}), bad_power_sensor=frozenset({"gpu-011"}), demand_w=600.0
)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        resources={GPU_NODE: 1},
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _kill_and_wait(actor: object) -> None:
    """ray.kill only asks; a call sent before the actor is gone may still be answered.
    Wait until the actor refuses calls, so the next tick meets a dead agent."""
    ray.kill(actor)
    for _ in range(600):
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=5)  # type: ignore[attr-defined]
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            continue
        time.sleep(0.05)
    raise AssertionError("the killed agent still answers")


def test_one_batched_round_for_fifty_nodes(local_ray: None) -> None:
    agents = spawn_local_agents(NAMES, FACTORY, nodes_per_agent=10)
    collector = TelemetryCollector(agents, timeout_s=60.0)
    tick = collector.collect()
    # 5 agents × 10 nodes: five remote calls carry every metric of every node.
    assert tick.calls == 5
    assert [s.node for s in tick.samples] == NAMES
    by = {s.node: s for s in tick.samples}
    assert by["gpu-000"].source == "nvml" and by["gpu-000"].total_power_w == 8 * 600.0
    assert len(by["gpu-000"].gpus) == 8 and by["gpu-000"].gpus[0].temperature_c == 63.0
    assert by["gpu-007"].source.startswith("unavailable: libnvidia-ml.so not found")
    assert by["gpu-011"].total_power_w is None and by["gpu-011"].gpus[0].errors
    assert tick.unreachable == 0
    # The next tick reuses the agents' open NVML sessions.
    assert collector.collect().calls == 5
    for agent in agents:
        ray.kill(agent.actor)


def test_a_killed_agent_is_unreachable_and_the_tick_completes(
    local_ray: None, caplog: pytest.LogCaptureFixture
) -> None:
    agents = spawn_local_agents(NAMES, FACTORY, nodes_per_agent=25)
    collector = TelemetryCollector(agents, timeout_s=60.0)
    assert collector.collect().unreachable == 0
    _kill_and_wait(agents[0].actor)  # hosts gpu-000 … gpu-024
    with caplog.at_level(logging.WARNING):
        tick = collector.collect()
    assert len(tick.samples) == 50 and tick.unreachable == 25
    dead = {s.node for s in tick.samples if not s.reachable}
    assert dead == set(NAMES[:25])
    gone = next(s for s in tick.samples if s.node == "gpu-010")
    assert gone.source.startswith("unreachable: agent gone")
    assert any("gpu-010" in r.getMessage() for r in caplog.records)
    # The fleet then holds those nodes as unreachable; the guards leave them alone.
    fleet = FleetTable.build(
        profiles("h100-sxm-8x"), [Site()], [0] * 50, names=NAMES, modes=[Mode.MINE] * 50
    )
    out = apply_telemetry(fleet, tick.samples)
    assert out.reachable.tolist() == [i >= 25 for i in range(50)]
    assert out.watts_mine[0] == fleet.watts_mine[0]  # nameplate kept
    assert out.watts_mine[30] == 8 * 600.0 + 600.0
    # And again next tick, without waiting on the dead agent.
    assert collector.collect().unreachable == 25
    ray.kill(agents[1].actor)


def test_a_slow_agent_times_out_without_piling_up_calls(local_ray: None) -> None:
    @ray.remote(num_cpus=0)
    class Stuck:
        def sample_all(self) -> list[object]:
            import time

            time.sleep(30)
            return []

    stuck = AgentRef(Stuck.remote(), ("slow-0", "slow-1"))
    fine = spawn_local_agents(["ok-0"], FACTORY)
    collector = TelemetryCollector([stuck, *fine], timeout_s=0.5)
    first = collector.collect()
    assert first.calls == 2
    assert [s.reachable for s in first.samples] == [False, False, True]
    assert "no answer within 0.5 s" in first.samples[0].source
    # The stuck call is still awaited, not sent again.
    assert collector.collect().calls == 1
    ray.kill(stuck.actor)


def test_an_agent_raising_is_reported(local_ray: None) -> None:
    @ray.remote(num_cpus=0)
    class Broken:
        def sample_all(self) -> list[object]:
            raise RuntimeError("boom")

    collector = TelemetryCollector(
        [AgentRef(Broken.remote(), ("b-0",)), *spawn_local_agents(["ok-1"], FACTORY)],
        timeout_s=60.0,
    )
    tick = collector.collect()
    assert tick.samples[0].source == "unreachable: agent failed: RuntimeError: boom"
    assert tick.samples[1].source == "nvml"


def test_agent_defaults_to_its_own_node_and_real_nvml(local_ray: None) -> None:
    # This machine has no GPU: the real pynvml path falls back and says why.
    agent = TelemetryAgent.remote()
    sample = ray.get(agent.sample.remote())
    assert sample.node == ray.get(agent.nodes.remote())[0]
    if not sample.has_nvml:
        assert sample.source.startswith("unavailable: ")
    ray.kill(agent)


def test_no_gpu_ray_nodes_means_no_agents(
    local_ray: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        agents = spawn_gpu_agents(FACTORY, resource="hashpivot-test-no-such-resource")
    assert agents == []
    assert "nameplate" in caplog.text


def test_gpu_agents_are_pinned_to_nodes_offering_the_resource(local_ray: None) -> None:
    # The local Ray node advertises GPU_NODE, standing in for a node with GPUs.
    agents = spawn_gpu_agents(FACTORY, resource=GPU_NODE)
    assert len(agents) == 1
    node = agents[0].nodes[0]
    tick = TelemetryCollector(agents, timeout_s=60.0).collect()
    assert [s.node for s in tick.samples] == [node]
    assert tick.samples[0].total_power_w == 8 * 600.0
    ray.kill(agents[0].actor)
