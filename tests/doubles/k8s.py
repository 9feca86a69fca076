"""An in-memory `KubeOps`: nodes, pods, leases and DaemonSets with the API's semantics
hashpivot relies on (merge patches, resourceVersion preconditions, 409/404/429, watches
from a resourceVersion with 410 once it is compacted). For unit tests and the fault
suite; the real apiserver is tested in tier 2.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from orchestrator.adapters.k8s.api import (
    CONFLICT,
    GONE,
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    ApiError,
    Obj,
)
from orchestrator.adapters.k8s.objects import (
    GPU_RESOURCE,
    MODE_LABEL,
    labels_of,
    meta,
)

WRITES = frozenset({"patch_node", "evict_pod", "create_lease", "replace_lease", "create_daemonset"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def match_labels(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated."""
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def match_fields(selector: str | None, obj: Obj) -> bool:
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if _field(obj, k) == v:
                return False
        else:
            k, v = term.replace("==", "=").split("=", 1)
            if _field(obj, k) != v:
                return False
    return True


class _FakeStream:
    """The events since the requested version, then the end of the request (after a short
    pause, as a server would hold an idle watch open)."""

    def __init__(self, events: list[Obj], hold_s: float) -> None:
        self._events = events
        self._hold_s = hold_s
        self._stopped = False

    def __iter__(self) -> Iterator[Obj]:
        for event in self._events:
            if self._stopped:
                return
            yield event
        if self._hold_s > 0 and not self._stopped:
            time.sleep(self._hold_s)

    def stop(self) -> None:
        self._stopped = True


