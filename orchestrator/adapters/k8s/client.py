"""The real Kubernetes API behind `KubeOps`, and a client that counts its calls.

Requests go through the official client's `ApiClient` (auth, TLS, kubeconfig or
in-cluster config, connection pool) but carry plain JSON both ways: the generated typed
methods would convert every object to model classes and back, which costs time on large
lists and loses fields a newer server adds.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError as Urllib3Error

from orchestrator.adapters.k8s.api import ApiError, Obj
from orchestrator.errors import ConfigError

MERGE_PATCH = "application/merge-patch+json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LIST_PAGE = 500


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file, else the pod's service account when in a cluster,
    else the default kubeconfig ($KUBECONFIG or ~/.kube/config).

    A file that is missing or unusable is a `ConfigError` naming it, not the client's
    traceback."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except ConfigException as exc:
            raise ConfigError(f"in-cluster service account unusable: {exc}") from None
        return k8s.ApiClient(configuration)
    path = kubeconfig or os.environ.get("KUBECONFIG") or k8s_config.KUBE_CONFIG_DEFAULT_LOCATION
    files = [os.path.expanduser(each) for each in path.split(os.pathsep)]
    first = files[0]
    if not os.path.exists(first):
        raise ConfigError(
            "kubeconfig not found (give --kubeconfig, set KUBECONFIG, or run in a cluster)",
            source=first,
        )
    for each in files:
        if os.path.exists(each):
            _check_kubeconfig_shape(each)
    try:
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except ConfigException as exc:
        raise ConfigError(f"kubeconfig unusable: {exc}", source=first) from None
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        # A shape the check above lets through that the client's loader still trips on.
        raise ConfigError(f"kubeconfig unreadable: {type(exc).__name__}: {exc}",
                          source=first) from None
    return api


def _check_kubeconfig_shape(path: str) -> None:
    """Refuse a kubeconfig that is not YAML or not the shape the client reads (a mapping
    whose clusters, contexts and users are lists of mappings), naming the file and what
    is wrong: the client's loader would index into it and fail with a Python error."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"kubeconfig unreadable: {exc.strerror}", source=path) from None
    except UnicodeDecodeError:
        raise ConfigError("kubeconfig unreadable: not UTF-8 text", source=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"kubeconfig unreadable: {problem}{where}", source=path) from None
    if doc is None:
        raise ConfigError("kubeconfig unreadable: the file is empty", source=path)
    if not isinstance(doc, dict):
        raise ConfigError("kubeconfig unreadable: expected a mapping with clusters, "
                          f"contexts and users, got {type(doc).__name__}", source=path)
    for key in ("clusters", "contexts", "users"):
        entries = doc.get(key) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"kubeconfig unreadable: {key} must be a list of entries, "
                              "each a mapping", source=path)


def check_access(kube: KubeClient) -> None:
    """One cheap read (a page of one node) before the watches start, so a wrong server,
    a rejected token or a missing RBAC grant is one clear error instead of watches that
    retry for a minute and then say nothing about why."""
    server = str(getattr(kube.api.configuration, "host", "") or "the API server")
    try:
        kube.request("GET", "/api/v1/nodes", query={"limit": "1"}, timeout=(10.0, 20.0))
    except ApiError as exc:
        if exc.status == 0:
            raise ConfigError(f"cannot reach the Kubernetes API server {server}: "
                              f"{_cause(exc.message)}") from None
        if exc.status == 401:
            raise ConfigError(f"Kubernetes API server {server}: token rejected (401 "
                              "Unauthorized); check the kubeconfig's or the service "
                              "account's credentials") from None
        if exc.status == 403:
            raise ConfigError(f"Kubernetes API server {server}: not allowed to list nodes "
                              f"(403, RBAC): {exc.message}") from None
        raise ConfigError(f"Kubernetes API server {server}: {exc}") from None


def _cause(message: str) -> str:
    """The last, most specific part of urllib3's nested connection error text."""
    tail = message.rsplit(": ", 1)[-1].strip(" ')\"")
    return tail or message


