"""Kueue and KubeRay beside hashpivot (design §4, docs/kueue.md).

A Kueue-managed Job, RayJob or RayCluster is suspended with no pods until Kueue admits it,
and Kueue admits by its ClusterQueue quota, not by free nodes. So hashpivot reads AI demand
from pending Workloads (and from RayClusters and RayJobs not yet in pods), and hands the
capacity it puts in AI to Kueue as quota: the configured ClusterQueue's GPU quota per
ResourceFlavor equals the GPUs of the nodes hashpivot has in AI and ready. Leaving AI, the
quota is lowered first (Kueue admits nothing new there), then admitted Workloads on the
nodes leaving are waited for, or deactivated through Kueue (so it requeues them) when they
are marked interruptible; a protected one never is.

The readers are pure functions over the API's JSON; `KubeCustomObjects` does the I/O and
`KueueActuator` adds the quota and the deactivations to every actuator pass.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.adapters.k8s.actuator import (
    RECONCILE_DECISION,
    KubeActuator,
    NodeTarget,
    _Pass,
)
from orchestrator.adapters.k8s.api import CONFLICT, NOT_FOUND, ApiError, KubeOps, Obj
from orchestrator.adapters.k8s.client import KubeClient
from orchestrator.adapters.k8s.objects import (
    GPU_PRODUCT_LABEL,
    UNREADABLE_LEASE_S,
    annotations_of,
    format_time,
    is_true,
    labels_of,
    meta,
    name_of,
    node_view,
    owner_uids,
    parse_time,
    pod_gpus,
    quantity,
    resource_version_of,
    selected_value,
)
from orchestrator.adapters.k8s.watch import ObjectCache, PodSource
from orchestrator.engine.plan import Plan
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.demand import AIJob
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import HardwareProfile
from orchestrator.models.kueue_config import KubeRayConfig, KueueConfig
from orchestrator.models.modes import Mode, NodeState
from orchestrator.ports import ActuationResult

log = logging.getLogger("hashpivot.k8s.kueue")

KUEUE_API = "/apis/kueue.x-k8s.io/v1beta2"
RAY_API = "/apis/ray.io/v1"
#: The label that puts a job (Job, RayJob, RayCluster) in a Kueue LocalQueue.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
_FINISHED_RAYJOB = frozenset({"Complete", "Failed"})


# -- reading the API's JSON ------------------------------------------------------------------


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    s = obj.get("status")
    return s if isinstance(s, dict) else {}


def _condition(obj: Mapping[str, Any], kind: str) -> bool:
    return any(
        isinstance(c, dict) and c.get("type") == kind and c.get("status") == "True"
        for c in _status(obj).get("conditions") or []
    )


def _int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return default


def _price(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _created(obj: Mapping[str, Any]) -> datetime | None:
    seconds = parse_time(meta(obj).get("creationTimestamp"))
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


@dataclass(frozen=True, slots=True)
class Template:
    """One pod template of a job: how many pods, GPUs each, and what it says about itself."""

    name: str
    pods: int
    gpus_per_pod: float
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @property
    def gpus(self) -> float:
        return self.pods * self.gpus_per_pod


def _template(name: str, pods: int, template: object) -> Template:
    tpl = template if isinstance(template, dict) else {}
    spec = _spec(tpl)
    return Template(
        name=name,
        pods=max(0, pods),
        gpus_per_pod=pod_gpus({"spec": spec}),
        spec=spec,
        labels=labels_of(tpl),
        annotations=annotations_of(tpl),
    )


class Pricing:
    """What a job offers per GPU-hour, and whether it may be interrupted: from its own
    annotations and labels first, then the config's per-queue and per-priority prices."""

    def __init__(self, k8s: KubernetesConfig, kueue: KueueConfig) -> None:
        self.k8s = k8s
        self.kueue = kueue

    def price(
        self,
        notes: Iterable[Mapping[str, str]],
        namespace: str,
        queue: str | None,
        priority_class: str | None,
    ) -> float | None:
        for n in notes:
            value = _price(n.get(self.k8s.price_annotation))
            if value is not None:
                return value
        prices = self.kueue.queue_prices
        if queue:
            for key in (f"{namespace}/{queue}", queue):
                if key in prices:
                    return prices[key]
        if priority_class and priority_class in self.kueue.priority_prices:
            return self.kueue.priority_prices[priority_class]
        return None

    def interruptible(
        self, labels: Iterable[Mapping[str, str]], priority_classes: Iterable[str | None]
    ) -> bool:
        if any(is_true(m.get(self.k8s.interruptible_label)) for m in labels):
            return True
        wanted = set(self.k8s.interruptible_priority_classes)
        return any(p in wanted for p in priority_classes if p)

    def lease_until(self, notes: Iterable[Mapping[str, str]]) -> float:
        """The latest protected lease end any of `notes` names (0: none)."""
        end = 0.0
        for n in notes:
            text = n.get(self.k8s.lease_annotation)
            if text is not None:
                parsed = parse_time(text)
                end = max(end, UNREADABLE_LEASE_S if parsed is None else parsed)
        return end

    def deadline(self, notes: Iterable[Mapping[str, str]]) -> datetime | None:
        """Latest start the tenant accepts (the first readable deadline annotation)."""
        for n in notes:
            at = parse_time(n.get(self.k8s.deadline_annotation))
            if at is not None:
                return datetime.fromtimestamp(at, UTC)
        return None

    def duration_h(self, notes: Iterable[Mapping[str, str]], max_s: object = None) -> float:
        for n in notes:
            value = _price(n.get(self.k8s.duration_annotation))
            if value is not None and value > 0:
                return value
        seconds = _int(max_s, 0)
        return seconds / 3600.0 if seconds > 0 else 1.0


