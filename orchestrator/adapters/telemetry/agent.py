"""Telemetry agents on Ray: one per GPU node, sampled in one batched round per tick.

- `NodeSampler`: one node's NVML session, opened lazily; where NVML is absent it logs
  the reason once and answers "unavailable: <reason>" samples (the engine then keeps
  nameplate watts), retrying NVML every `retry_s` in case a driver appears.
- `TelemetryAgent`: the Ray actor. In production it runs on a GPU node and hosts that
  one node; in simulations and benchmarks one agent hosts many simulated nodes. Either
  way `sample_all()` returns every metric of every hosted node in one call.
- `TelemetryCollector`: one tick = one `sample_all` call per agent, awaited together.
  An agent that is dead or too slow is reported unreachable; the tick still completes.
- `spawn_gpu_agents` / `spawn_local_agents`: placement (docs/telemetry.md).

The agent holds `num_cpus=0, num_gpus=0`: it must never take a GPU from a tenant.
NVML enumerates every board on the host regardless of CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.adapters.telemetry.nvml import (
    UNAVAILABLE,
    UNREACHABLE,
    NodeTelemetry,
    Nvml,
    NvmlError,
    NvmlUnavailable,
    PynvmlNvml,
    read_node,
    set_power_limit,
)

log = logging.getLogger("hashpivot.telemetry.agent")

#: Node name → the NVML for it. Must pickle: Ray ships it to the agent's process.
NvmlFactory = Callable[[str], Nvml]

NODE_NAME_ENV = "HASHPIVOT_NODE_NAME"


def real_nvml(_node: str) -> Nvml:
    """The default factory: pynvml on whatever machine the agent runs on."""
    return PynvmlNvml()


def local_node_name() -> str:
    """The Kubernetes node name (from the downward API, see docs/telemetry.md), else hostname."""
    return os.environ.get(NODE_NAME_ENV) or platform.node()


class NodeSampler:
    """One node's NVML session and its fallback. Plain Python: testable without Ray."""

    def __init__(
        self,
        node: str,
        nvml: Nvml,
        *,
        retry_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.nvml = nvml
        self.retry_s = retry_s
        self.clock = clock
        self.open = False
        self.reason: str | None = None
        self._tried_at = -math.inf
        self._logged: set[str] = set()

    def _ensure_open(self) -> str | None:
        """None when NVML is usable, else why not."""
        if self.open:
            return None
        now = self.clock()
        if now - self._tried_at < self.retry_s:
            return self.reason
        self._tried_at = now
        try:
            self.nvml.init()
        except NvmlError as exc:
            reason = exc.reason if isinstance(exc, NvmlUnavailable) else str(exc)
            self.reason = reason
            if reason not in self._logged:  # once per reason, not once per tick
                self._logged.add(reason)
                log.warning(
                    "node %s: NVML unavailable (%s); its power stays at nameplate values. "
                    "Retrying every %.0f s.",
                    self.node,
                    reason,
                    self.retry_s,
                )
            return reason
        if self.reason is not None:
            log.info("node %s: NVML available again", self.node)
        self.open, self.reason = True, None
        return None

    def sample(self) -> NodeTelemetry:
        reason = self._ensure_open()
        if reason is not None:
            return NodeTelemetry.unavailable(self.node, reason, self.clock())
        out = read_node(self.nvml, self.node, self.clock())
        if not out.has_nvml:
            # The driver went away under us (e.g. an upgrade): reopen on a later tick.
            self.close()
            self.reason = out.source.removeprefix(f"{UNAVAILABLE}: ")
            self._tried_at = self.clock()
            log.warning(
                "node %s: NVML stopped answering (%s); reopening later", self.node, self.reason
            )
        return out

    def set_power_limits(
        self, watts: float | Mapping[int, float], *, clamp: bool = False
    ) -> dict[int, float]:
        """Set one limit for every GPU, or per GPU index; returns the enforced limits, W."""
        reason = self._ensure_open()
        if reason is not None:
            raise NvmlUnavailable(f"node {self.node}: {reason}")
        if isinstance(watts, Mapping):
            wanted = dict(watts)
        else:
            wanted = dict.fromkeys(range(self.nvml.device_count()), float(watts))
        return {i: set_power_limit(self.nvml, i, w, clamp=clamp) for i, w in wanted.items()}

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.nvml.shutdown()
            except NvmlError as exc:
                log.debug("node %s: nvmlShutdown failed: %s", self.node, exc)


class TelemetryAgentImpl:
    """What the `TelemetryAgent` actor runs (kept importable for tests and subclasses)."""

    def __init__(
        self,
        nodes: Sequence[str] | None = None,
        nvml_factory: NvmlFactory | None = None,
        *,
        retry_s: float = 300.0,
    ) -> None:
        factory = nvml_factory or real_nvml
        names = list(nodes) if nodes else [local_node_name()]
        self.samplers = {n: NodeSampler(n, factory(n), retry_s=retry_s) for n in names}

    def nodes(self) -> list[str]:
        return list(self.samplers)

    def sample(self, node: str | None = None) -> NodeTelemetry:
        """One node (default: the only or first one hosted), every metric in one call."""
        return self._sampler(node).sample()

    def sample_all(self) -> list[NodeTelemetry]:
        """Every hosted node, every metric: the one call a tick makes to this agent."""
        return [s.sample() for s in self.samplers.values()]

    def set_power_limits(
        self,
        watts: float | Mapping[int, float],
        *,
        node: str | None = None,
        clamp: bool = False,
    ) -> dict[int, float]:
        return self._sampler(node).set_power_limits(watts, clamp=clamp)

    def close(self) -> None:
        for s in self.samplers.values():
            s.close()

    def _sampler(self, node: str | None) -> NodeSampler:
        if node is None:
            return next(iter(self.samplers.values()))
        try:
            return self.samplers[node]
        except KeyError:
            raise KeyError(f"this agent hosts {sorted(self.samplers)}, not {node!r}") from None


# Restarts cover a crashed agent process; samples are not retried, the next tick is.
TelemetryAgent: Any = ray.remote(num_cpus=0, num_gpus=0, max_restarts=3, max_task_retries=0)(
    TelemetryAgentImpl
)


@dataclass(frozen=True, slots=True)
class AgentRef:
    """An agent's handle and the nodes it answers for (to report them if it does not)."""

    actor: Any
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TelemetryTick:
    samples: list[NodeTelemetry]
    started_at: float
    elapsed_s: float
    #: Remote calls this tick made: one per agent, however many nodes or metrics.
    calls: int
    unreachable: int


class TelemetryCollector:
    """Gathers one tick from every agent in a single batched round."""

    def __init__(self, agents: Sequence[AgentRef], *, timeout_s: float = 5.0) -> None:
        self.agents = list(agents)
        self.timeout_s = timeout_s
        # A call still running from an earlier tick is awaited again, not duplicated, so a
        # hung agent does not pile up a queue of samples.
        self._inflight: dict[int, Any] = {}
        self._status: dict[str, str] = {}

    def __call__(self) -> list[NodeTelemetry]:
        return self.collect().samples

    def collect(self) -> TelemetryTick:
        started = time.time()
        t0 = time.perf_counter()
        calls = 0
        refs: list[Any] = []
        for i, agent in enumerate(self.agents):
            ref = self._inflight.get(i)
            if ref is None:
                ref = agent.actor.sample_all.remote()
                self._inflight[i] = ref
                calls += 1
            refs.append(ref)
        ready: set[Any] = set()
        if refs:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
            ready = set(done)
        answered = [i for i, ref in enumerate(refs) if ref in ready]
        results = self._get(answered, refs)
        samples: list[NodeTelemetry] = []
        for i, agent in enumerate(self.agents):
            if i in results:
                self._inflight.pop(i, None)
                got = results[i]
                if isinstance(got, list):
                    samples.extend(got)
                    continue
                reason = got
            else:
                reason = f"no answer within {self.timeout_s:g} s"
            samples.extend(NodeTelemetry.unreachable(n, reason, started) for n in agent.nodes)
        self._log_changes(samples)
        unreachable = sum(not s.reachable for s in samples)
        return TelemetryTick(samples, started, time.perf_counter() - t0, calls, unreachable)

    def _get(self, answered: list[int], refs: list[Any]) -> dict[int, list[NodeTelemetry] | str]:
        """Results by agent index: a list of samples, or why there is none."""
        try:  # the common case, one round trip for every answer
            values = ray.get([refs[i] for i in answered])
            return dict(zip(answered, values, strict=True))
        except RayError:
            pass
        out: dict[int, list[NodeTelemetry] | str] = {}
        for i in answered:
            try:
                out[i] = ray.get(refs[i])
            except RayTaskError as exc:
                self._inflight.pop(i, None)
                out[i] = f"agent failed: {type(exc.cause).__name__}: {exc.cause}"
            except RayError as exc:
                self._inflight.pop(i, None)
                out[i] = f"agent gone: {type(exc).__name__}"
        return out

    def _log_changes(self, samples: Sequence[NodeTelemetry]) -> None:
        """Log a node's source when it changes (ok → unavailable → unreachable → ok)."""
        for s in samples:
            kind = s.source.split(":", 1)[0]
            before = self._status.get(s.node)
            if before == kind:
                continue
            self._status[s.node] = kind
            if kind == UNREACHABLE or (kind == UNAVAILABLE and before is not None):
                log.warning("telemetry: node %s is %s", s.node, s.source)
            elif kind == UNAVAILABLE:
                log.warning("telemetry: node %s has no NVML (%s)", s.node, s.source)
            elif before is not None:
                log.info("telemetry: node %s reports through NVML again", s.node)


def gpu_ray_nodes(resource: str = "GPU") -> list[dict[str, Any]]:
    """Alive Ray nodes offering `resource` (Ray's GPU count, or a custom resource)."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get(resource, 0) > 0]


def spawn_gpu_agents(
    nvml_factory: NvmlFactory | None = None,
    *,
    resource: str = "GPU",
) -> list[AgentRef]:
    """One agent pinned to each Ray node that has GPUs (hard node affinity).

    Agents are owned by the caller (the controller actor): they die with it and a
    restarted controller spawns a fresh set. Each names itself after its Kubernetes node.
    """
    nodes = gpu_ray_nodes(resource)
    if not nodes:
        log.warning(
            "telemetry: no Ray node offers %r; GPU power stays at nameplate values", resource
        )
        return []
    actors = [
        TelemetryAgent.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
        ).remote(None, nvml_factory)
        for n in nodes
    ]
    hosted = ray.get([a.nodes.remote() for a in actors])
    return [AgentRef(a, tuple(h)) for a, h in zip(actors, hosted, strict=True)]


def spawn_local_agents(
    nodes: Sequence[str],
    nvml_factory: NvmlFactory,
    *,
    nodes_per_agent: int = 100,
    retry_s: float = 300.0,
) -> list[AgentRef]:
    """Simulated nodes on the local Ray: `nodes_per_agent` nodes per agent process.

    Returns once every agent is up."""
    if nodes_per_agent < 1:
        raise ValueError("nodes_per_agent must be at least 1")
    chunks = [tuple(nodes[i : i + nodes_per_agent]) for i in range(0, len(nodes), nodes_per_agent)]
    actors = [TelemetryAgent.remote(list(c), nvml_factory, retry_s=retry_s) for c in chunks]
    # Wait until every agent is up, so the first tick does not count start-up as silence.
    ray.get([a.nodes.remote() for a in actors])
    return [AgentRef(a, c) for a, c in zip(actors, chunks, strict=True)]
