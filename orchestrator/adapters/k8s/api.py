"""The slice of the Kubernetes API hashpivot uses, as a Protocol over plain JSON dicts.

Objects travel as the API's own JSON (camelCase dicts), not client model classes: the
readers parse what they need, unit tests build fixtures by hand, and large lists skip the
client's slow model deserialization. `client.KubeClient` is the real implementation; tests
may stand a fake behind the same Protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

Obj = dict[str, Any]

CONFLICT = 409
NOT_FOUND = 404
GONE = 410
TOO_MANY_REQUESTS = 429


class ApiError(Exception):
    """An API call answered with an error status (the client's exception, without its types)."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}".strip())


class WatchStream(Protocol):
    """Events of one watch request: dicts with `type` and `object`, until the server ends it."""

    def __iter__(self) -> Iterator[Obj]: ...

    def stop(self) -> None:
        """End the stream from another thread."""
        ...


class KubeOps(Protocol):
    """Calls hashpivot makes. Errors raise `ApiError` with the HTTP status."""

    # -- nodes ---------------------------------------------------------------------------
    def list_nodes(self, label_selector: str | None = None) -> tuple[list[Obj], str]:
        """Nodes and the list's resourceVersion."""
        ...

    def watch_nodes(
        self, resource_version: str, label_selector: str | None, timeout_s: float
    ) -> WatchStream: ...

    def get_node(self, name: str) -> Obj: ...

    def patch_node(self, name: str, patch: Obj) -> Obj:
        """JSON merge patch; `metadata.resourceVersion` in `patch` makes it conditional."""
        ...

    # -- pods ----------------------------------------------------------------------------
    def list_pods(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        """Pods in `namespace` (None: every namespace) and the list's resourceVersion."""
        ...

    def watch_pods(
        self, resource_version: str, field_selector: str | None, timeout_s: float
    ) -> WatchStream: ...

    def evict_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Eviction API. 429: a disruption budget refuses it now."""
        ...

    # -- leases ----------------------------------------------------------------------------
    def get_lease(self, namespace: str, name: str) -> Obj: ...

    def create_lease(self, namespace: str, body: Obj) -> Obj: ...

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """PUT; the body's `metadata.resourceVersion` makes it conditional (409 if stale)."""
        ...

    # -- daemonsets ------------------------------------------------------------------------
    def get_daemonset(self, namespace: str, name: str) -> Obj: ...

    def create_daemonset(self, namespace: str, body: Obj) -> Obj: ...
