"""Tier 0/1: AI demand from Kueue Workloads and KubeRay objects, and the ClusterQueue quota
hashpivot keeps, on objects shaped as Kueue v0.17 (kueue.x-k8s.io/v1beta2) and KubeRay v1.6
(ray.io/v1) write them; the actuator runs against the in-memory API."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.adapters.k8s.actuator import NodeTarget, ShadowActuator
from orchestrator.adapters.k8s.api import CONFLICT, NOT_FOUND, ApiError, Obj
from orchestrator.adapters.k8s.demand import KubeDemandSource
from orchestrator.adapters.k8s.kueue import (
    KUEUE_API,
    RAY_API,
    KueueActuator,
    KueueReader,
    NodeCapacity,
    desired_quota,
    gpu_quotas,
    quota_patch,
)
from orchestrator.adapters.k8s.objects import STATE_ANNOTATION
from orchestrator.adapters.k8s.ratelimit import TokenBucket
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig, KubernetesConfig
from orchestrator.models.kueue_config import KubeRayConfig, KueueConfig
from orchestrator.models.modes import Mode
from tests.doubles.k8s import FakeKube
from tests.unit.test_k8s_actuator import make_plan

NOW = 1_800_000_000.0
K8S = KubernetesConfig(namespace="hp", node_selector="", qps=1000.0, burst=1000)
CATALOG = profile_catalog(HashpivotConfig())
H100 = "NVIDIA-H100-80GB-HBM3"
#: The product label KWOK and NVIDIA's feature discovery put on H100 nodes, and the model
#: hashpivot maps it to through the configured product → profile table.
H100_PROFILE = K8S.gpu_product_profiles[H100]
H100_MODEL = CATALOG[H100_PROFILE].gpu_model
A100_PROFILE = K8S.gpu_product_profiles["NVIDIA-A100-SXM4-80GB"]


def containers(gpus: int) -> list[Obj]:
    return [{"name": "main", "image": "trainer:1",
             "resources": {"requests": {"nvidia.com/gpu": str(gpus), "cpu": "4"},
                           "limits": {"nvidia.com/gpu": str(gpus)}}}]


def workload(name: str, *, count: int = 2, gpus: int = 4, queue: str = "gpu-queue",
             admitted_on: str | None = None, active: bool = True, priority: int = 100,
             priority_class: str | None = "high", labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None, owner_uid: str | None = None,
             node_selector: dict[str, str] | None = None) -> Obj:
    """A Workload as Kueue writes it for a batch Job."""
    owner = owner_uid or f"job-uid-{name}"
    obj: Obj = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": f"job-{name}-1a2b3", "namespace": "team-a", "uid": f"wl-{name}",
            "resourceVersion": "7", "creationTimestamp": "2026-12-06T10:00:00Z",
            "labels": {"kueue.x-k8s.io/job-uid": owner},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                 "uid": owner, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "active": active,
            "queueName": queue,
            "priority": priority,
            "podSets": [{
                "name": "main",
                "count": count,
                "template": {
                    "metadata": {"labels": dict(labels or {}),
                                 "annotations": dict(annotations or {})},
                    "spec": {"restartPolicy": "Never", "containers": containers(gpus),
                             **({"nodeSelector": node_selector} if node_selector else {})},
                },
            }],
        },
        "status": {"conditions": []},
    }
    if priority_class:
        obj["spec"]["priorityClassRef"] = {"group": "kueue.x-k8s.io",
                                           "kind": "WorkloadPriorityClass",
                                           "name": priority_class}
    if admitted_on:
        obj["status"] = {
            "admission": {"clusterQueue": "gpu-cq", "podSetAssignments": [{
                "name": "main", "flavors": {"nvidia.com/gpu": admitted_on, "cpu": admitted_on},
                "resourceUsage": {"nvidia.com/gpu": str(count * gpus)}, "count": count}]},
            "conditions": [
                {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved",
                 "message": "", "lastTransitionTime": "2026-12-06T10:01:00Z"},
                {"type": "Admitted", "status": "True", "reason": "Admitted",
                 "message": "", "lastTransitionTime": "2026-12-06T10:01:00Z"}],
        }
    return obj


def ray_group(name: str, replicas: int, gpus: int, hosts: int = 1) -> Obj:
    return {"groupName": name, "replicas": replicas, "minReplicas": 0, "maxReplicas": 10,
            "numOfHosts": hosts, "rayStartParams": {},
            "template": {"spec": {"containers": containers(gpus)}}}


def ray_cluster(name: str, *, workers: int, gpus: int, queue: str | None = None,
                suspend: bool = False, owner_uid: str | None = None, hosts: int = 1) -> Obj:
    meta: Obj = {"name": name, "namespace": "team-b", "uid": f"rc-{name}",
                 "creationTimestamp": "2026-12-06T11:00:00Z", "labels": {}}
    if queue:
        meta["labels"]["kueue.x-k8s.io/queue-name"] = queue
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayJob",
                                    "name": "rj", "uid": owner_uid, "controller": True}]
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": meta,
        "spec": {"suspend": suspend, "rayVersion": "2.46.0",
                 "headGroupSpec": {"rayStartParams": {},
                                   "template": {"spec": {"containers": containers(0)}}},
                 "workerGroupSpecs": [ray_group("gpu", workers, gpus, hosts)]},
    }


def ray_job(name: str, *, workers: int, gpus: int, cluster: str | None = None) -> Obj:
    status: Obj = {"jobDeploymentStatus": "Initializing"}
    if cluster:
        status["rayClusterName"] = cluster
    return {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": name, "namespace": "team-b", "uid": f"rj-{name}",
                     "creationTimestamp": "2026-12-06T12:00:00Z"},
        "spec": {"entrypoint": "python train.py",
                 "rayClusterSpec": ray_cluster("x", workers=workers, gpus=gpus)["spec"]},
        "status": status,
    }


def cluster_queue(quotas: dict[str, int], rv: str = "11") -> Obj:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
        "metadata": {"name": "gpu-cq", "resourceVersion": rv},
        "spec": {"namespaceSelector": {}, "resourceGroups": [
            {"coveredResources": ["cpu"], "flavors": [
                {"name": "default-cpu", "resources": [{"name": "cpu", "nominalQuota": "64"}]}]},
            {"coveredResources": ["nvidia.com/gpu"], "flavors": [
                {"name": f, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": str(q)}]}
                for f, q in quotas.items()]},
        ]},
    }


def flavor(name: str, labels: dict[str, str]) -> Obj:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
            "metadata": {"name": name}, "spec": {"nodeLabels": labels}}


class Objects:
    """In-memory `CustomObjects`: lists by path prefix, applies merge and JSON patches."""

    def __init__(self) -> None:
        self.objs: dict[str, Obj] = {}
        self.patches: list[tuple[str, Any]] = []
        self.fail: Callable[[str], ApiError | None] = lambda path: None

    def put(self, path: str, obj: Obj) -> None:
        self.objs[path] = copy.deepcopy(obj)

    def list(self, path: str) -> list[Obj]:
        error = self.fail(path)
        if error is not None:
            raise error
        kind = path.rsplit("/", 1)[-1]
        return [copy.deepcopy(o) for p, o in self.objs.items()
                if p.startswith(path.rsplit("/", 1)[0]) and p.split("/")[-2] == kind]

    def get(self, path: str) -> Obj:
        error = self.fail(path)
        if error is not None:
            raise error
        if path not in self.objs:
            raise ApiError(NOT_FOUND, path)
        return copy.deepcopy(self.objs[path])

    def patch(self, path: str, body: Any, content_type: str) -> Obj:
        error = self.fail(path)
        if error is not None:
            raise error
        obj = self.objs[path]
        if content_type == "application/json-patch+json":
            for op in body:
                parts = op["path"].strip("/").split("/")
                where: Any = obj
                for part in parts[:-1]:
                    where = where[int(part)] if isinstance(where, list) else where[part]
                last: Any = int(parts[-1]) if isinstance(where, list) else parts[-1]
                if op["op"] == "test" and where[last] != op["value"]:
                    raise ApiError(422, "test failed")
                if op["op"] == "replace":
                    where[last] = op["value"]
        else:
            if body["metadata"]["resourceVersion"] != obj["metadata"].get("resourceVersion"):
                raise ApiError(CONFLICT, "stale")
            obj["spec"].update(body["spec"])
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        self.patches.append((path, copy.deepcopy(body)))
        return copy.deepcopy(obj)


def wl_path(obj: Obj) -> str:
    m = obj["metadata"]
    return f"{KUEUE_API}/namespaces/{m['namespace']}/workloads/{m['name']}"


def ray_path(obj: Obj) -> str:
    m = obj["metadata"]
    plural = "rayclusters" if obj["kind"] == "RayCluster" else "rayjobs"
    return f"{RAY_API}/namespaces/{m['namespace']}/{plural}/{m['name']}"


class Listing:
    """Workload and Ray listings are cluster-wide paths: map them onto the stored objects."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def list(self, path: str) -> list[Obj]:
        error = self.objects.fail(path)
        if error is not None:
            raise error
        plural = path.rsplit("/", 1)[-1]
        return [copy.deepcopy(o) for p, o in self.objects.objs.items()
                if p.split("/")[-2] == plural]

    def get(self, path: str) -> Obj:
        return self.objects.get(path)

    def patch(self, path: str, body: Any, content_type: str) -> Obj:
        return self.objects.patch(path, body, content_type)


