"""Tier 0/1: Kueue Workloads whose pods are matched in ways the batch-Job path does not
cover: plain pods Kueue manages (its pod integration, which Deployments and StatefulSets
use: the Workload is owned by the pod itself), and a pass whose Workload read fails."""

from __future__ import annotations

from orchestrator.adapters.k8s.actuator import NodeTarget
from orchestrator.adapters.k8s.api import ApiError, Obj
from orchestrator.adapters.k8s.objects import STATE_ANNOTATION
from orchestrator.models.modes import Mode
from tests.doubles.k8s import FakeKube
from tests.unit.test_k8s_kueue import (
    K8S,
    Objects,
    fleet,
    kueue_actuator,
    ray_cluster,
    ray_path,
    setup_queue,
    wl_path,
    workload,
)


def pod_workload(kube: FakeKube, objects: Objects, name: str, *, interruptible: bool) -> Obj:
    """A pod on n0 and the Workload Kueue's pod integration makes for it (owned by the pod)."""
    labels = {"kueue.x-k8s.io/managed": "true", "kueue.x-k8s.io/queue-name": "gpu-queue"}
    if interruptible:
        labels[K8S.interruptible_label] = "true"
    pod = kube.add_pod("team-a", name, gpus=4, node="n0", labels=labels)
    wl = workload(name, count=1, gpus=4, admitted_on="h100", labels=labels,
                  owner_uid=pod["metadata"]["uid"])
    wl["metadata"]["ownerReferences"][0].update(apiVersion="v1", kind="Pod", name=name)
    objects.put(wl_path(wl), wl)
    return wl


def active_of(objects: Objects) -> dict[str, bool]:
    return {p.split("/")[-1]: bool(o["spec"]["active"]) for p, o in objects.objs.items()
            if "/workloads/" in p}


def test_a_kueue_managed_pod_leaves_through_kueue_and_a_protected_one_is_waited_for() -> None:
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    setup_queue(objects, {"h100": 8})
    cheap = pod_workload(kube, objects, "cheap", interruptible=True)
    paying = pod_workload(kube, objects, "paying", interruptible=False)
    result = kueue_actuator(kube, objects).apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    assert kube.nodes["n0"]["metadata"]["annotations"][STATE_ANNOTATION] == "DRAINING_AI"
    cheap_name, paying_name = cheap["metadata"]["name"], paying["metadata"]["name"]
    assert active_of(objects) == {cheap_name: False, paying_name: True}
    assert "deactivated" in result.notes[f"workload/team-a/{cheap_name}"]
    assert "protected" in result.notes[f"workload/team-a/{paying_name}"]
    # Kueue requeues a deactivated Workload; an evicted pod it would only see fail.
    assert kube.evictions == []


def test_unreadable_workloads_evict_no_pod_of_an_admitted_workload() -> None:
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    setup_queue(objects, {"h100": 8})
    wl = workload("cheap", count=1, gpus=4, admitted_on="h100",
                  labels={K8S.interruptible_label: "true"})
    objects.put(wl_path(wl), wl)
    job = wl["metadata"]["ownerReferences"][0]
    kube.add_pod("team-a", "cheap-0", gpus=4, node="n0",
                 labels={K8S.interruptible_label: "true"})
    kube.set_pod("team-a", "cheap-0", lambda p: p["metadata"].update(
        ownerReferences=[{"kind": "Job", "name": job["name"], "uid": job["uid"]}]))
    objects.fail = lambda path: (ApiError(503, "unavailable") if path.endswith("/workloads")
                                 else None)
    result = kueue_actuator(kube, objects).apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    assert "503" in result.errors["kueue"]
    # Which pods Kueue admitted is unknown this pass: none leaves through the Eviction API.
    assert kube.evictions == []
    assert active_of(objects) == {wl["metadata"]["name"]: True}


def test_without_the_cluster_queue_a_node_leaves_ai_all_the_same() -> None:
    """A ClusterQueue that does not exist (deleted, misnamed) admits nothing: there is no
    quota to lower first, and the node must not be kept in AI for ever waiting for one."""
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    result = kueue_actuator(kube, objects).apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    assert kube.nodes["n0"]["metadata"]["annotations"][STATE_ANNOTATION] != "AI"
    assert "lowered first" not in result.deferred.get("n0", "")
    assert "not found" in result.errors["clusterqueue/gpu-cq"]


def test_a_cluster_queue_without_gpu_quota_does_not_keep_a_node_in_ai() -> None:
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    setup_queue(objects, {"h100": 8})
    cq = objects.objs["/apis/kueue.x-k8s.io/v1beta2/clusterqueues/gpu-cq"]
    for group in cq["spec"]["resourceGroups"]:
        for flavor in group["flavors"]:
            flavor["resources"] = [r for r in flavor["resources"]
                                   if r["name"] != "nvidia.com/gpu"]
    result = kueue_actuator(kube, objects).apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    assert kube.nodes["n0"]["metadata"]["annotations"][STATE_ANNOTATION] != "AI"
    assert "no nvidia.com/gpu quota" in result.errors["clusterqueue/gpu-cq"]


def test_an_admitted_rayjob_leaves_through_kueue_by_the_raycluster_it_made() -> None:
    """Kueue's Workload for a RayJob names the RayJob; the pods name the RayCluster the
    RayJob made. With `kuberay.enabled` the RayCluster links the two."""
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    setup_queue(objects, {"h100": 8})
    labels = {K8S.interruptible_label: "true"}
    rayjob_uid = "rj-train"
    wl = workload("train", count=1, gpus=4, admitted_on="h100", labels=labels,
                  owner_uid=rayjob_uid)
    wl["metadata"]["ownerReferences"][0].update(apiVersion="ray.io/v1", kind="RayJob",
                                                name="train")
    objects.put(wl_path(wl), wl)
    cluster = ray_cluster("train-raycluster", workers=1, gpus=4, owner_uid=rayjob_uid)
    objects.put(ray_path(cluster), cluster)
    kube.add_pod("team-b", "train-worker-0", gpus=4, node="n0", labels=labels)
    kube.set_pod("team-b", "train-worker-0", lambda p: p["metadata"].update(
        ownerReferences=[{"kind": "RayCluster", "name": "train-raycluster",
                          "uid": cluster["metadata"]["uid"]}]))
    result = kueue_actuator(kube, objects).apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    name = wl["metadata"]["name"]
    assert active_of(objects) == {name: False}
    assert "deactivated" in result.notes[f"workload/team-a/{name}"]
    assert kube.evictions == []