class FakeKube:
    """`KubeOps` in memory. Every call is counted in `calls`; `fail` queues errors."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rv = 100
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.leases: dict[str, Obj] = {}
        self.daemonsets: dict[str, Obj] = {}
        self.calls: Counter[str] = Counter()
        self.evictions: list[str] = []
        #: Pod keys whose eviction a disruption budget refuses (429).
        self.pdb_blocked: set[str] = set()
        #: Evicted pods are deleted at once (True) or left terminating (False).
        self.evict_deletes = True
        #: method name → errors raised by its next calls, in order.
        self.fail: dict[str, list[ApiError]] = {}
        #: Called before a write is applied (tests use it to race another writer).
        self.before_write: Callable[[str, str], None] | None = None
        self._events: dict[str, list[tuple[int, Obj]]] = {"nodes": [], "pods": []}
        self.compacted_rv = 0
        #: How long an idle watch request stays open (keeps a cache thread from spinning).
        self.watch_hold_s = 0.0

    # -- helpers -------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _call(self, name: str, key: str = "") -> None:
        self.calls[name] += 1
        queued = self.fail.get(name)
        if queued:
            raise queued.pop(0)
        if name in WRITES and self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(name, key)

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name in WRITES)

    def _emit(self, kind: str, event: str, obj: Obj) -> None:
        self._events[kind].append((self._rv, {"type": event, "object": copy.deepcopy(obj)}))

    def compact(self) -> None:
        """Forget watch history: watches from older versions now get 410 Gone."""
        with self._lock:
            self.compacted_rv = self._rv
            for events in self._events.values():
                events.clear()

    # -- building the world ----------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        gpus: int = 8,
        taints: list[Obj] | None = None,
        ready: bool = True,
    ) -> Obj:
        with self._lock:
            node: Obj = {
                "metadata": {
                    "name": name,
                    "labels": dict(labels or {}),
                    "annotations": dict(annotations or {}),
                    "resourceVersion": self._next_rv(),
                },
                "spec": {"taints": list(taints or [])},
                "status": {
                    "allocatable": {GPU_RESOURCE: str(gpus)},
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
            self.nodes[name] = node
            self._emit("nodes", "ADDED", node)
            return copy.deepcopy(node)

    def set_node(self, name: str, mutate: Callable[[Obj], None]) -> Obj:
        """Change a node as another actor would (bumps its resourceVersion)."""
        with self._lock:
            node = self.nodes[name]
            mutate(node)
            node["metadata"]["resourceVersion"] = self._next_rv()
            self._emit("nodes", "MODIFIED", node)
            return copy.deepcopy(node)

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        gpus: int = 0,
        node: str | None = None,
        phase: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        priority_class: str | None = None,
        daemonset: str | None = None,
        node_selector: Mapping[str, str] | None = None,
    ) -> Obj:
        with self._lock:
            rv = self._next_rv()
            pod: Obj = {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": f"uid-{namespace}-{name}-{rv}",
                    "labels": dict(labels or {}),
                    "annotations": dict(annotations or {}),
                    "resourceVersion": rv,
                    "creationTimestamp": "2025-01-01T00:00:00Z",
                },
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {
                            "name": "main",
                            "resources": {"limits": {GPU_RESOURCE: str(gpus)}} if gpus else {},
                        }
                    ],
                },
                "status": {"phase": phase or ("Running" if node else "Pending")},
            }
            if priority_class:
                pod["spec"]["priorityClassName"] = priority_class
            if node_selector:
                pod["spec"]["nodeSelector"] = dict(node_selector)
            if daemonset:
                pod["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": daemonset}]
            self.pods[f"{namespace}/{name}"] = pod
            self._emit("pods", "ADDED", pod)
            return copy.deepcopy(pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            pod = self.pods.pop(f"{namespace}/{name}", None)
            if pod is not None:
                self._next_rv()
                pod["metadata"]["resourceVersion"] = str(self._rv)
                self._emit("pods", "DELETED", pod)

    def set_pod(self, namespace: str, name: str, mutate: Callable[[Obj], None]) -> None:
        with self._lock:
            pod = self.pods[f"{namespace}/{name}"]
            mutate(pod)
            pod["metadata"]["resourceVersion"] = self._next_rv()
            self._emit("pods", "MODIFIED", pod)

    def run_daemonset_controller(self, namespace: str, name: str, *, running: bool = True) -> None:
        """What the DaemonSet controller and kubelet would do for the miner: a pod on every
        node labelled mode=mine, none elsewhere."""
        with self._lock:
            for node_name, node in self.nodes.items():
                pod_name = f"{name}-{node_name}"
                has = f"{namespace}/{pod_name}" in self.pods
                wanted = labels_of(node).get(MODE_LABEL) == "mine"
                if wanted and not has:
                    self.add_pod(
                        namespace,
                        pod_name,
                        node=node_name,
                        daemonset=name,
                        phase="Running" if running else "Pending",
                    )
                elif not wanted and has:
                    self.delete_pod(namespace, pod_name)

    # -- nodes ---------------------------------------------------------------------------

    def list_nodes(self, label_selector: str | None = None) -> tuple[list[Obj], str]:
        with self._lock:
            self._call("list_nodes")
            items = [
                copy.deepcopy(n)
                for n in self.nodes.values()
                if match_labels(label_selector, labels_of(n))
            ]
            return items, str(self._rv)

    def _watch(self, kind: str, resource_version: str, keep: Callable[[Obj], bool]) -> _FakeStream:
        since = int(resource_version or 0)
        if since < self.compacted_rv:
            gone: Obj = {"type": "ERROR", "object": {"kind": "Status", "code": GONE}}
            return _FakeStream([gone], 0.0)
        events = []
        for rv, event in self._events[kind]:
            if rv <= since:
                continue
            out = copy.deepcopy(event)
            if not keep(out["object"]):
                # An object leaving a selector is reported as deleted, as the server does.
                if out["type"] != "MODIFIED":
                    continue
                out["type"] = "DELETED"
            events.append(out)
        events.append(
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(self._rv)}}}
        )
        return _FakeStream(events, self.watch_hold_s)

    def watch_nodes(
        self, resource_version: str, label_selector: str | None, timeout_s: float
    ) -> _FakeStream:
        with self._lock:
            self._call("watch_nodes")
            return self._watch(
                "nodes", resource_version, lambda o: match_labels(label_selector, labels_of(o))
            )

    def get_node(self, name: str) -> Obj:
        with self._lock:
            self._call("get_node", name)
            if name not in self.nodes:
                raise ApiError(NOT_FOUND, f'nodes "{name}" not found')
            return copy.deepcopy(self.nodes[name])

    def patch_node(self, name: str, patch: Obj) -> Obj:
        with self._lock:
            self._call("patch_node", name)
            node = self.nodes.get(name)
            if node is None:
                raise ApiError(NOT_FOUND, f'nodes "{name}" not found')
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != node["metadata"]["resourceVersion"]:
                raise ApiError(CONFLICT, f'Operation cannot be fulfilled on nodes "{name}"')
            merged = merge_patch(node, patch)
            merged["metadata"]["resourceVersion"] = self._next_rv()
            self.nodes[name] = merged
            self._emit("nodes", "MODIFIED", merged)
            return copy.deepcopy(merged)

    # -- pods ----------------------------------------------------------------------------

    def list_pods(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        with self._lock:
            self._call("list_pods")
            items = [
                copy.deepcopy(p)
                for p in self.pods.values()
                if (namespace is None or meta(p).get("namespace") == namespace)
                and match_labels(label_selector, labels_of(p))
                and match_fields(field_selector, p)
            ]
            return items, str(self._rv)

    def watch_pods(
        self, resource_version: str, field_selector: str | None, timeout_s: float
    ) -> _FakeStream:
        with self._lock:
            self._call("watch_pods")
            return self._watch("pods", resource_version, lambda o: match_fields(field_selector, o))

    def evict_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        key = f"{namespace}/{name}"
        with self._lock:
            self._call("evict_pod", key)
            pod = self.pods.get(key)
            if pod is None:
                raise ApiError(NOT_FOUND, f'pods "{name}" not found')
            if uid and pod["metadata"]["uid"] != uid:
                raise ApiError(CONFLICT, "uid precondition failed")
            if key in self.pdb_blocked:
                raise ApiError(
                    TOO_MANY_REQUESTS,
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
            self.evictions.append(key)
            if self.evict_deletes:
                self.delete_pod(namespace, name)
            else:
                self.set_pod(
                    namespace,
                    name,
                    lambda p: p["metadata"].__setitem__(
                        "deletionTimestamp", "2025-01-01T00:00:00Z"
                    ),
                )

    # -- leases ----------------------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj:
        with self._lock:
            self._call("get_lease")
            lease = self.leases.get(f"{namespace}/{name}")
            if lease is None:
                raise ApiError(NOT_FOUND, f'leases "{name}" not found')
            return copy.deepcopy(lease)

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        with self._lock:
            name = body["metadata"]["name"]
            self._call("create_lease", name)
            key = f"{namespace}/{name}"
            if key in self.leases:
                raise ApiError(CONFLICT, f'leases "{name}" already exists')
            lease = copy.deepcopy(body)
            lease["metadata"]["resourceVersion"] = self._next_rv()
            self.leases[key] = lease
            return copy.deepcopy(lease)

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        with self._lock:
            self._call("replace_lease", name)
            key = f"{namespace}/{name}"
            current = self.leases.get(key)
            if current is None:
                raise ApiError(NOT_FOUND, f'leases "{name}" not found')
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(CONFLICT, f'Operation cannot be fulfilled on leases "{name}"')
            lease = copy.deepcopy(body)
            lease["metadata"]["resourceVersion"] = self._next_rv()
            self.leases[key] = lease
            return copy.deepcopy(lease)

    # -- daemonsets ------------------------------------------------------------------------

    def get_daemonset(self, namespace: str, name: str) -> Obj:
        with self._lock:
            self._call("get_daemonset")
            ds = self.daemonsets.get(f"{namespace}/{name}")
            if ds is None:
                raise ApiError(NOT_FOUND, f'daemonsets.apps "{name}" not found')
            return copy.deepcopy(ds)

    def create_daemonset(self, namespace: str, body: Obj) -> Obj:
        with self._lock:
            name = body["metadata"]["name"]
            self._call("create_daemonset", name)
            key = f"{namespace}/{name}"
            if key in self.daemonsets:
                raise ApiError(CONFLICT, f'daemonsets.apps "{name}" already exists')
            ds = copy.deepcopy(body)
            ds["metadata"]["resourceVersion"] = self._next_rv()
            self.daemonsets[key] = ds
            return copy.deepcopy(ds)