def reader(objects: Objects, *, kueue: KueueConfig | None = None,
           kuberay: bool = True) -> KueueReader:
    return KueueReader(Listing(objects), K8S,
                       kueue or KueueConfig(enabled=True, cluster_queue="gpu-cq"),
                       KubeRayConfig(enabled=kuberay), CATALOG)


class Pods:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def pods(self) -> list[Obj]:
        return self.kube.list_pods()[0]


def demand_of(objects: Objects, kube: FakeKube | None = None, **kw: Any) -> dict[str, Any]:
    kube = kube or FakeKube()
    source = KubeDemandSource(Pods(kube), K8S, CATALOG, reader(objects, **kw))
    snap = source.demand(NOW)
    return {"source": snap.source, "jobs": {j.id: j for j in snap.pending}}


def setup_queue(objects: Objects, quotas: dict[str, int]) -> None:
    objects.put(f"{KUEUE_API}/clusterqueues/gpu-cq", cluster_queue(quotas))
    for name in quotas:
        objects.put(f"{KUEUE_API}/resourceflavors/{name}",
                    flavor(name, {"nvidia.com/gpu.product": H100} if name == "h100"
                           else {"nvidia.com/gpu.product": "other"}))


# -- demand ------------------------------------------------------------------------------------


def test_pending_workload_is_demand_with_its_pod_sets_price_priority_and_queue() -> None:
    objects = Objects()
    setup_queue(objects, {"h100": 0})
    count, gpus, price = 3, 4, 2.75
    wl = workload("train", count=count, gpus=gpus,
                  annotations={K8S.price_annotation: str(price)})
    objects.put(wl_path(wl), wl)
    jobs = demand_of(objects)["jobs"]
    job = jobs["workload:team-a/job-train-1a2b3"]
    assert job.gpus == count * gpus
    assert job.offered_usd_per_gpu_hour == price
    assert job.priority == wl["spec"]["priority"]
    assert job.queue == "team-a/gpu-queue"
    assert job.submitted_at is not None and job.submitted_at.isoformat().startswith("2026-12-06")
    # The only GPU flavor of the ClusterQueue names the product: its model.
    assert job.gpu_model == H100_MODEL


