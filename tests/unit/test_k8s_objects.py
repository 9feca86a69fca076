"""Tier 0: reading nodes and pods, and what hashpivot writes on nodes (pure functions)."""

from __future__ import annotations

import math

import pytest

from orchestrator.adapters.k8s.objects import (
    DECISION_ANNOTATION,
    MINING_TAINT_KEY,
    MODE_LABEL,
    REASON_ANNOTATION,
    SINCE_ANNOTATION,
    STATE_ANNOTATION,
    TARGET_ANNOTATION,
    UNREADABLE_LEASE_S,
    Provenance,
    format_micro_time,
    format_time,
    node_patch,
    node_view,
    parse_time,
    pod_gpus,
    pod_view,
    quantity,
    shape_of,
    slim_pod,
)
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.modes import Mode, NodeState

CFG = KubernetesConfig()


def _pod(**spec_extra: object) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {}, "annotations": {}},
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}], **spec_extra},
        "status": {"phase": "Pending"},
    }


def _node(labels=None, annotations=None, taints=None, rv="7") -> dict[str, object]:
    return {
        "metadata": {
            "name": "n1",
            "resourceVersion": rv,
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": {"nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_time_round_trip_and_bad_input() -> None:
    t = 1_735_689_600.0  # 2025-01-01T00:00:00Z
    assert format_time(t) == "2025-01-01T00:00:00Z"
    assert parse_time(format_time(t)) == t
    assert parse_time(format_micro_time(t + 0.25)) == pytest.approx(t + 0.25)
    assert parse_time("2025-01-01T01:00:00+01:00") == t
    assert parse_time("2025-01-01T00:00:00") == t  # naive means UTC
    for bad in ("", "tomorrow", None, 12):
        assert parse_time(bad) is None


def test_quantities() -> None:
    assert quantity("8") == 8.0
    assert quantity(4) == 4.0
    assert quantity("500m") == 0.5
    assert quantity("2k") == 2000.0
    assert quantity("junk") == 0.0
    assert quantity(None) == 0.0
    # Not a count a pod or node can hold: read as none.
    for bad in ("NaN", "inf", "-1", "-500m", float("nan"), -2, True):
        assert quantity(bad) == 0.0, bad


def test_pod_gpus_limits_requests_and_init_containers() -> None:
    assert pod_gpus(_pod()) == 2.0
    both = _pod()
    both["spec"]["containers"].append(  # type: ignore[index]
        {"resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}
    )
    assert pod_gpus(both) == 3.0
    init = _pod(initContainers=[{"resources": {"limits": {"nvidia.com/gpu": "4"}}}])
    assert pod_gpus(init) == 4.0  # the largest init container outweighs the app's 2
    assert pod_gpus({"spec": {"containers": [{"name": "cpu"}]}}) == 0.0


def test_pod_view_interruptible_price_lease_and_model() -> None:
    pod = _pod(nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    pod["metadata"]["labels"] = {CFG.interruptible_label: "true"}  # type: ignore[index]
    pod["metadata"]["annotations"] = {  # type: ignore[index]
        CFG.price_annotation: "2.75",
        CFG.lease_annotation: "2025-01-01T00:00:00Z",
        CFG.duration_annotation: "3",
    }
    view = pod_view(pod, CFG)
    assert view.interruptible
    assert view.offered_usd_per_gpu_hour == 2.75
    assert view.expected_duration_h == 3.0
    assert view.lease_until == 1_735_689_600.0
    assert view.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert view.is_ai and view.is_pending
    assert view.key == "ns/p"
    assert not view.evictable(1_735_689_600.0 - 1)  # inside the lease
    assert view.evictable(1_735_689_600.0 + 1)


def test_priority_class_marks_interruptible_and_bad_lease_protects() -> None:
    pod = _pod(priorityClassName="preemptible")
    pod["metadata"]["annotations"] = {CFG.lease_annotation: "next week"}  # type: ignore[index]
    view = pod_view(pod, CFG)
    assert view.interruptible
    assert view.lease_until == UNREADABLE_LEASE_S
    assert not view.evictable(2e9)
    assert not pod_view(_pod(), CFG).interruptible


def test_affinity_with_one_product_is_read_several_are_any() -> None:
    def affinity(values: list[str]) -> dict[str, object]:
        expr = {"key": "nvidia.com/gpu.product", "operator": "In", "values": values}
        terms = {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}

    assert pod_view(_pod(affinity=affinity(["A"])), CFG).gpu_product == "A"
    assert pod_view(_pod(affinity=affinity(["A", "B"])), CFG).gpu_product is None


def test_daemonset_pods_are_not_ai_and_deleting_pods_not_pending() -> None:
    pod = _pod()
    pod["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "dcgm"}]  # type: ignore[index]
    assert not pod_view(pod, CFG).is_ai
    gone = _pod()
    gone["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"  # type: ignore[index]
    v = pod_view(gone, CFG)
    assert v.deleting and not v.is_pending and not v.evictable(0.0)


def test_slim_pod_keeps_gpu_and_miner_pods_only() -> None:
    cpu = {"metadata": {"name": "c", "namespace": "x"}, "spec": {"containers": [{}]}}
    assert slim_pod(cpu, CFG) is None
    miner = {
        "metadata": {
            "name": "m",
            "namespace": CFG.namespace,
            "ownerReferences": [{"kind": "DaemonSet", "name": CFG.miner_daemonset}],
        },
        "spec": {"containers": [{}], "nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    assert slim_pod(miner, CFG) is not None
    full = _pod(priorityClassName="preemptible")
    full["metadata"]["annotations"] = {  # type: ignore[index]
        CFG.lease_annotation: "2025-01-01T00:00:00Z",
        "unrelated/big": "x" * 1000,
    }
    slim = slim_pod(full, CFG)
    assert slim is not None
    assert "unrelated/big" not in slim["metadata"]["annotations"]
    assert pod_view(slim, CFG) == pod_view(full, CFG)


def test_shape_of_every_state() -> None:
    assert shape_of(NodeState.MINING) == ("mine", True)
    assert shape_of(NodeState.STARTING_MINE) == ("mine", True)
    assert shape_of(NodeState.STOPPING_MINE) == ("idle", True)
    assert shape_of(NodeState.IDLE) == ("idle", True)
    assert shape_of(NodeState.STARTING_AI) == ("ai", False)
    assert shape_of(NodeState.AI) == ("ai", False)
    assert shape_of(NodeState.DRAINING_AI) == ("idle", True)


def test_node_view_reads_state_or_infers_it() -> None:
    v = node_view(
        _node(annotations={STATE_ANNOTATION: "DRAINING_AI", TARGET_ANNOTATION: "mine"}), CFG
    )
    assert v.state == NodeState.DRAINING_AI and v.state_recorded and v.target == Mode.MINE
    assert v.gpus == 8.0 and v.ready and not v.opt_out
    assert node_view(_node(labels={MODE_LABEL: "mine"}), CFG).state == NodeState.MINING
    assert node_view(_node(), CFG).state == NodeState.IDLE
    assert node_view(_node(), CFG, has_ai_pods=True).state == NodeState.AI
    bad = node_view(_node(annotations={STATE_ANNOTATION: "FLYING"}, labels={MODE_LABEL: "ai"}), CFG)
    assert bad.state == NodeState.AI and not bad.state_recorded
    assert node_view(_node(labels={CFG.opt_out_label: "true"}), CFG).opt_out
    cordoned = _node()
    cordoned["spec"]["unschedulable"] = True  # type: ignore[index]
    assert node_view(cordoned, CFG).opt_out


def test_node_patch_writes_shape_state_and_provenance_conditionally() -> None:
    other_taint = {"key": "gpu-maint", "effect": "NoExecute"}
    view = node_view(_node(labels={MODE_LABEL: "ai"}, taints=[other_taint]), CFG)
    patch = node_patch(
        view, NodeState.DRAINING_AI, Mode.MINE, now_s=100.0, provenance=Provenance("d-1", "WHY")
    )
    assert patch is not None
    assert patch["metadata"]["resourceVersion"] == "7"
    assert patch["metadata"]["labels"] == {MODE_LABEL: "idle"}
    notes = patch["metadata"]["annotations"]
    assert notes[STATE_ANNOTATION] == "DRAINING_AI"
    assert notes[TARGET_ANNOTATION] == "mine"
    assert notes[SINCE_ANNOTATION] == format_time(100.0)
    assert notes[DECISION_ANNOTATION] == "d-1" and notes[REASON_ANNOTATION] == "WHY"
    keys = [t["key"] for t in patch["spec"]["taints"]]
    assert keys == ["gpu-maint", MINING_TAINT_KEY]  # other taints kept


def test_node_patch_is_none_in_shape_and_removes_only_our_taint() -> None:
    annotations = {
        STATE_ANNOTATION: "MINING",
        TARGET_ANNOTATION: "mine",
        SINCE_ANNOTATION: format_time(5.0),
    }
    taints = [{"key": MINING_TAINT_KEY, "value": "true", "effect": "NoSchedule"}, {"key": "x"}]
    view = node_view(
        _node(labels={MODE_LABEL: "mine"}, annotations=annotations, taints=taints), CFG
    )
    assert node_patch(view, NodeState.MINING, Mode.MINE, now_s=9.0, provenance=None) is None
    patch = node_patch(view, NodeState.AI, Mode.AI, now_s=9.0, provenance=None)
    assert patch is not None
    assert patch["spec"]["taints"] == [{"key": "x"}]
    assert DECISION_ANNOTATION not in patch["metadata"]["annotations"]  # not a new switch


def test_lease_far_future_is_finite() -> None:
    assert math.isfinite(UNREADABLE_LEASE_S)
    assert format_time(UNREADABLE_LEASE_S).startswith("9999-12-31")


def test_only_a_pod_in_phase_pending_without_a_node_is_pending() -> None:
    # Phases sort around "Pending" ("Failed" before, "Running", "Succeeded", "Unknown"
    # after): each is named, so no ordering of the names decides.
    for phase in ("Pending", "Failed", "Running", "Succeeded", "Unknown"):
        pod = _pod()
        pod["status"] = {"phase": phase}
        assert pod_view(pod, CFG).is_pending == (phase == "Pending"), phase
    placed = _pod(nodeName="n1")
    assert not pod_view(placed, CFG).is_pending


def test_a_pod_is_ai_work_from_one_gpu_up_and_never_without_one() -> None:
    def with_gpus(count: str) -> dict[str, object]:
        pod = _pod()
        pod["spec"] = {"containers": [{"resources": {"limits": {"nvidia.com/gpu": count}}}]}
        return pod

    assert pod_view(with_gpus("1"), CFG).is_ai
    assert pod_view(with_gpus("8"), CFG).is_ai
    assert not pod_view(with_gpus("0"), CFG).is_ai
    no_gpu = _pod()
    no_gpu["spec"] = {"containers": [{"name": "web"}]}
    assert pod_view(no_gpu, CFG).gpus == 0.0
    assert not pod_view(no_gpu, CFG).is_ai


def test_a_lease_protects_until_its_end_and_not_at_it() -> None:
    pod = _pod()
    pod["metadata"]["labels"] = {CFG.interruptible_label: "true"}  # type: ignore[index]
    pod["metadata"]["annotations"] = {CFG.lease_annotation: "2025-01-01T00:00:00Z"}  # type: ignore[index]
    view = pod_view(pod, CFG)
    end = 1_735_689_600.0  # 2025-01-01T00:00:00Z
    assert view.lease_protected(end - 0.001) and not view.evictable(end - 0.001)
    assert not view.lease_protected(end) and view.evictable(end)


def test_a_pod_without_a_lease_or_a_uid_reads_as_having_none() -> None:
    pod = _pod()
    del pod["metadata"]["uid"]  # type: ignore[attr-defined]
    view = pod_view(pod, CFG)
    # No lease is 0 (the epoch), and an eviction without a uid carries no precondition.
    assert view.lease_until == 0.0
    assert view.uid == ""