# -- Workloads -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadView:
    """A Kueue Workload as hashpivot sees it."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    queue: str | None
    priority: int | None
    priority_class: str | None
    active: bool
    #: Kueue has reserved quota for it (admitted, or about to be).
    reserved: bool
    finished: bool
    owners: tuple[str, ...]
    templates: tuple[Template, ...]
    #: Pod set → the ResourceFlavor Kueue assigned its GPUs (admitted Workloads only).
    flavors: Mapping[str, str]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: datetime | None
    max_execution_s: int

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def pending(self) -> bool:
        """Waiting for quota: the demand hashpivot may serve by adding capacity."""
        return self.active and not self.reserved and not self.finished

    @property
    def running(self) -> bool:
        """Admitted and not done: demand already served."""
        return self.active and self.reserved and not self.finished

    def all_labels(self) -> list[Mapping[str, str]]:
        return [self.labels, *(t.labels for t in self.templates)]

    def all_notes(self) -> list[Mapping[str, str]]:
        return [self.annotations, *(t.annotations for t in self.templates)]


def workload_view(obj: Mapping[str, Any], gpu_resource: str = "nvidia.com/gpu") -> WorkloadView:
    m = meta(obj)
    spec = _spec(obj)
    status = _status(obj)
    templates = tuple(
        _template(str(ps.get("name") or f"podset-{i}"), _int(ps.get("count"), 1),
                  ps.get("template"))
        for i, ps in enumerate(spec.get("podSets") or [])
        if isinstance(ps, dict)
    )
    admission = status.get("admission")
    flavors: dict[str, str] = {}
    if isinstance(admission, dict):
        for psa in admission.get("podSetAssignments") or []:
            if isinstance(psa, dict):
                flavor = (psa.get("flavors") or {}).get(gpu_resource)
                if flavor:
                    flavors[str(psa.get("name") or "")] = str(flavor)
    ref = spec.get("priorityClassRef")
    priority_class = (
        str(ref.get("name")) if isinstance(ref, dict) and ref.get("name")
        else spec.get("priorityClassName") or None  # v1beta1's field, served beside v1beta2
    )
    priority = spec.get("priority")
    return WorkloadView(
        namespace=str(m.get("namespace") or ""),
        name=str(m.get("name") or ""),
        uid=str(m.get("uid") or ""),
        resource_version=str(m.get("resourceVersion") or ""),
        queue=str(spec.get("queueName") or "") or None,
        priority=priority if isinstance(priority, int) and not isinstance(priority, bool)
        else None,
        priority_class=str(priority_class) if priority_class else None,
        active=spec.get("active") is not False,
        reserved=isinstance(admission, dict) or _condition(obj, "QuotaReserved"),
        finished=_condition(obj, "Finished"),
        owners=owner_uids(obj),
        templates=templates,
        flavors=flavors,
        labels=labels_of(obj),
        annotations=annotations_of(obj),
        created=_created(obj),
        max_execution_s=_int(spec.get("maximumExecutionTimeSeconds"), 0),
    )


# -- KubeRay -------------------------------------------------------------------------------


def ray_templates(cluster_spec: object) -> tuple[Template, ...]:
    """The head and the worker groups of a RayCluster spec (also a RayJob's rayClusterSpec).

    A worker group runs replicas × numOfHosts pods; a suspended group runs none.
    """
    spec = cluster_spec if isinstance(cluster_spec, dict) else {}
    head = spec.get("headGroupSpec")
    out = [_template("head", 1, head.get("template") if isinstance(head, dict) else None)]
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        if not isinstance(group, dict) or group.get("suspend") is True:
            continue
        replicas = group.get("replicas")
        if replicas is None:
            replicas = group.get("minReplicas")
        pods = _int(replicas, 0) * max(1, _int(group.get("numOfHosts"), 1))
        out.append(_template(str(group.get("groupName") or f"workers-{i}"), pods,
                             group.get("template")))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RayView:
    """A RayCluster or a RayJob: the GPUs its pods need, whether Kueue holds it."""

    kind: str
    namespace: str
    name: str
    uid: str
    owners: tuple[str, ...]
    queue: str | None
    suspended: bool
    finished: bool
    #: RayJob: the RayCluster it made (status.rayClusterName).
    cluster_name: str | None
    templates: tuple[Template, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: datetime | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gpus(self) -> float:
        return sum(t.gpus for t in self.templates)


def ray_view(obj: Mapping[str, Any]) -> RayView:
    m = meta(obj)
    spec = _spec(obj)
    status = _status(obj)
    kind = str(obj.get("kind") or "RayCluster")
    if kind == "RayJob":
        templates = ray_templates(spec.get("rayClusterSpec"))
        finished = status.get("jobDeploymentStatus") in _FINISHED_RAYJOB
        cluster = str(status.get("rayClusterName") or "") or None
    else:
        templates = ray_templates(spec)
        finished = False
        cluster = None
    return RayView(
        kind=kind,
        namespace=str(m.get("namespace") or ""),
        name=str(m.get("name") or ""),
        uid=str(m.get("uid") or ""),
        owners=owner_uids(obj),
        queue=labels_of(obj).get(QUEUE_LABEL) or None,
        suspended=spec.get("suspend") is True,
        finished=finished,
        cluster_name=cluster,
        templates=templates,
        labels=labels_of(obj),
        annotations=annotations_of(obj),
        created=_created(obj),
    )


# -- demand ----------------------------------------------------------------------------------


class ModelResolver:
    """The GPU model a pod template asks for: the profile label or `nvidia.com/gpu.product`
    it selects, else the ResourceFlavor Kueue assigned (or the only GPU flavor there is)."""

    def __init__(
        self,
        k8s: KubernetesConfig,
        profiles: Mapping[str, HardwareProfile],
        flavor_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.k8s = k8s
        self.profiles = profiles
        self.flavor_labels = dict(flavor_labels or {})

    def _of_labels(self, selected: Callable[[str], str | None]) -> str | None:
        name = selected(self.k8s.profile_label)
        if name is None:
            product = selected(GPU_PRODUCT_LABEL)
            name = self.k8s.gpu_product_profiles.get(product) if product else None
        profile = self.profiles.get(name) if name else None
        return profile.gpu_model if profile is not None else None

    def flavor_model(self, flavor: str | None) -> str | None:
        labels = self.flavor_labels.get(flavor) if flavor else None
        return self._of_labels(labels.get) if labels is not None else None

    def model(self, tpl: Template, flavor: str | None = None) -> str | None:
        found = self._of_labels(lambda key: selected_value(tpl.spec, key))
        if found is not None:
            return found
        if flavor is None and len(self.flavor_labels) == 1:
            flavor = next(iter(self.flavor_labels))
        return self.flavor_model(flavor)


def _one_model(models: Iterable[str | None]) -> str | None:
    distinct = set(models)
    return distinct.pop() if len(distinct) == 1 else None


def workload_jobs(
    workloads: Iterable[WorkloadView],
    pricing: Pricing,
    models: ModelResolver,
    *,
    running: bool = False,
) -> list[AIJob]:
    """AI jobs of pending Workloads (`running`: of admitted ones), one per GPU pod set."""
    jobs: list[AIJob] = []
    for wl in workloads:
        if not (wl.running if running else wl.pending):
            continue
        gpu_sets = [t for t in wl.templates if t.gpus > 0]
        price = pricing.price(wl.all_notes(), wl.namespace, wl.queue, wl.priority_class)
        interruptible = pricing.interruptible(
            wl.all_labels(),
            [wl.priority_class, *(t.spec.get("priorityClassName") for t in wl.templates)],
        )
        duration = pricing.duration_h(wl.all_notes(), wl.max_execution_s or None)
        for tpl in gpu_sets:
            suffix = f"/{tpl.name}" if len(gpu_sets) > 1 else ""
            jobs.append(
                AIJob(
                    id=f"workload:{wl.key}{suffix}",
                    gpus=max(1, round(tpl.gpus)),
                    gpu_model=models.model(tpl, wl.flavors.get(tpl.name)),
                    offered_usd_per_gpu_hour=price,
                    expected_duration_h=duration,
                    interruptible=interruptible,
                    submitted_at=wl.created,
                    deadline_at=pricing.deadline(wl.all_notes()),
                    priority=wl.priority,
                    queue=f"{wl.namespace}/{wl.queue}" if wl.queue else None,
                )
            )
    return jobs


def ray_jobs(
    rays: Sequence[RayView],
    pod_gpus_by_owner: Mapping[str, float],
    pricing: Pricing,
    models: ModelResolver,
    *,
    kueue_manages: bool,
) -> list[AIJob]:
    """AI jobs of RayClusters and RayJobs: the GPUs their pods will need, less the GPUs of
    the pods already made (those count as pods, pending or running, once).

    Queued through Kueue (queue-name label, Kueue enabled): left to the Workload Kueue
    made for it. A RayJob whose RayCluster exists: left to the RayCluster. Suspended by
    hand or finished: no demand.
    """
    clusters = {(r.namespace, r.name) for r in rays if r.kind == "RayCluster"}
    cluster_owners = {o for r in rays if r.kind == "RayCluster" for o in r.owners}
    jobs: list[AIJob] = []
    for ray in rays:
        if kueue_manages and ray.queue:
            continue
        if ray.suspended or ray.finished:
            continue
        if ray.kind == "RayJob" and (
            ray.uid in cluster_owners
            or (ray.cluster_name is not None and (ray.namespace, ray.cluster_name) in clusters)
        ):
            continue
        missing = ray.gpus - pod_gpus_by_owner.get(ray.uid, 0.0)
        if missing < 0.5:
            continue
        gpu_sets = [t for t in ray.templates if t.gpus > 0]
        notes = [ray.annotations, *(t.annotations for t in ray.templates)]
        jobs.append(
            AIJob(
                id=f"{ray.kind.lower()}:{ray.key}",
                gpus=max(1, round(missing)),
                gpu_model=_one_model(models.model(t) for t in gpu_sets),
                offered_usd_per_gpu_hour=pricing.price(notes, ray.namespace, ray.queue, None),
                expected_duration_h=pricing.duration_h(notes),
                interruptible=pricing.interruptible(
                    [ray.labels, *(t.labels for t in ray.templates)],
                    [t.spec.get("priorityClassName") for t in ray.templates],
                ),
                submitted_at=ray.created,
                deadline_at=pricing.deadline(notes),
                queue=None,
            )
        )
    return jobs


def gpus_by_owner(pods: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """GPUs of unfinished pods per owner UID (a RayCluster's pods name it as owner)."""
    out: dict[str, float] = {}
    for pod in pods:
        if (_status(pod).get("phase") or "Pending") in ("Succeeded", "Failed"):
            continue
        gpus = pod_gpus(pod)
        if gpus <= 0:
            continue
        for uid in owner_uids(pod):
            out[uid] = out.get(uid, 0.0) + gpus
    return out


# -- quota -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlavorQuota:
    """One ResourceFlavor's GPU quota in the ClusterQueue, and where it sits in the spec."""

    flavor: str
    quota: float
    path: str


def gpu_quotas(cluster_queue: Mapping[str, Any], gpu_resource: str) -> list[FlavorQuota]:
    """The GPU quota of every flavor of the ClusterQueue, with its JSON-patch path."""
    out: list[FlavorQuota] = []
    for g, group in enumerate(_spec(cluster_queue).get("resourceGroups") or []):
        for f, flavor in enumerate(group.get("flavors") or []):
            for r, res in enumerate(flavor.get("resources") or []):
                if res.get("name") == gpu_resource:
                    out.append(
                        FlavorQuota(
                            flavor=str(flavor.get("name") or ""),
                            quota=quantity(res.get("nominalQuota")),
                            path=f"/spec/resourceGroups/{g}/flavors/{f}/resources/{r}/nominalQuota",
                        )
                    )
    return out


def node_matches(node_labels: Mapping[str, str], flavor_labels: Mapping[str, str]) -> bool:
    """A node serves a flavor when it carries every label the flavor names (Kueue adds them
    as node selectors to what it admits on that flavor)."""
    return all(node_labels.get(k) == v for k, v in flavor_labels.items())


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """A managed node as the quota sees it."""

    name: str
    labels: Mapping[str, str]
    gpus: float
    #: In AI, ready and schedulable: Kueue may place work there.
    serving: bool


def capacity_of(node: Mapping[str, Any], config: KubernetesConfig) -> NodeCapacity:
    view = node_view(node, config)
    schedulable = not _spec(node).get("unschedulable")
    return NodeCapacity(
        name=view.name,
        labels=view.labels,
        gpus=view.gpus or 0.0,
        serving=view.state == NodeState.AI and view.ready and schedulable,
    )


def desired_quota(
    quotas: Sequence[FlavorQuota],
    flavor_labels: Mapping[str, Mapping[str, str]],
    nodes: Iterable[NodeCapacity],
    leaving: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """Each flavor's quota: the GPUs of the nodes serving AI that carry its labels, less the
    nodes `leaving` AI (their capacity is withdrawn before they go). A node whose labels
    fit several flavors counts once, for the first in the ClusterQueue's order (Kueue's
    own order of preference): counted twice, Kueue would admit more than the node holds."""
    want = {q.flavor: 0.0 for q in quotas}
    for node in nodes:
        if not node.serving or node.name in leaving:
            continue
        for flavor in want:
            if node_matches(node.labels, flavor_labels.get(flavor, {})):
                want[flavor] += node.gpus
                break
    return want


def quota_patch(
    cluster_queue: Mapping[str, Any], quotas: Sequence[FlavorQuota], want: Mapping[str, float]
) -> list[Obj]:
    """A JSON patch setting each flavor's quota to `want`, conditional on the ClusterQueue's
    resourceVersion (a stale read is refused, not applied); [] when nothing changes."""
    ops: list[Obj] = []
    for q in quotas:
        if q.flavor in want and round(want[q.flavor]) != round(q.quota):
            ops.append({"op": "replace", "path": q.path, "value": str(round(want[q.flavor]))})
    if not ops:
        return []
    rv = resource_version_of(cluster_queue)
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, *ops]


def describe_quota(quotas: Sequence[FlavorQuota], want: Mapping[str, float]) -> str:
    parts = [
        f"{q.flavor} {q.quota:g} → {round(want[q.flavor])}"
        for q in quotas
        if q.flavor in want and round(want[q.flavor]) != round(q.quota)
    ]
    return ", ".join(parts)


def to_deactivate(
    workloads: Iterable[WorkloadView],
    pods: Iterable[Mapping[str, Any]],
    rays: Iterable[RayView],
    draining: frozenset[str],
    pricing: Pricing,
    now_s: float,
) -> tuple[list[WorkloadView], list[WorkloadView]]:
    """Admitted Workloads with pods on `draining` nodes: (interruptible ones to deactivate,
    protected ones to wait for). A Workload is matched to its pods by owner: a Job's pods
    name the Job, a RayCluster's pods the RayCluster, which a RayJob owns, and a pod Kueue
    manages by itself owns its Workload."""
    on_draining: set[str] = set()
    for pod in pods:
        node = _spec(pod).get("nodeName")
        if node in draining and (_status(pod).get("phase") or "") not in ("Succeeded", "Failed"):
            on_draining.update(pod_owners(pod))
    parents = {r.uid: r.owners for r in rays}
    for uid in list(on_draining):
        on_draining.update(parents.get(uid, ()))
    interruptible: list[WorkloadView] = []
    protected: list[WorkloadView] = []
    for wl in workloads:
        if not wl.running or not on_draining.intersection(wl.owners):
            continue
        lease = pricing.lease_until(wl.all_notes())
        ok = pricing.interruptible(
            wl.all_labels(),
            [wl.priority_class, *(t.spec.get("priorityClassName") for t in wl.templates)],
        )
        (interruptible if ok and lease <= now_s else protected).append(wl)
    return interruptible, protected


def pod_owners(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """The UIDs a Workload may name as its owner for this pod: the pod's owners (Job,
    RayCluster) and the pod itself (Kueue's pod integration, which Deployments and
    StatefulSets also go through, makes the pod the Workload's owner)."""
    uid = meta(pod).get("uid")
    return (*owner_uids(pod), str(uid)) if uid else owner_uids(pod)


def admitted_owners(workloads: Iterable[WorkloadView], rays: Iterable[RayView]) -> frozenset[str]:
    """UIDs that own the pods of admitted Workloads: their jobs, and the RayClusters a
    queued RayJob made."""
    owners = {o for wl in workloads if wl.running for o in wl.owners}
    owners |= {r.uid for r in rays if owners.intersection(r.owners)}
    return frozenset(owners)


class _KueuePods:
    """The pods as the drain sees them: those of admitted Workloads are never interruptible
    (Kueue is asked to give them back instead). `owners` None: which Workloads are
    admitted is unknown (unreadable), so no pod is interruptible this pass."""

    def __init__(self, inner: PodSource, owners: frozenset[str] | None,
                 config: KubernetesConfig):
        self.inner = inner
        self.owners = owners
        self.config = config

    def pods(self) -> list[Obj]:
        out = []
        for pod in self.inner.pods():
            if self.owners is not None and not self.owners.intersection(pod_owners(pod)):
                out.append(pod)
                continue
            kept = copy.deepcopy(pod)
            labels = kept.get("metadata", {}).get("labels")
            if isinstance(labels, dict):
                labels.pop(self.config.interruptible_label, None)
            spec = kept.get("spec")
            if isinstance(spec, dict):
                spec.pop("priorityClassName", None)
            out.append(kept)
        return out


# -- I/O ---------------------------------------------------------------------------------------


class CustomObjects(Protocol):
    """The calls on Kueue and KubeRay objects hashpivot makes. Errors raise `ApiError`."""

    def list(self, path: str) -> list[Obj]: ...

    def get(self, path: str) -> Obj: ...

    def patch(self, path: str, body: Any, content_type: str) -> Obj: ...


class KubeCustomObjects:
    """`CustomObjects` over `KubeClient` (the official client's transport).

    Lists are served from a watch (list once, then watch, as the node and pod caches do)
    once it has synced: the actuator reads Workloads on every pass, seconds apart, and a
    full LIST of every Workload each time would load the apiserver for nothing. Until the
    watch syncs, and with `watch=False`, each call lists.
    """

    def __init__(self, kube: KubeClient, *, watch: bool = True, resync_s: float = 1800.0):
        self.kube = kube
        self.watch = watch
        self.resync_s = resync_s
        self._caches: dict[str, ObjectCache] = {}
        self._lock = threading.Lock()

    def _cache(self, path: str) -> ObjectCache:
        with self._lock:
            cache = self._caches.get(path)
            if cache is None:
                cache = ObjectCache(
                    lambda: self.kube._list(path, {}),
                    lambda rv, timeout: self.kube._watch(path, rv, {}, timeout),
                    name=path.rsplit("/", 1)[-1],
                    resync_s=self.resync_s,
                )
                self._caches[path] = cache.start()
            return cache

    def list(self, path: str) -> list[Obj]:
        if self.watch:
            cache = self._cache(path)
            if cache.synced:
                return cache.items()
        items, _ = self.kube._list(path, {})
        return items

    def stop(self) -> None:
        with self._lock:
            caches, self._caches = list(self._caches.values()), {}
        for cache in caches:
            cache.stop()

    def get(self, path: str) -> Obj:
        answer: Obj = self.kube.request("GET", path)
        return answer

    def patch(self, path: str, body: Any, content_type: str) -> Obj:
        answer: Obj = self.kube.request("PATCH", path, body=body, content_type=content_type)
        return answer


def custom_objects(kube: KubeOps) -> CustomObjects | None:
    return KubeCustomObjects(kube) if isinstance(kube, KubeClient) else None


class KueueReader:
    """Lists Workloads, RayClusters, RayJobs, the ClusterQueue and its flavors."""

    def __init__(
        self,
        objects: CustomObjects,
        k8s: KubernetesConfig,
        kueue: KueueConfig,
        kuberay: KubeRayConfig,
        profiles: Mapping[str, HardwareProfile],
    ) -> None:
        self.objects = objects
        self.k8s = k8s
        self.kueue = kueue
        self.kuberay = kuberay
        self.profiles = profiles
        self.pricing = Pricing(k8s, kueue)

    def workloads(self) -> list[WorkloadView]:
        if not self.kueue.enabled:
            return []
        return [workload_view(o, self.kueue.gpu_resource)
                for o in self.objects.list(f"{KUEUE_API}/workloads")]

    def rays(self) -> list[RayView]:
        if not self.kuberay.enabled:
            return []
        out = []
        for plural, kind in (("rayclusters", "RayCluster"), ("rayjobs", "RayJob")):
            for obj in self.objects.list(f"{RAY_API}/{plural}"):
                out.append(ray_view({**obj, "kind": obj.get("kind") or kind}))
        return out

    def stop(self) -> None:
        """Stop the watches behind the lists, if any."""
        stop = getattr(self.objects, "stop", None)
        if callable(stop):
            stop()

    def cluster_queue(self) -> Obj:
        return self.objects.get(f"{KUEUE_API}/clusterqueues/{self.kueue.cluster_queue}")

    def flavor_labels(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name in names:
            obj = self.objects.get(f"{KUEUE_API}/resourceflavors/{name}")
            out[name] = {str(k): str(v) for k, v in (_spec(obj).get("nodeLabels") or {}).items()}
        return out

    def resolver(self) -> ModelResolver:
        """GPU models, with the configured ClusterQueue's flavors when there is one."""
        labels: dict[str, dict[str, str]] = {}
        if self.kueue.enabled and self.kueue.cluster_queue:
            try:
                quotas = gpu_quotas(self.cluster_queue(), self.kueue.gpu_resource)
                labels = self.flavor_labels(q.flavor for q in quotas)
            except ApiError as exc:
                log.warning("ClusterQueue %s unreadable: %s", self.kueue.cluster_queue, exc)
        return ModelResolver(self.k8s, self.profiles, labels)

    def pending(self, pods: Sequence[Mapping[str, Any]]) -> list[AIJob]:
        """Jobs waiting in Kueue and Ray GPUs not yet in pods. Raises ApiError."""
        models = self.resolver()
        jobs = workload_jobs(self.workloads(), self.pricing, models)
        rays = self.rays()
        if rays:
            jobs += ray_jobs(rays, gpus_by_owner(pods), self.pricing, models,
                             kueue_manages=self.kueue.enabled)
        return jobs

    def running(self) -> list[AIJob]:
        """Admitted Workloads not finished: demand already served."""
        return workload_jobs(self.workloads(), self.pricing, self.resolver(), running=True)


# -- the actuator ----------------------------------------------------------------------------

def quota_key(cluster_queue: str) -> str:
    """Key of the quota line in `ActuationResult.notes` and `errors`."""
    return f"clusterqueue/{cluster_queue}"


LOWER_FIRST = "waiting for the ClusterQueue quota to be lowered first"
DEACTIVATED = "interruptible: deactivated"
MAX_CARRIED = 64


class KueueActuator(KubeActuator):
    """`KubeActuator` that also keeps a ClusterQueue's GPU quota equal to the GPUs hashpivot
    has in AI and ready, lowering it before nodes leave AI, and deactivates interruptible
    Workloads on nodes draining out of AI.

    Every quota write is conditional on the ClusterQueue's resourceVersion, takes a token
    from the actuator's write limiter, and happens only when the quota differs from what
    the nodes say: after a restart, the first pass reads the quota back and changes nothing
    that is already right. Quota changes and deactivations are reported in the pass's
    `ActuationResult` (`notes`), which the cycle journals.
    """

    def __init__(self, kube: KubeOps, config: KubernetesConfig, *, reader: KueueReader,
                 **kwargs: Any) -> None:
        super().__init__(kube, config, **kwargs)
        self.reader = reader
        self.kueue = reader.kueue
        #: Changes made by passes whose result nobody journals (reconciles between
        #: cycles), handed to the next cycle's result so the journal has every one.
        self._carried: dict[str, str] = {}

    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        result = super().apply(plan, fleet)
        with self._lock:
            carried, self._carried = self._carried, {}
        result.notes = {**carried, **result.notes}
        return result

    def _carry(self, notes: Mapping[str, str], now_s: float) -> None:
        stamp = format_time(now_s)
        for key, what in notes.items():
            if key.startswith("clusterqueue/") or what.startswith(DEACTIVATED):
                self._carried[f"{key} at {stamp}"] = what
        # Bounded: a cycle that never comes must not grow this without end.
        while len(self._carried) > MAX_CARRIED:
            del self._carried[next(iter(self._carried))]

    def _nodes_now(self) -> list[NodeCapacity]:
        return [capacity_of(self._observed(obj)[0], self.config) for obj in self.nodes.nodes()]

    def _set_quota(self, run_notes: dict[str, str], errors: dict[str, str], *,
                   leaving: frozenset[str], lower_only: bool, deadline: float) -> bool:
        """Bring the quota to what the nodes give (only down when `lower_only`). True when
        the quota is where it should be after the call.

        A ClusterQueue that does not exist, or holds no GPU quota, admits no GPU work:
        there is nothing to lower, and nodes may leave AI (an error still says so)."""
        name = str(self.kueue.cluster_queue)
        key = quota_key(name)
        try:
            try:
                cq = self.reader.cluster_queue()
            except ApiError as exc:
                if exc.status != NOT_FOUND:
                    raise
                errors[key] = f"ClusterQueue {name} not found: no quota to keep"
                return lower_only
            quotas = gpu_quotas(cq, self.kueue.gpu_resource)
            if not quotas:
                errors[key] = f"no {self.kueue.gpu_resource} quota in ClusterQueue {name}"
                return lower_only
            labels = self.reader.flavor_labels(q.flavor for q in quotas)
            want = desired_quota(quotas, labels, self._nodes_now(), leaving)
        except ApiError as exc:
            errors[key] = f"reading ClusterQueue {name}: {exc}"
            return False
        if lower_only:
            want = {q.flavor: min(want[q.flavor], q.quota) for q in quotas}
        ops = quota_patch(cq, quotas, want)
        if not ops:
            return True
        what = describe_quota(quotas, want)
        if self.is_leader is not None and not self.is_leader():
            errors[key] = f"not the leader: quota {what} left to the leader"
            return False
        if not self.limiter.acquire(deadline):
            errors[key] = f"rate limited: quota {what} next pass"
            return False
        try:
            self.reader.objects.patch(f"{KUEUE_API}/clusterqueues/{name}", ops, JSON_PATCH)
        except ApiError as exc:
            # A 409/422 from the resourceVersion test: someone changed it meanwhile.
            errors[key] = f"setting quota {what}: {exc}"
            return False
        self.totals.update(quota_writes=1)
        run_notes[key] = f"{self.kueue.gpu_resource} quota {what}"
        log.info("ClusterQueue %s: %s quota %s", name, self.kueue.gpu_resource, what)
        return True

    def _deactivate(self, notes: dict[str, str], errors: dict[str, str],
                    queued: tuple[list[WorkloadView], list[RayView]] | None,
                    draining: frozenset[str], deadline: float) -> None:
        if not draining or queued is None:
            return
        workloads, rays = queued
        try:
            pods = self.pods.pods()
        except ApiError as exc:
            errors["kueue"] = f"reading pods: {exc}"
            return
        chosen, protected = to_deactivate(workloads, pods, rays, draining, self.reader.pricing,
                                          self.clock())
        for wl in protected:
            notes[f"workload/{wl.key}"] = "protected: waiting for it to finish"
        if not self.kueue.deactivate_interruptible:
            chosen = []
        for wl in chosen:
            if self.is_leader is not None and not self.is_leader():
                return
            if not self.limiter.acquire(deadline):
                notes[f"workload/{wl.key}"] = "rate limited: deactivation next pass"
                continue
            body = {"metadata": {"resourceVersion": wl.resource_version},
                    "spec": {"active": False}}
            path = f"{KUEUE_API}/namespaces/{wl.namespace}/workloads/{wl.name}"
            try:
                self.reader.objects.patch(path, body, MERGE_PATCH)
            except ApiError as exc:
                if exc.status in (CONFLICT, NOT_FOUND):
                    notes[f"workload/{wl.key}"] = f"changed meanwhile ({exc.status}): next pass"
                else:
                    errors[f"workload/{wl.key}"] = f"deactivating: {exc}"
                continue
            self.totals.update(deactivated=1)
            notes[f"workload/{wl.key}"] = f"{DEACTIVATED}, Kueue requeues it"

    def _run(self, targets: Sequence[NodeTarget], decision_id: str, *, write: bool) -> _Pass:
        if not write or not self.kueue.enabled or not self.kueue.cluster_queue:
            return super()._run(targets, decision_id, write=write)
        deadline = self.monotonic() + self.config.write_budget_s
        notes: dict[str, str] = {}
        errors: dict[str, str] = {}
        try:
            current = {name_of(o): node_view(self._observed(o)[0], self.config)
                       for o in self.nodes.nodes()}
        except ApiError:
            return super()._run(targets, decision_id, write=write)
        leaving = frozenset(
            t.name for t in targets
            if t.mode != Mode.AI and (v := current.get(t.name)) is not None
            and v.state in (NodeState.AI, NodeState.DRAINING_AI)
        )
        held: list[NodeTarget] = list(targets)
        if leaving and not self._set_quota(notes, errors, leaving=leaving, lower_only=True,
                                           deadline=deadline):
            # Kueue could admit more onto these nodes: they stay in AI until it cannot.
            held = [
                NodeTarget(t.name, Mode.AI, t.gain_per_h, t.reason, t.held_in_transition)
                if t.name in leaving and current[t.name].state == NodeState.AI else t
                for t in targets
            ]
        try:
            queued: tuple[list[WorkloadView], list[RayView]] | None = (
                self.reader.workloads(), self.reader.rays())
        except ApiError as exc:
            errors["kueue"] = f"reading workloads: {exc}"
            queued = None
        pods = self.pods
        # Pods of admitted Workloads leave through Kueue (deactivation), never through the
        # Eviction API: their job's controller would only make them again. Without the
        # Workloads, no pod can be told apart: none is evicted this pass.
        self.pods = _KueuePods(pods, admitted_owners(*queued) if queued is not None else None,
                               self.config)
        try:
            run = super()._run(held, decision_id, write=write)
        finally:
            self.pods = pods
        for t in targets:
            if t.name in leaving and current[t.name].state == NodeState.AI and t not in held:
                run.result.deferred.setdefault(t.name, LOWER_FIRST)
        self._set_quota(notes, errors, leaving=leaving, lower_only=False, deadline=deadline)
        draining = frozenset(
            n.name for n in (node_view(self._observed(o)[0], self.config)
                             for o in self.nodes.nodes())
            if n.state == NodeState.DRAINING_AI
        )
        self._deactivate(notes, errors, queued, draining, deadline)
        run.result.notes.update(notes)
        run.result.errors.update(errors)
        if decision_id == RECONCILE_DECISION:
            self._carry(notes, self.clock())
        return run