class CountingApiClient(k8s.ApiClient):
    """An ApiClient that counts every HTTP call it makes, by method and path.

    Proves shadow mode writes nothing: wrap the client, run, read `writes`.
    """

    def __init__(self, configuration: Any = None, **kwargs: Any) -> None:
        super().__init__(configuration, **kwargs)
        self._count_lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()

    @classmethod
    def wrapping(cls, api: k8s.ApiClient) -> CountingApiClient:
        """A counting client with the same configuration (server, credentials) as `api`."""
        return cls(api.configuration)

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        with self._count_lock:
            self.calls[(method.upper(), urlsplit(url).path)] += 1
        return super().call_api(method, url, *args, **kwargs)

    def count(self, methods: frozenset[str] | None = None) -> int:
        with self._count_lock:
            return sum(n for (m, _), n in self.calls.items() if methods is None or m in methods)

    @property
    def writes(self) -> int:
        return self.count(WRITE_METHODS)

    @property
    def reads(self) -> int:
        return self.count(frozenset({"GET"}))

    def writes_to(self, path_part: str) -> int:
        """Write calls whose path contains `path_part` (e.g. '/eviction')."""
        with self._count_lock:
            return sum(
                n for (m, p), n in self.calls.items() if m in WRITE_METHODS and path_part in p
            )


def _error_from(status: int, data: bytes | str | None, reason: str = "") -> ApiError:
    message = reason
    if data:
        try:
            body = json.loads(data)
            message = str(body.get("message") or body.get("reason") or message)
        except (ValueError, AttributeError):
            message = str(data)[:200]
    return ApiError(status, message)


class _RawWatch(k8s_watch.Watch):
    """`kubernetes.watch.Watch` without model conversion: events keep the API's JSON."""

    def unmarshal_event(self, data: str, return_type: Any) -> Obj | None:
        if not data or data.isspace():
            return None
        try:
            event: Obj = json.loads(data)
        except json.JSONDecodeError:
            return None
        event["raw_object"] = event.get("object")
        obj = event.get("object")
        if event.get("type") != "ERROR" and isinstance(obj, dict):
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = rv
        return event


class _Stream:
    """One watch request. `stop()` from another thread unblocks the reader."""

    def __init__(self, kube: KubeClient, path: str, query: dict[str, str], timeout_s: float):
        self._kube = kube
        self._path = path
        self._query = query
        self._timeout_s = timeout_s
        self._watch = _RawWatch(return_type="raw")  # type: ignore[no-untyped-call]
        self._stopped = False

    def _open(self, **kwargs: Any) -> Any:
        query = dict(self._query)
        if kwargs.get("resource_version"):
            query["resourceVersion"] = str(kwargs["resource_version"])
        query["timeoutSeconds"] = str(int(self._timeout_s))
        return self._kube.request(
            "GET",
            self._path,
            query=query | {"watch": "true"},
            stream=True,
            timeout=(10.0, self._timeout_s + 30.0),
        )

    def __iter__(self) -> Iterator[Obj]:
        kwargs: dict[str, Any] = {"timeout_seconds": int(self._timeout_s)}
        if "resourceVersion" in self._query:
            kwargs["resource_version"] = self._query["resourceVersion"]
        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._open, **kwargs
            ):
                if isinstance(event, dict):
                    yield {"type": event.get("type"), "object": event.get("raw_object")}
        except ApiException as exc:
            raise _error_from(int(exc.status or 0), exc.body, str(exc.reason or "")) from None
        except (Urllib3Error, OSError, ValueError):
            if not self._stopped:
                raise
            # stop() shut the socket under the reader: that is how a stream ends early.

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]