def test_price_falls_back_to_queue_then_priority_map() -> None:
    objects = Objects()
    setup_queue(objects, {"h100": 0})
    for name, queue, pclass in (("a", "gpu-queue", "high"), ("b", "shared", "high"),
                                ("c", "other", "high"), ("d", "other", "low")):
        wl = workload(name, queue=queue, priority_class=pclass)
        objects.put(wl_path(wl), wl)
    # "namespace/queue", or "queue" in any namespace.
    prices = {"team-a/gpu-queue": 3.0, "shared": 0.9}
    prio = {"high": 1.5}
    cfg = KueueConfig(enabled=True, cluster_queue="gpu-cq", queue_prices=prices,
                      priority_prices=prio)
    jobs = demand_of(objects, kueue=cfg)["jobs"]
    offered = {k.rsplit("/", 1)[1].split("-")[1]: j.offered_usd_per_gpu_hour
               for k, j in jobs.items()}
    assert offered == {"a": prices["team-a/gpu-queue"], "b": prices["shared"],
                       "c": prio["high"], "d": None}


def test_model_from_the_pod_set_node_selector_wins_over_the_flavor() -> None:
    objects = Objects()
    setup_queue(objects, {"h100": 0})
    wl = workload("sel", node_selector={K8S.profile_label: A100_PROFILE})
    objects.put(wl_path(wl), wl)
    job = demand_of(objects)["jobs"]["workload:team-a/job-sel-1a2b3"]
    assert job.gpu_model == CATALOG[A100_PROFILE].gpu_model != H100_MODEL


