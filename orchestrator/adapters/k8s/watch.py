"""Informer-like caches of nodes and pods: list once, then watch, instead of listing every tick.

One thread per cache: list (remember the resourceVersion), then watch from there with
bookmarks so the resourceVersion stays fresh while nothing changes. When the server ends a
watch (its timeout), the next one resumes from the last resourceVersion. "410 Gone" (the
version fell out of the server's window) and any other error lead to a fresh list; so does
a periodic resync, a safety net against a missed event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from orchestrator.adapters.k8s.api import GONE, ApiError, KubeOps, Obj, WatchStream
from orchestrator.adapters.k8s.objects import meta, slim_pod
from orchestrator.models.config import KubernetesConfig

log = logging.getLogger("hashpivot.k8s.watch")

Lister = Callable[[], tuple[list[Obj], str]]
Watcher = Callable[[str, float], WatchStream]
Keep = Callable[[Obj], Obj | None]


class NodeSource(Protocol):
    def nodes(self) -> list[Obj]:
        """Managed nodes (API JSON)."""
        ...

    def node(self, name: str) -> Obj | None:
        """The freshest copy of one node the source holds without an API call (None: no
        better copy than the last `nodes()`)."""
        ...


class PodSource(Protocol):
    def pods(self) -> list[Obj]:
        """GPU pods and miner pods (API JSON, possibly slimmed)."""
        ...


def object_key(obj: Obj) -> str:
    m = meta(obj)
    ns = m.get("namespace")
    return f"{ns}/{m.get('name')}" if ns else str(m.get("name"))


class ObjectCache:
    """A thread-safe local copy of one kind of object, kept current by list + watch."""

    def __init__(
        self,
        lister: Lister,
        watcher: Watcher,
        *,
        keep: Keep | None = None,
        name: str = "objects",
        resync_s: float = 1800.0,
        watch_timeout_s: float = 240.0,
        backoff_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lister = lister
        self._watcher = watcher
        self._keep = keep or (lambda obj: obj)
        self.name = name
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.backoff_s = backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, Obj] = {}
        self._rv = ""
        self._listed_at = float("-inf")
        self._need_list = True
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        #: Counters for tests and metrics.
        self.lists = 0
        self.watches = 0
        self.events = 0
        self.bookmarks = 0
        self.gone = 0
        self.errors = 0

    # -- reading -------------------------------------------------------------------------

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._items.get(key)

    @property
    def resource_version(self) -> str:
        with self._lock:
            return self._rv

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # -- updating ------------------------------------------------------------------------

    def relist(self) -> None:
        """Replace the cache with a fresh list."""
        items, rv = self._lister()
        fresh: dict[str, Obj] = {}
        for obj in items:
            kept = self._keep(obj)
            if kept is not None:
                fresh[object_key(obj)] = kept
        with self._lock:
            self._items = fresh
            self._rv = rv
            self._listed_at = self._clock()
            self._need_list = False
        self.lists += 1
        self._synced.set()

    def _apply(self, event: Obj) -> bool:
        """Apply one watch event. False when the watch must restart from a fresh list."""
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == GONE:
                self.gone += 1
            else:
                self.errors += 1
                log.warning("%s watch error: %s", self.name, obj)
            return False
        rv = str(meta(obj).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.bookmarks += 1
            with self._lock:
                self._rv = rv or self._rv
            return True
        key = object_key(obj)
        kept = None if kind == "DELETED" else self._keep(obj)
        with self._lock:
            if kept is None:
                self._items.pop(key, None)
            else:
                self._items[key] = kept
            self._rv = rv or self._rv
        self.events += 1
        return True

    def run_once(self) -> None:
        """One round: list if needed, then one watch request until the server ends it."""
        with self._lock:
            due = self._need_list or self._clock() - self._listed_at >= self.resync_s
        if due:
            self.relist()
        self.watches += 1
        try:
            stream = self._watcher(self.resource_version, self.watch_timeout_s)
            self._stream = stream
            for event in stream:
                if self._stop.is_set():
                    return
                if not self._apply(event):
                    with self._lock:
                        self._need_list = True
                    return
        except ApiError as exc:
            with self._lock:
                self._need_list = True
            if exc.status == GONE:
                self.gone += 1
                return
            raise
        finally:
            self._stream = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # keep the cache alive: log, back off, list again
                self.errors += 1
                with self._lock:
                    self._need_list = True
                log.warning("%s cache: %s; relisting in %.1fs", self.name, exc, self.backoff_s)
                self._stop.wait(self.backoff_s)

    def start(self) -> ObjectCache:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"hashpivot-{self.name}-cache", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class ClusterCache:
    """Managed nodes and GPU/miner pods, watched: the `NodeSource` and `PodSource` of the
    fleet reader, the demand reader and the actuator."""

    def __init__(
        self,
        kube: KubeOps,
        config: KubernetesConfig,
        *,
        watch_timeout_s: float = 240.0,
    ) -> None:
        selector = config.node_selector or None
        self.node_cache = ObjectCache(
            lambda: kube.list_nodes(selector),
            lambda rv, t: kube.watch_nodes(rv, selector, t),
            name="nodes",
            resync_s=config.resync_s,
            watch_timeout_s=watch_timeout_s,
        )
        # Pods cannot be selected by resources server-side: finished pods are dropped by the
        # field selector, the rest by `slim_pod` (keeps GPU pods and miner pods only).
        pod_fields = "status.phase!=Succeeded,status.phase!=Failed"
        self.pod_cache = ObjectCache(
            lambda: kube.list_pods(None, None, pod_fields),
            lambda rv, t: kube.watch_pods(rv, pod_fields, t),
            keep=lambda pod: slim_pod(pod, config),
            name="pods",
            resync_s=config.resync_s,
            watch_timeout_s=watch_timeout_s,
        )

    def start(self) -> ClusterCache:
        self.node_cache.start()
        self.pod_cache.start()
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for cache in (self.node_cache, self.pod_cache):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not cache.wait_synced(left):
                return False
        return True

    def stop(self) -> None:
        self.node_cache.stop()
        self.pod_cache.stop()

    def nodes(self) -> list[Obj]:
        return self.node_cache.items()

    def node(self, name: str) -> Obj | None:
        return self.node_cache.get(name)

    def pods(self) -> list[Obj]:
        return self.pod_cache.items()

    def __enter__(self) -> ClusterCache:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ListingSource:
    """`NodeSource` and `PodSource` that list on every call: for one-shot commands, or
    where a watch is not wanted. Same filtering as `ClusterCache`."""

    def __init__(self, kube: KubeOps, config: KubernetesConfig) -> None:
        self._kube = kube
        self._config = config

    def nodes(self) -> list[Obj]:
        return self._kube.list_nodes(self._config.node_selector or None)[0]

    def node(self, name: str) -> Obj | None:
        return None  # one GET per write would double the API load

    def pods(self) -> list[Obj]:
        items, _ = self._kube.list_pods(None, None, "status.phase!=Succeeded,status.phase!=Failed")
        return _kept(items, self._config)


def _kept(items: Iterable[Obj], config: KubernetesConfig) -> list[Obj]:
    out = []
    for pod in items:
        slim = slim_pod(pod, config)
        if slim is not None:
            out.append(slim)
    return out
