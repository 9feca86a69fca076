"""Smoke tests proving the tier-2 control plane is the real thing.

Each behaviour hashpivot relies on comes from a different component: KWOK keeps fake GPU
nodes Ready and runs their pods, kube-scheduler fits pods to `nvidia.com/gpu` capacity (and
reports the shortfall that hashpivot reads as AI demand), kube-controller-manager runs
DaemonSets, Deployments and the disruption controller behind PodDisruptionBudgets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .cluster import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    H100,
    NODE_PREFIX_LABEL,
    KwokCluster,
    add_gpu_nodes,
    delete_nodes,
    name_of,
    node_is_ready,
    node_of,
    phase_of,
    wait_until,
)

pytestmark = pytest.mark.tier2

# Generous deadlines: they bound a hung test, they are not performance assertions.
TIMEOUT = 120.0
MODE_LABEL = "hashpivot.test/mode"
# Never pulled: KWOK fakes the kubelet, so the image only has to be a valid reference.
IMAGE = "registry.k8s.io/pause:3.10"


@pytest.fixture
def api(kwok_cluster: KwokCluster) -> Iterator[client.ApiClient]:
    api_client = kwok_cluster.api_client()
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def node_prefix(api: client.ApiClient) -> Iterator[str]:
    """A node-name prefix private to the test; its nodes are deleted afterwards."""
    prefix = f"gpu-{uuid.uuid4().hex[:6]}"
    yield prefix
    delete_nodes(api, prefix)


def _container(gpus: int = 0) -> client.V1Container:
    resources = client.V1ResourceRequirements(
        requests={"cpu": "100m", "memory": "64Mi"},
        # Extended resources are requested through limits (requests default to them).
        limits={GPU_RESOURCE: str(gpus)} if gpus else None,
    )
    return client.V1Container(name="main", image=IMAGE, resources=resources)


def _pod(name: str, prefix: str, gpus: int) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "gpu-job"}),
        spec=client.V1PodSpec(
            containers=[_container(gpus)],
            # Pin to this test's nodes: other tests share the cluster.
            node_selector={NODE_PREFIX_LABEL: prefix},
        ),
    )


NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def _not_ready_taints(node: client.V1Node) -> list[client.V1Taint]:
    taints = (node.spec and node.spec.taints) or []
    return [t for t in taints if t.key in NOT_READY_TAINTS]


def _wait_nodes_ready(core: client.CoreV1Api, prefix: str, count: int) -> list[client.V1Node]:
    def ready() -> list[client.V1Node] | None:
        nodes = core.list_node(label_selector=f"{NODE_PREFIX_LABEL}={prefix}").items
        # The node lifecycle controller lifts its not-ready taint a moment after the
        # node reports Ready; until then nothing schedules there.
        ok = [n for n in nodes if node_is_ready(n) and not _not_ready_taints(n)]
        return ok if len(ok) == count else None

    return wait_until(ready, timeout=TIMEOUT, what=f"{count} Ready nodes {prefix}-*")


def _unschedulable_message(pod: client.V1Pod) -> str | None:
    for cond in (pod.status and pod.status.conditions) or []:
        if (
            cond.type == "PodScheduled"
            and cond.status == "False"
            and cond.reason == "Unschedulable"
        ):
            return str(cond.message)
    return None


def _labels(obj: client.V1Node) -> dict[str, str]:
    return dict((obj.metadata and obj.metadata.labels) or {})


def test_kwok_gpu_nodes_become_ready(api: client.ApiClient, node_prefix: str) -> None:
    core = client.CoreV1Api(api)
    names = add_gpu_nodes(api, node_prefix, 5)

    nodes = _wait_nodes_ready(core, node_prefix, 5)

    assert sorted(name_of(n) for n in nodes) == sorted(names)
    for node in nodes:
        assert node.status and node.status.allocatable
        assert node.status.allocatable[GPU_RESOURCE] == "8"
        assert _labels(node)[GPU_PRODUCT_LABEL] == H100
        assert _labels(node)["type"] == "kwok"
        assert not (node.spec and node.spec.taints), "fake nodes must not need tolerations"


def test_gpu_pods_fill_capacity_and_the_rest_pend_as_demand(
    api: client.ApiClient, node_prefix: str, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(api)
    add_gpu_nodes(api, node_prefix, 5)
    _wait_nodes_ready(core, node_prefix, 5)

    for i in range(6):
        core.create_namespaced_pod(k8s_namespace, _pod(f"job-{i}", node_prefix, gpus=8))

    def five_running_one_pending() -> tuple[list[client.V1Pod], client.V1Pod] | None:
        pods = core.list_namespaced_pod(k8s_namespace).items
        running = [p for p in pods if phase_of(p) == "Running"]
        pending = [p for p in pods if phase_of(p) == "Pending"]
        if len(running) == 5 and len(pending) == 1 and _unschedulable_message(pending[0]):
            return running, pending[0]
        return None

    running, pending = wait_until(
        five_running_one_pending, timeout=TIMEOUT, what="5 GPU pods Running and 1 Pending"
    )
    # One 8-GPU pod per 8-GPU node: the scheduler really counted nvidia.com/gpu.
    assert len({node_of(p) for p in running}) == 5
    assert node_of(pending) is None
    assert f"Insufficient {GPU_RESOURCE}" in (_unschedulable_message(pending) or "")

    # Freeing a node lets the pending pod schedule: the demand signal clears.
    core.delete_namespaced_pod(name_of(running[0]), k8s_namespace)
    waiting = name_of(pending)
    wait_until(
        lambda: phase_of(core.read_namespaced_pod(waiting, k8s_namespace)) == "Running",
        timeout=TIMEOUT,
        what=f"pending pod {waiting} to run once GPUs were freed",
    )


def test_daemonset_lands_only_on_labelled_nodes(
    api: client.ApiClient, node_prefix: str, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    names = add_gpu_nodes(api, node_prefix, 5)
    _wait_nodes_ready(core, node_prefix, 5)
    for name in names[:2]:
        core.patch_node(name, {"metadata": {"labels": {MODE_LABEL: "mine"}}})

    labels = {"app": "miner"}
    ds = client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="miner"),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[_container()],
                    node_selector={MODE_LABEL: "mine", NODE_PREFIX_LABEL: node_prefix},
                ),
            ),
        ),
    )
    apps.create_namespaced_daemon_set(k8s_namespace, ds)

    def miner_nodes(expected: int) -> set[str | None] | None:
        status = apps.read_namespaced_daemon_set_status("miner", k8s_namespace).status
        if not status or status.desired_number_scheduled != expected:
            return None
        if status.number_ready != expected:
            return None
        pods = core.list_namespaced_pod(k8s_namespace, label_selector="app=miner").items
        running = [p for p in pods if phase_of(p) == "Running"]
        return {node_of(p) for p in running} if len(running) == expected else None

    nodes = wait_until(lambda: miner_nodes(2), timeout=TIMEOUT, what="miner on 2 nodes")
    assert nodes == set(names[:2])

    # Labelling one more node extends the DaemonSet to it, and to it only.
    core.patch_node(names[2], {"metadata": {"labels": {MODE_LABEL: "mine"}}})
    nodes = wait_until(lambda: miner_nodes(3), timeout=TIMEOUT, what="miner on 3 nodes")
    assert nodes == set(names[:3])


def test_eviction_under_pdb_answers_429(
    api: client.ApiClient, node_prefix: str, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    policy = client.PolicyV1Api(api)
    add_gpu_nodes(api, node_prefix, 3)
    _wait_nodes_ready(core, node_prefix, 3)

    labels = {"app": "inference"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="inference"),
        spec=client.V1DeploymentSpec(
            replicas=3,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[_container(gpus=1)],
                    node_selector={NODE_PREFIX_LABEL: node_prefix},
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(k8s_namespace, deployment)

    def ready_replicas() -> int:
        status = apps.read_namespaced_deployment_status("inference", k8s_namespace).status
        return (status and status.ready_replicas) or 0

    wait_until(lambda: ready_replicas() == 3, timeout=TIMEOUT, what="3 ready replicas")

    pdb = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="inference"),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=3, selector=client.V1LabelSelector(match_labels=labels)
        ),
    )
    policy.create_namespaced_pod_disruption_budget(k8s_namespace, pdb)

    def pdb_allows(disruptions: int) -> bool:
        current = policy.read_namespaced_pod_disruption_budget("inference", k8s_namespace)
        status, meta = current.status, current.metadata
        return bool(
            status
            and meta
            and status.observed_generation == meta.generation
            and status.current_healthy == 3
            and status.disruptions_allowed == disruptions
        )

    # The disruption controller (kube-controller-manager) must have computed the budget.
    wait_until(lambda: pdb_allows(0), timeout=TIMEOUT, what="PDB processed, 0 disruptions")

    pods = core.list_namespaced_pod(k8s_namespace, label_selector="app=inference").items
    victim = name_of(pods[0])
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=victim, namespace=k8s_namespace))
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(victim, k8s_namespace, eviction)
    assert refused.value.status == 429
    assert "disruption budget" in str(refused.value.body)
    still = core.read_namespaced_pod(victim, k8s_namespace)
    assert still.metadata and still.metadata.deletion_timestamp is None

    # Control: once the budget allows one disruption, the same eviction is accepted.
    policy.patch_namespaced_pod_disruption_budget(
        "inference", k8s_namespace, {"spec": {"minAvailable": 2}}
    )
    wait_until(lambda: pdb_allows(1), timeout=TIMEOUT, what="PDB allowing 1 disruption")
    core.create_namespaced_pod_eviction(victim, k8s_namespace, eviction)
    wait_until(
        lambda: _deleting_or_gone(core, victim, k8s_namespace),
        timeout=TIMEOUT,
        what=f"evicted pod {victim} to be deleted",
    )


def _deleting_or_gone(core: client.CoreV1Api, name: str, namespace: str) -> bool:
    try:
        pod = core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return bool(pod.metadata and pod.metadata.deletion_timestamp)