def test_admitted_deactivated_and_finished_workloads_are_not_pending() -> None:
    objects = Objects()
    setup_queue(objects, {"h100": 8})
    running = workload("run", admitted_on="h100")
    off = workload("off", active=False)
    done = workload("done")
    done["status"]["conditions"] = [{"type": "Finished", "status": "True", "reason": "x",
                                     "message": "", "lastTransitionTime": "2026-12-06T10:00:00Z"}]
    for wl in (running, off, done):
        objects.put(wl_path(wl), wl)
    assert demand_of(objects)["jobs"] == {}
    served = reader(objects).running()
    assert [j.id for j in served] == ["workload:team-a/job-run-1a2b3"]
    assert served[0].gpus == 2 * 4


def test_raycluster_counts_gpus_not_yet_in_pods_and_its_pods_once() -> None:
    objects = Objects()
    workers, gpus, hosts = 3, 2, 2
    rc = ray_cluster("rc", workers=workers, gpus=gpus, hosts=hosts)
    objects.put(ray_path(rc), rc)
    kube = FakeKube()
    # KubeRay has made one worker pod so far; it is pending (no node yet).
    kube.add_pod("team-b", "rc-gpu-0", gpus=gpus)
    kube.set_pod("team-b", "rc-gpu-0", lambda p: p["metadata"].update(
        ownerReferences=[{"kind": "RayCluster", "name": "rc", "uid": "rc-rc"}]))
    jobs = demand_of(objects, kube, kueue=KueueConfig(enabled=False))["jobs"]
    total = sum(j.gpus for j in jobs.values())
    assert total == workers * hosts * gpus
    assert jobs["raycluster:team-b/rc"].gpus == (workers * hosts - 1) * gpus
    assert jobs["team-b/rc-gpu-0"].gpus == gpus


def test_queued_raycluster_is_left_to_its_workload_and_rayjob_to_its_cluster() -> None:
    objects = Objects()
    queued = ray_cluster("queued", workers=2, gpus=1, queue="gpu-queue", suspend=True)
    made = ray_cluster("made", workers=1, gpus=1, owner_uid="rj-with")
    done = ray_job("done", workers=1, gpus=1)
    done["status"]["jobDeploymentStatus"] = "Complete"
    for obj in (queued, made, done, ray_job("with", workers=1, gpus=1, cluster="made"),
                ray_job("without", workers=2, gpus=2)):
        objects.put(ray_path(obj), obj)
    jobs = demand_of(objects)["jobs"]
    assert "raycluster:team-b/queued" not in jobs
    assert "rayjob:team-b/with" not in jobs
    assert "rayjob:team-b/done" not in jobs
    assert jobs["raycluster:team-b/made"].gpus == 1
    assert jobs["rayjob:team-b/without"].gpus == 2 * 2
    # Without Kueue the queue label means nothing: a suspended cluster still waits on nobody.
    assert "raycluster:team-b/queued" not in demand_of(
        objects, kueue=KueueConfig(enabled=False))["jobs"]


def test_unreadable_kueue_costs_its_share_not_the_cycle() -> None:
    objects = Objects()
    objects.fail = lambda path: ApiError(403, "forbidden") if "workloads" in path else None
    kube = FakeKube()
    kube.add_pod("t", "p", gpus=1)
    out = demand_of(objects, kube)
    assert list(out["jobs"]) == ["t/p"]
    assert "unreadable" in out["source"] and "403" in out["source"]


# -- quota -------------------------------------------------------------------------------------


def test_quota_patch_is_conditional_and_empty_when_equal() -> None:
    cq = cluster_queue({"h100": 8, "a100": 4}, rv="42")
    quotas = gpu_quotas(cq, "nvidia.com/gpu")
    assert [(q.flavor, q.quota) for q in quotas] == [("h100", 8.0), ("a100", 4.0)]
    assert quota_patch(cq, quotas, {"h100": 8, "a100": 4}) == []
    ops = quota_patch(cq, quotas, {"h100": 16, "a100": 4})
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "42"}
    assert ops[1:] == [{"op": "replace", "path": quotas[0].path, "value": "16"}]


def test_a_node_fitting_two_flavors_counts_once_for_the_first() -> None:
    cq = cluster_queue({"any": 0, "h100": 0})
    quotas = gpu_quotas(cq, "nvidia.com/gpu")
    node = NodeCapacity("n0", {"nvidia.com/gpu.product": H100}, 8.0, serving=True)
    idle = NodeCapacity("n1", {"nvidia.com/gpu.product": H100}, 8.0, serving=False)
    want = desired_quota(quotas, {"any": {}, "h100": {"nvidia.com/gpu.product": H100}},
                         [node, idle])
    assert want == {"any": node.gpus, "h100": 0.0}
    assert desired_quota(quotas, {"any": {}}, [node], leaving=frozenset({"n0"})) == {
        "any": 0.0, "h100": 0.0}


