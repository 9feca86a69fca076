"""What hashpivot writes on nodes and reads from nodes and pods (design §4), as pure functions.

Mode lives on the node, so a restarted controller reads the truth back from the cluster:
label `hashpivot.io/mode`, annotations `since`, `reason`, `decision-id`, the lifecycle
`state` and the `target` of the switch under way, and the taint that keeps AI pods off
nodes not committed to AI. Everything here works on the API's JSON (dicts), full or slimmed
by the pod cache, and does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from orchestrator.adapters.k8s.api import Obj
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.modes import Mode, NodeState, mode_of_state

PREFIX = "hashpivot.io/"
MODE_LABEL = PREFIX + "mode"
SINCE_ANNOTATION = PREFIX + "since"
REASON_ANNOTATION = PREFIX + "reason"
DECISION_ANNOTATION = PREFIX + "decision-id"
STATE_ANNOTATION = PREFIX + "state"
TARGET_ANNOTATION = PREFIX + "target"
MINING_TAINT_KEY = PREFIX + "mining"
MINING_TAINT_EFFECT = "NoSchedule"
MINING_TAINT: Obj = {"key": MINING_TAINT_KEY, "value": "true", "effect": MINING_TAINT_EFFECT}

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

#: A lease annotation nobody can read protects its pod until this time (9999-12-31):
#: a tenant's protection is never lost to a typo.
UNREADABLE_LEASE_S = 253402300799.0

_TRUE = frozenset({"true", "1", "yes", "on"})
_FINISHED = frozenset({"Succeeded", "Failed"})
# States in which AI pods may land (taint off). Everywhere else the taint keeps them out.
_UNTAINTED = frozenset({NodeState.STARTING_AI, NodeState.AI})
_MODE_OF: dict[NodeState, Mode] = {
    s: Mode(int(m))
    for s, m in zip(NodeState, mode_of_state(np.array(list(NodeState), dtype=np.int8)), strict=True)
}


# -- time ----------------------------------------------------------------------------------


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC with a `Z`, to the second (annotation values)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(seconds: float) -> str:
    """RFC 3339 with microseconds (the API's MicroTime, used by Leases)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> float | None:
    """Seconds since the epoch from RFC 3339 (naive times are UTC), or None if unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def is_true(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in _TRUE


# -- generic accessors -----------------------------------------------------------------------


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def resource_version_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("resourceVersion") or "")


def quantity(value: object) -> float:
    """A resource quantity as a number (GPU counts are integers; `m` and k/M/G suffixes read).
    Anything that is not a finite count of zero or more reads as 0: a pod or node holds no
    GPUs it cannot state."""
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float):
        number = float(value)
    elif not isinstance(value, str) or not value:
        return 0.0
    else:
        number = _parse_quantity(value.strip())
    return number if math.isfinite(number) and number >= 0 else 0.0


def _parse_quantity(text: str) -> float:
    scale = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024.0, "Mi": 1024.0**2}
    for suffix in ("Ki", "Mi", "m", "k", "M", "G"):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * scale[suffix]
            except ValueError:
                return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


# -- pods ----------------------------------------------------------------------------------


def _container_gpus(container: Mapping[str, Any]) -> float:
    res = container.get("resources") or {}
    # Extended resources may be given as limits only (requests then default to them).
    req = quantity((res.get("requests") or {}).get(GPU_RESOURCE))
    lim = quantity((res.get("limits") or {}).get(GPU_RESOURCE))
    return max(req, lim)


def pod_gpus(pod: Mapping[str, Any]) -> float:
    """GPUs a pod holds: the larger of its containers' sum and its largest init container."""
    spec = pod.get("spec") or {}
    main = sum(_container_gpus(c) for c in spec.get("containers") or [])
    init = max((_container_gpus(c) for c in spec.get("initContainers") or []), default=0.0)
    return max(main, init)


def daemonset_owner(pod: Mapping[str, Any]) -> str | None:
    for ref in meta(pod).get("ownerReferences") or []:
        if ref.get("kind") == "DaemonSet":
            return str(ref.get("name") or "")
    return None


def _selected_value(spec: Mapping[str, Any], key: str) -> str | None:
    """The one value a pod requires for node label `key` (nodeSelector or a required
    affinity term with `In` and a single value), or None."""
    selector = spec.get("nodeSelector") or {}
    if key in selector:
        return str(selector[key])
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = affinity.get("nodeSelectorTerms") or []
    values: set[str] = set()
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == key and expr.get("operator") == "In":
                values.update(str(v) for v in expr.get("values") or [])
    return values.pop() if len(values) == 1 else None


#: Public name: Kueue Workloads and Ray pod templates carry the same pod spec.
selected_value = _selected_value


def owner_uids(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """UIDs of an object's owners (a pod's Job or RayCluster, a Workload's job)."""
    return tuple(
        str(ref.get("uid")) for ref in meta(obj).get("ownerReferences") or [] if ref.get("uid")
    )


@dataclass(frozen=True, slots=True)
class PodView:
    """What hashpivot needs to know about one pod."""

    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    gpus: float
    deleting: bool
    interruptible: bool
    #: End of a protected lease, epoch s (0: none).
    lease_until: float
    offered_usd_per_gpu_hour: float | None
    expected_duration_h: float | None
    gpu_product: str | None
    profile: str | None
    daemonset: str | None
    created_s: float | None
    #: Latest start the tenant accepts (the deadline annotation), epoch s; None: none.
    deadline_s: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        return self.phase in _FINISHED

    @property
    def is_ai(self) -> bool:
        """A tenant's GPU pod: requests GPUs and is not a per-node agent (DaemonSet)."""
        return self.gpus > 0 and self.daemonset is None

    @property
    def is_pending(self) -> bool:
        return self.phase == "Pending" and not self.node and not self.deleting

    def lease_protected(self, now_s: float) -> bool:
        return self.lease_until > now_s

    def evictable(self, now_s: float) -> bool:
        """Only interruptible work, never inside a protected lease, never twice."""
        return self.interruptible and not self.lease_protected(now_s) and not self.deleting


def _float_or_none(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def pod_view(pod: Mapping[str, Any], config: KubernetesConfig) -> PodView:
    m = meta(pod)
    spec = pod.get("spec") or {}
    labels = labels_of(pod)
    notes = annotations_of(pod)
    lease_text = notes.get(config.lease_annotation)
    lease = 0.0
    if lease_text is not None:
        parsed = parse_time(lease_text)
        lease = UNREADABLE_LEASE_S if parsed is None else parsed
    interruptible = is_true(labels.get(config.interruptible_label)) or (
        spec.get("priorityClassName") in config.interruptible_priority_classes
    )
    return PodView(
        namespace=str(m.get("namespace") or ""),
        name=str(m.get("name") or ""),
        uid=str(m.get("uid") or ""),
        node=spec.get("nodeName") or None,
        phase=str((pod.get("status") or {}).get("phase") or "Pending"),
        gpus=pod_gpus(pod),
        deleting=bool(m.get("deletionTimestamp")),
        interruptible=bool(interruptible),
        lease_until=lease,
        offered_usd_per_gpu_hour=_float_or_none(notes.get(config.price_annotation)),
        expected_duration_h=_float_or_none(notes.get(config.duration_annotation)),
        gpu_product=_selected_value(spec, GPU_PRODUCT_LABEL),
        profile=_selected_value(spec, config.profile_label),
        daemonset=daemonset_owner(pod),
        created_s=parse_time(m.get("creationTimestamp")),
        deadline_s=parse_time(notes.get(config.deadline_annotation)),
    )


def slim_pod(pod: Obj, config: KubernetesConfig) -> Obj | None:
    """The parts of a pod `pod_view` reads, or None for pods hashpivot never looks at.

    Kept: pods requesting GPUs, and pods of the miner DaemonSet. The pod cache stores only
    these, so a cluster with many CPU pods costs little memory.
    """
    m = meta(pod)
    owner = daemonset_owner(pod)
    miner = (
        config.miner_daemonset is not None
        and owner == config.miner_daemonset
        and m.get("namespace") == config.namespace
    )
    if not miner and pod_gpus(pod) <= 0:
        return None
    spec = pod.get("spec") or {}
    wanted = {
        config.lease_annotation,
        config.price_annotation,
        config.duration_annotation,
        config.deadline_annotation,
    }
    notes = {k: v for k, v in annotations_of(pod).items() if k in wanted}
    slim_labels = {k: v for k, v in labels_of(pod).items() if k == config.interruptible_label}
    gpu_containers = [
        {"resources": c.get("resources") or {}}
        for c in spec.get("containers") or []
        if _container_gpus(c) > 0
    ]
    init_containers = [
        {"resources": c.get("resources") or {}}
        for c in spec.get("initContainers") or []
        if _container_gpus(c) > 0
    ]
    slim_spec: Obj = {
        "nodeName": spec.get("nodeName"),
        "priorityClassName": spec.get("priorityClassName"),
        "nodeSelector": spec.get("nodeSelector"),
        "affinity": {"nodeAffinity": (spec.get("affinity") or {}).get("nodeAffinity")},
        "containers": gpu_containers,
        "initContainers": init_containers,
    }
    return {
        "metadata": {
            k: m.get(k)
            for k in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "ownerReferences",
            )
        }
        | {"labels": slim_labels, "annotations": notes},
        "spec": slim_spec,
        "status": {"phase": (pod.get("status") or {}).get("phase")},
    }


# -- nodes ---------------------------------------------------------------------------------


def has_mining_taint(taints: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        t.get("key") == MINING_TAINT_KEY and t.get("effect") == MINING_TAINT_EFFECT for t in taints
    )


def node_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def mode_of(state: NodeState) -> Mode:
    """The mode a node in `state` is committed to (what its label says)."""
    return _MODE_OF[state]


def shape_of(state: NodeState) -> tuple[str, bool]:
    """The mode label and whether the mining taint is on, for a node in `state`.

    The label is the mode the node is committed to (`mode_of_state`); the taint is on in
    every state but STARTING_AI and AI, so AI pods land only where AI was decided.
    """
    return _MODE_OF[state].label, state not in _UNTAINTED


def _parse_state(text: object) -> NodeState | None:
    if not isinstance(text, str):
        return None
    try:
        return NodeState[text.strip().upper()]
    except KeyError:
        return None


def _parse_mode(text: object) -> Mode | None:
    if not isinstance(text, str):
        return None
    try:
        return Mode.parse(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class NodeView:
    """A managed node as the actuator sees it: where it is and what is written on it."""

    name: str
    resource_version: str
    state: NodeState
    #: False when the state was inferred (no or unreadable state annotation).
    state_recorded: bool
    #: The mode the switch under way is heading to (annotation), if any.
    target: Mode | None
    mode_label: str | None
    tainted: bool
    taints: tuple[Obj, ...]
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    ready: bool
    opt_out: bool
    since_s: float | None
    #: True when this view is the answer to our own write in this pass (not yet settled).
    fresh_write: bool = False
    #: Allocatable GPUs (None: the node does not report them).
    gpus: float | None = None
    #: Why an operator took the node out of hashpivot's hands (`opt_out` is then True).
    override: str | None = None

    def in_shape(self, state: NodeState) -> bool:
        label, tainted = shape_of(state)
        return self.mode_label == label and self.tainted == tainted


def infer_state(mode_label: str | None, has_ai_pods: bool) -> NodeState:
    """The state of a node with no (readable) state annotation: from its label, else its pods.

    A node nobody has labelled yet is AI if tenants already run there, else idle.
    """
    mode = _parse_mode(mode_label)
    if mode is None:
        return NodeState.AI if has_ai_pods else NodeState.IDLE
    return {Mode.IDLE: NodeState.IDLE, Mode.MINE: NodeState.MINING, Mode.AI: NodeState.AI}[mode]


def node_view(
    node: Mapping[str, Any],
    config: KubernetesConfig,
    *,
    has_ai_pods: bool = False,
    fresh_write: bool = False,
) -> NodeView:
    labels = labels_of(node)
    notes = annotations_of(node)
    spec = node.get("spec") or {}
    taints = tuple(dict(t) for t in spec.get("taints") or [])
    recorded = _parse_state(notes.get(STATE_ANNOTATION))
    mode_label = labels.get(MODE_LABEL)
    state = recorded if recorded is not None else infer_state(mode_label, has_ai_pods)
    override = manual_override(labels, spec, config, recorded)
    if override is not None and recorded is not None and mode_label not in (
        None, shape_of(recorded)[0]
    ):
        # Relabelled by hand: the label is what runs there now (and what draws power).
        state = infer_state(mode_label, has_ai_pods)
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    gpus = quantity(allocatable[GPU_RESOURCE]) if GPU_RESOURCE in allocatable else None
    return NodeView(
        name=name_of(node),
        resource_version=resource_version_of(node),
        state=state,
        state_recorded=recorded is not None,
        target=_parse_mode(notes.get(TARGET_ANNOTATION)),
        mode_label=mode_label,
        tainted=has_mining_taint(taints),
        taints=taints,
        annotations=dict(notes),
        labels=dict(labels),
        ready=node_ready(node),
        opt_out=override is not None,
        since_s=parse_time(notes.get(SINCE_ANNOTATION)),
        fresh_write=fresh_write,
        gpus=gpus,
        override=override,
    )


def manual_override(
    labels: Mapping[str, str],
    spec: Mapping[str, Any],
    config: KubernetesConfig,
    recorded: NodeState | None,
) -> str | None:
    """Why an operator has taken the node out of hashpivot's hands, or None.

    The opt-out label, a cordon, and a mode label set by hand to another mode (hashpivot
    writes the label and its state annotation in one patch, so they disagree only after
    someone else's edit). Such a node is left alone until the override is undone. A
    label removed outright is drift, not a choice of mode: it is put back.
    """
    if is_true(labels.get(config.opt_out_label)):
        return f"opt-out label {config.opt_out_label}={labels[config.opt_out_label]}"
    if spec.get("unschedulable"):
        return "cordoned (spec.unschedulable)"
    mode_label = labels.get(MODE_LABEL)
    if recorded is not None and mode_label is not None and mode_label != shape_of(recorded)[0]:
        return f"{MODE_LABEL} set to {mode_label!r} by hand (hashpivot had it {recorded.name})"
    return None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Why a switch was started: written once per switch, kept while it runs."""

    decision_id: str
    reason: str


def node_patch(
    view: NodeView,
    state: NodeState,
    target: Mode,
    *,
    now_s: float,
    provenance: Provenance | None,
) -> Obj | None:
    """A JSON merge patch that puts `view` in `state` heading to `target`, or None if it is.

    The patch carries the node's resourceVersion, so a write based on a stale read is
    refused (409) instead of undoing someone else's change. `provenance` (decision id and
    reason) is written when given: at the start of a switch, not while it continues, so a
    restarted controller never overwrites why a switch began.
    """
    label, tainted = shape_of(state)
    labels: Obj = {}
    notes: Obj = {}
    if view.mode_label != label:
        labels[MODE_LABEL] = label
        notes[SINCE_ANNOTATION] = format_time(now_s)
    elif view.since_s is None:
        notes[SINCE_ANNOTATION] = format_time(now_s)
    if view.annotations.get(STATE_ANNOTATION) != state.name:
        notes[STATE_ANNOTATION] = state.name
    if view.annotations.get(TARGET_ANNOTATION) != target.label:
        notes[TARGET_ANNOTATION] = target.label
    if provenance is not None:
        if view.annotations.get(DECISION_ANNOTATION) != provenance.decision_id:
            notes[DECISION_ANNOTATION] = provenance.decision_id
        if view.annotations.get(REASON_ANNOTATION) != provenance.reason:
            notes[REASON_ANNOTATION] = provenance.reason
    taints: list[Obj] | None = None
    if view.tainted != tainted:
        others = [
            t
            for t in view.taints
            if not (t.get("key") == MINING_TAINT_KEY and t.get("effect") == MINING_TAINT_EFFECT)
        ]
        taints = [*others, dict(MINING_TAINT)] if tainted else others
    if not labels and not notes and taints is None:
        return None
    metadata: Obj = {"resourceVersion": view.resource_version}
    if labels:
        metadata["labels"] = labels
    if notes:
        metadata["annotations"] = notes
    patch: Obj = {"metadata": metadata}
    if taints is not None:
        patch["spec"] = {"taints": taints}
    return patch