class KubeClient:
    """`KubeOps` over the official client's ApiClient (`load_api_client`)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        field_manager: str = "hashpivot",
        request_timeout_s: float = 30.0,
    ) -> None:
        self.api = api
        self.field_manager = field_manager
        self.request_timeout_s = request_timeout_s

    # -- transport -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """One API call. JSON in, JSON out (or the raw response when `stream`)."""
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        if method in WRITE_METHODS and method != "DELETE":
            params.append(("fieldManager", self.field_manager))
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        m, url, hdrs, payload, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api.call_api(
                m,
                url,
                header_params=hdrs,
                body=payload,
                post_params=post,
                _request_timeout=timeout or self.request_timeout_s,
            )
        except ApiException as exc:
            raise _error_from(int(exc.status or 0), exc.body, str(exc.reason or "")) from None
        except (Urllib3Error, OSError) as exc:
            # No answer at all (connection refused, timeout): status 0, reported like the rest.
            raise ApiError(0, f"{method} {path}: {exc}") from None
        if stream:
            if not 200 <= resp.status <= 299:
                raw = resp.read()  # type: ignore[no-untyped-call]
                raise _error_from(resp.status, raw, str(resp.reason or ""))
            return resp.response
        data = resp.read()  # type: ignore[no-untyped-call]
        if not 200 <= resp.status <= 299:
            raise _error_from(resp.status, data, str(resp.reason or ""))
        return json.loads(data) if data else {}

    def _list(self, path: str, query: dict[str, str]) -> tuple[list[Obj], str]:
        items: list[Obj] = []
        token: str | None = None
        rv = ""
        while True:
            page = self.request(
                "GET",
                path,
                query=query | {"limit": str(_LIST_PAGE)} | ({"continue": token} if token else {}),
            )
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            token = meta.get("continue")
            if not token:
                return items, rv

    @staticmethod
    def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
        query: dict[str, str] = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        return query

    def _watch(
        self, path: str, resource_version: str, query: dict[str, str], timeout_s: float
    ) -> _Stream:
        query = query | {"allowWatchBookmarks": "true"}
        if resource_version:
            query["resourceVersion"] = resource_version
        return _Stream(self, path, query, timeout_s)

    # -- nodes ---------------------------------------------------------------------------

    def list_nodes(self, label_selector: str | None = None) -> tuple[list[Obj], str]:
        return self._list("/api/v1/nodes", self._selectors(label_selector, None))

    def watch_nodes(
        self, resource_version: str, label_selector: str | None, timeout_s: float
    ) -> _Stream:
        return self._watch(
            "/api/v1/nodes", resource_version, self._selectors(label_selector, None), timeout_s
        )

    def get_node(self, name: str) -> Obj:
        result: Obj = self.request("GET", f"/api/v1/nodes/{name}")
        return result

    def patch_node(self, name: str, patch: Obj) -> Obj:
        result: Obj = self.request(
            "PATCH", f"/api/v1/nodes/{name}", body=patch, content_type=MERGE_PATCH
        )
        return result

    # -- pods ----------------------------------------------------------------------------

    @staticmethod
    def _pods_path(namespace: str | None) -> str:
        return f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"

    def list_pods(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        return self._list(
            self._pods_path(namespace), self._selectors(label_selector, field_selector)
        )

    def watch_pods(
        self, resource_version: str, field_selector: str | None, timeout_s: float
    ) -> _Stream:
        return self._watch(
            "/api/v1/pods", resource_version, self._selectors(None, field_selector), timeout_s
        )

    def evict_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        body: Obj = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if uid:
            # Evict the pod we decided on, never a namesake created since.
            body["deleteOptions"] = {"preconditions": {"uid": uid}}
        self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body=body)

    # -- leases ----------------------------------------------------------------------------

    @staticmethod
    def _leases(namespace: str) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def get_lease(self, namespace: str, name: str) -> Obj:
        result: Obj = self.request("GET", f"{self._leases(namespace)}/{name}")
        return result

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        result: Obj = self.request("POST", self._leases(namespace), body=body)
        return result

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        result: Obj = self.request("PUT", f"{self._leases(namespace)}/{name}", body=body)
        return result

    # -- events ----------------------------------------------------------------------------

    def create_event(self, namespace: str, body: Obj) -> Obj:
        """An `events.k8s.io/v1` Event (see `events.NodeEvents`)."""
        result: Obj = self.request(
            "POST", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", body=body
        )
        return result

    # -- daemonsets ------------------------------------------------------------------------

    def get_daemonset(self, namespace: str, name: str) -> Obj:
        result: Obj = self.request("GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")
        return result

    def create_daemonset(self, namespace: str, body: Obj) -> Obj:
        result: Obj = self.request(
            "POST", f"/apis/apps/v1/namespaces/{namespace}/daemonsets", body=body
        )
        return result