def fleet(kube: FakeKube, states: dict[str, str], gpus: int = 8) -> None:
    for name, st in states.items():
        mode = {"AI": "ai", "MINING": "mine", "IDLE": "idle"}[st]
        taints = [] if st == "AI" else [{"key": "hashpivot.io/mining", "value": "true",
                                         "effect": "NoSchedule"}]
        kube.add_node(name, gpus=gpus, labels={"nvidia.com/gpu.product": H100,
                                               "hashpivot.io/mode": mode},
                      annotations={STATE_ANNOTATION: st, "hashpivot.io/target": mode},
                      taints=taints)


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def kueue_actuator(kube: FakeKube, objects: Objects, **kw: Any) -> KueueActuator:
    clock = Clock()
    return KueueActuator(kube, K8S, reader=reader(objects), clock=clock, monotonic=clock, **kw)


def quota_now(objects: Objects, flavor_name: str = "h100") -> float:
    quotas = gpu_quotas(objects.objs[f"{KUEUE_API}/clusterqueues/gpu-cq"], "nvidia.com/gpu")
    return next(q.quota for q in quotas if q.flavor == flavor_name)


def test_quota_follows_ai_nodes_and_a_second_pass_writes_nothing() -> None:
    kube, objects = FakeKube(), Objects()
    gpus = 8
    fleet(kube, {"n0": "AI", "n1": "AI", "n2": "MINING"}, gpus=gpus)
    setup_queue(objects, {"h100": 0, "a100": 5})
    act = kueue_actuator(kube, objects)
    targets = [NodeTarget("n0", Mode.AI), NodeTarget("n1", Mode.AI), NodeTarget("n2", Mode.MINE)]
    result = act.apply_targets(targets, "d1")
    assert quota_now(objects) == 2 * gpus
    assert quota_now(objects, "a100") == 0  # no node carries the a100 flavor's labels
    assert "clusterqueue/gpu-cq" in result.notes
    writes = len(objects.patches)
    again = act.apply_targets(targets, "d2")
    assert len(objects.patches) == writes
    assert "clusterqueue/gpu-cq" not in again.notes
    # A restarted controller (a new actuator) reads the quota back and writes nothing.
    kueue_actuator(kube, objects).apply_targets(targets, "d3")
    assert len(objects.patches) == writes


def test_leaving_ai_lowers_the_quota_before_the_node_moves() -> None:
    kube, objects = FakeKube(), Objects()
    gpus = 8
    fleet(kube, {"n0": "AI", "n1": "AI"}, gpus=gpus)
    setup_queue(objects, {"h100": 2 * gpus})
    order: list[str] = []
    real_patch_node = kube.patch_node
    real_patch = objects.patch

    def patch_node(name: str, patch: Obj) -> Obj:
        order.append(f"node:{name}")
        return real_patch_node(name, patch)

    def patch(path: str, body: Any, content_type: str) -> Obj:
        order.append("quota" if "clusterqueues" in path else path)
        return real_patch(path, body, content_type)

    kube.patch_node = patch_node  # type: ignore[method-assign]
    objects.patch = patch  # type: ignore[method-assign]
    act = kueue_actuator(kube, objects)
    act.apply_targets([NodeTarget("n0", Mode.AI), NodeTarget("n1", Mode.MINE)], "d1")
    assert quota_now(objects) == gpus
    assert order[0] == "quota" and "node:n1" in order


def test_node_stays_in_ai_while_the_quota_cannot_be_lowered() -> None:
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    setup_queue(objects, {"h100": 8})
    objects.fail = lambda path: ApiError(403, "forbidden") if "clusterqueues" in path else None
    act = kueue_actuator(kube, objects)
    result = act.apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    assert kube.nodes["n0"]["metadata"]["annotations"][STATE_ANNOTATION] == "AI"
    assert "lowered first" in result.deferred["n0"]
    assert "403" in result.errors["clusterqueue/gpu-cq"]


