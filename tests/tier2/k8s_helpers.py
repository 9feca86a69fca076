"""Helpers of the tier-2 tests of the Kubernetes adapter (hashpivot's own objects)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kubernetes import client

from orchestrator.adapters.k8s import (
    ClusterCache,
    KubeActuator,
    KubeClient,
    NodeTarget,
    ensure_miner_daemonset,
    miner_daemonset_manifest,
)
from orchestrator.adapters.k8s.objects import MINING_TAINT_KEY, MODE_LABEL, STATE_ANNOTATION
from orchestrator.models.config import KubernetesConfig
from orchestrator.ports import ActuationResult

from .cluster import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    H100,
    NODE_PREFIX_LABEL,
    KwokCluster,
    add_gpu_nodes,
    delete_nodes,
    wait_until,
)

# Deadlines bound a hung test; they are not performance assertions.
TIMEOUT = 180.0
IMAGE = "registry.k8s.io/pause:3.10"
MINER = "hashpivot-miner"
MINER_SELECTOR = f"app.kubernetes.io/name={MINER}"


def hp_config(namespace: str, prefix: str, **overrides: Any) -> KubernetesConfig:
    """hashpivot's settings for one test: its namespace, its nodes only, fast writes."""
    values: dict[str, Any] = {
        "namespace": namespace,
        "node_selector": f"{NODE_PREFIX_LABEL}={prefix}",
        "miner_daemonset": MINER,
        "qps": 200.0,
        "burst": 400,
        "lease_name": f"hashpivot-{prefix}",
    }
    values.update(overrides)
    return KubernetesConfig(**values)


def start_miner(kube: KubeClient, config: KubernetesConfig, prefix: str) -> None:
    body = miner_daemonset_manifest(config, IMAGE, node_selector={NODE_PREFIX_LABEL: prefix})
    assert ensure_miner_daemonset(kube, body)


def start_cache(kube: KubeClient, config: KubernetesConfig) -> ClusterCache:
    cache = ClusterCache(kube, config, watch_timeout_s=30.0).start()
    assert cache.wait_synced(60.0), "node and pod caches did not sync"
    return cache


def gpu_pod(
    name: str,
    prefix: str,
    gpus: int = 8,
    *,
    node: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    priority_class: str | None = None,
) -> client.V1Pod:
    """An AI pod for this test's nodes: no toleration, so it never lands on a tainted node."""
    selector = {NODE_PREFIX_LABEL: prefix, GPU_PRODUCT_LABEL: H100}
    if node:
        selector["kubernetes.io/hostname"] = node
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels={"app": "gpu-job", **(labels or {})}, annotations=annotations
        ),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main",
                    image=IMAGE,
                    resources=client.V1ResourceRequirements(
                        requests={"cpu": "100m", "memory": "64Mi"},
                        limits={GPU_RESOURCE: str(gpus)},
                    ),
                )
            ],
            node_selector=selector,
            priority_class_name=priority_class,
            termination_grace_period_seconds=0,
        ),
    )


def node_facts(core: client.CoreV1Api, prefix: str) -> dict[str, dict[str, Any]]:
    """name → mode label, state annotation, taint, annotations, for this test's nodes."""
    out = {}
    for node in core.list_node(label_selector=f"{NODE_PREFIX_LABEL}={prefix}").items:
        notes = dict(node.metadata.annotations or {})
        taints = (node.spec and node.spec.taints) or []
        out[node.metadata.name] = {
            "mode": (node.metadata.labels or {}).get(MODE_LABEL),
            "state": notes.get(STATE_ANNOTATION),
            "tainted": any(t.key == MINING_TAINT_KEY for t in taints),
            "annotations": notes,
        }
    return out


def pods_by_node(core: client.CoreV1Api, namespace: str, selector: str) -> dict[str, list[str]]:
    """Running, not deleting pods of `selector` by node."""
    out: dict[str, list[str]] = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
            out.setdefault(pod.spec.node_name, []).append(pod.metadata.name)
    return out


def drive(
    actuator: KubeActuator,
    targets: Sequence[NodeTarget],
    done: Callable[[], bool],
    *,
    decision: str = "t2",
    what: str = "nodes to converge",
    timeout: float = TIMEOUT,
    interval: float = 0.3,
) -> list[ActuationResult]:
    """Apply the same targets pass after pass (as the controller loop would) until `done`."""
    results: list[ActuationResult] = []

    def step() -> bool:
        result = actuator.apply_targets(targets, decision)
        results.append(result)
        assert not result.errors, result.errors
        return done()

    try:
        wait_until(step, timeout=timeout, interval=interval, what=what)
    except TimeoutError as exc:
        last = results[-1] if results else None
        raise AssertionError(f"{exc}; last pass: {last}") from None
    return results


def wait_for(probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    return wait_until(probe, timeout=timeout, what=what)


@contextmanager
def gpu_node_prefix(cluster: KwokCluster, tag: str, count: int) -> Iterator[str]:
    """`count` KWOK GPU nodes named after a fresh prefix starting with `tag`; removed after."""
    name = f"{tag}{uuid.uuid4().hex[:6]}"
    admin = cluster.api_client()
    try:
        add_gpu_nodes(admin, name, count)
        yield name
    finally:
        delete_nodes(admin, name)
        admin.close()  # type: ignore[no-untyped-call]