def test_only_interruptible_workloads_on_draining_nodes_are_deactivated() -> None:
    kube, objects = FakeKube(), Objects()
    fleet(kube, {"n0": "AI"})
    setup_queue(objects, {"h100": 8})
    cheap = workload("cheap", count=1, gpus=4, admitted_on="h100",
                     labels={K8S.interruptible_label: "true"})
    leased = workload("leased", count=1, gpus=4, admitted_on="h100",
                      labels={K8S.interruptible_label: "true"},
                      annotations={K8S.lease_annotation: "2099-01-01T00:00:00Z"})
    paying = workload("paying", count=1, gpus=4, admitted_on="h100")
    for wl in (cheap, leased, paying):
        objects.put(wl_path(wl), wl)
        job = wl["metadata"]["ownerReferences"][0]
        pod = f"{job['name']}-0"
        # The pods carry the template's labels, as the Job controller makes them.
        kube.add_pod("team-a", pod, gpus=4, node="n0",
                     labels=wl["spec"]["podSets"][0]["template"]["metadata"]["labels"])
        kube.set_pod("team-a", pod, lambda p, job=job: p["metadata"].update(
            ownerReferences=[{"kind": "Job", "name": job["name"], "uid": job["uid"]}]))
    act = kueue_actuator(kube, objects)
    result = act.apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
    assert quota_now(objects) == 0
    assert kube.nodes["n0"]["metadata"]["annotations"][STATE_ANNOTATION] == "DRAINING_AI"
    active = {p.split("/")[-1]: o["spec"]["active"] for p, o in objects.objs.items()
              if "/workloads/" in p}
    assert active == {"job-cheap-1a2b3": False, "job-leased-1a2b3": True,
                      "job-paying-1a2b3": True}
    assert "deactivated" in result.notes["workload/team-a/job-cheap-1a2b3"]
    # Through Kueue only: the Eviction API would have the Job make its pod again.
    assert kube.evictions == []
    assert "protected" in result.notes["workload/team-a/job-paying-1a2b3"]


def test_no_quota_write_while_rate_limited_or_not_leading_and_the_node_stays() -> None:
    for kw in ({"limiter": TokenBucket(1e-9, 1, clock=lambda: NOW)},
               {"is_leader": lambda: False}):
        kube, objects = FakeKube(), Objects()
        fleet(kube, {"n0": "AI"})
        setup_queue(objects, {"h100": 8})
        act = kueue_actuator(kube, objects, **kw)
        if "limiter" in kw:
            assert kw["limiter"].try_acquire()  # the one token goes elsewhere
        result = act.apply_targets([NodeTarget("n0", Mode.MINE)], "d1")
        assert objects.patches == []
        assert quota_now(objects) == 8
        assert kube.nodes["n0"]["metadata"]["annotations"][STATE_ANNOTATION] == "AI"
        assert "n0" in result.deferred


def test_reconcile_between_cycles_keeps_the_quota_and_shadow_writes_none() -> None:
    kube, objects = FakeKube(), Objects()
    gpus = 8
    fleet(kube, {"n0": "AI", "n1": "AI"}, gpus=gpus)
    setup_queue(objects, {"h100": 0})
    act = kueue_actuator(kube, objects)
    ShadowActuator(act).apply(make_plan(["n0", "n1"], [Mode.AI, Mode.AI],
                                        [Mode.MINE, Mode.MINE]))
    assert objects.patches == [] and quota_now(objects) == 0
    between = act.reconcile()
    assert quota_now(objects) == 2 * gpus
    # Reconcile results are not journaled: the next cycle's result carries the change.
    plan = make_plan(["n0", "n1"], [Mode.AI, Mode.AI], [Mode.AI, Mode.AI])
    carried = act.apply(plan).notes
    assert [k for k in carried if k.startswith("clusterqueue/gpu-cq at ")] and all(
        v == between.notes["clusterqueue/gpu-cq"] for v in carried.values())
    assert act.apply(plan).notes == {}


@pytest.mark.parametrize("field,value", [("queue_prices", {"q": -1.0}),
                                         ("priority_prices", {"": 1.0})])
def test_bad_price_maps_name_the_field(field: str, value: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        KueueConfig(**{field: value})


def test_config_check_names_the_file_and_field_of_a_bad_price(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "site.yaml"
    bad.write_text("kueue:\n  enabled: true\n  queue_prices:\n    research/batch: -1\n")
    exe = Path(sys.executable).parent / "hashpivot"
    proc = subprocess.run([str(exe), "config", "check", str(bad)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0
    assert "site.yaml" in proc.stderr and "kueue.queue_prices" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    good = tmp_path / "good.yaml"
    good.write_text("kueue: {enabled: true, cluster_queue: gpus, queue_prices: {q: 1.5}}\n"
                    "kuberay: {enabled: true}\n")
    ok = subprocess.run([str(exe), "config", "check", str(good)], capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0, ok.stderr
