"""Tier 1: the real `kubernetes` client under `KubeClient`, against an emulated API server.

A local HTTP server answers like kube-apiserver does for the calls hashpivot makes:
paginated lists, chunked watch streams with bookmarks and 410 Gone, merge patches with a
resourceVersion precondition (409), and an eviction refused by a disruption budget (429).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.k8s.client import CountingApiClient, KubeClient
from orchestrator.adapters.k8s.watch import ObjectCache


def _node(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv, "labels": {"pool": "gpu"}}}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


class FakeApiServer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, dict[str, list[str]], dict[str, str], Any]]] = []
    node_rv = "20"
    held = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: list[dict[str, Any]], hold_s: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            line = (json.dumps(event) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        if hold_s:
            FakeApiServer.held.set()
            time.sleep(hold_s)
        with contextlib.suppress(OSError):  # the client may have hung up (stop())
            self.wfile.write(b"0\r\n\r\n")

    def _record(self, body: Any = None) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        FakeApiServer.seen.append((self.command, parts.path, query, dict(self.headers), body))
        return parts.path, query

    def do_GET(self) -> None:
        path, q = self._record()
        if path == "/api/v1/nodes" and q.get("watch") == ["true"]:
            rv = q.get("resourceVersion", [""])[0]
            if rv == "1":
                gone = _status(410, "Expired", "too old resource version: 1 (20)")
                self._stream([{"type": "ERROR", "object": gone}])
            elif rv == "hold":
                self._stream([{"type": "ADDED", "object": _node("n9", "99")}], hold_s=20.0)
            else:
                self._stream(
                    [
                        {"type": "ADDED", "object": _node("n3", "21")},
                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "25"}}},
                    ]
                )
        elif path == "/api/v1/nodes":
            if q.get("continue") == ["tok"]:
                page = {"metadata": {"resourceVersion": "20"}, "items": [_node("n2", "12")]}
            else:
                page = {
                    "metadata": {"resourceVersion": "20", "continue": "tok"},
                    "items": [_node("n1", FakeApiServer.node_rv)],
                }
            self._send(200, page)
        else:
            self._send(404, _status(404, "NotFound", f"{path} not found"))

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_PATCH(self) -> None:
        body = self._body()
        path, _ = self._record(body)
        if body["metadata"].get("resourceVersion") != FakeApiServer.node_rv:
            self._send(409, _status(409, "Conflict", "the object has been modified"))
            return
        node = _node(path.rsplit("/", 1)[1], "30")
        node["metadata"]["labels"].update(body["metadata"].get("labels") or {})
        self._send(200, node)

    def do_POST(self) -> None:
        body = self._body()
        path, _ = self._record(body)
        if path.endswith("/eviction"):
            self._send(
                429,
                _status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                ),
            )
        else:
            self._send(201, body)


@pytest.fixture
def server() -> Iterator[str]:
    FakeApiServer.seen = []
    FakeApiServer.held.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def api(server: str) -> Iterator[CountingApiClient]:
    configuration = k8s.Configuration(host=server)
    api_client = CountingApiClient(configuration)
    yield api_client
    api_client.close()


def test_paginated_list_and_counting(api: CountingApiClient) -> None:
    kube = KubeClient(api)
    items, rv = kube.list_nodes("pool=gpu")
    assert [i["metadata"]["name"] for i in items] == ["n1", "n2"] and rv == "20"
    first, second = FakeApiServer.seen
    assert first[2]["labelSelector"] == ["pool=gpu"] and first[2]["limit"] == ["500"]
    assert second[2]["continue"] == ["tok"]
    assert api.reads == 2 and api.writes == 0


def test_merge_patch_with_resource_version_and_conflict(api: CountingApiClient) -> None:
    kube = KubeClient(api, field_manager="hp-test")
    node = kube.patch_node(
        "n1", {"metadata": {"resourceVersion": "20", "labels": {"hashpivot.io/mode": "mine"}}}
    )
    assert node["metadata"]["labels"]["hashpivot.io/mode"] == "mine"
    method, path, query, headers, body = FakeApiServer.seen[-1]
    assert (method, path) == ("PATCH", "/api/v1/nodes/n1")
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert query["fieldManager"] == ["hp-test"]
    assert body["metadata"]["resourceVersion"] == "20"
    with pytest.raises(ApiError) as err:
        kube.patch_node("n1", {"metadata": {"resourceVersion": "19"}})
    assert err.value.status == 409 and "modified" in err.value.message
    assert api.writes == 2 and api.writes_to("/api/v1/nodes/n1") == 2


def test_eviction_refused_by_budget_is_429(api: CountingApiClient) -> None:
    kube = KubeClient(api)
    with pytest.raises(ApiError) as err:
        kube.evict_pod("t", "job", uid="u-1")
    assert err.value.status == 429 and "disruption budget" in err.value.message
    method, path, _, _, body = FakeApiServer.seen[-1]
    assert (method, path) == ("POST", "/api/v1/namespaces/t/pods/job/eviction")
    assert body["kind"] == "Eviction" and body["deleteOptions"]["preconditions"]["uid"] == "u-1"
    assert api.writes_to("/eviction") == 1


def test_not_found_is_an_api_error(api: CountingApiClient) -> None:
    with pytest.raises(ApiError) as err:
        KubeClient(api).get_lease("hp", "leader")
    assert err.value.status == 404


def test_watch_stream_bookmarks_and_410(api: CountingApiClient) -> None:
    kube = KubeClient(api)
    events = list(kube.watch_nodes("20", "pool=gpu", 5.0))
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    query = FakeApiServer.seen[-1][2]
    assert query["watch"] == ["true"] and query["allowWatchBookmarks"] == ["true"]
    assert query["resourceVersion"] == ["20"] and query["timeoutSeconds"] == ["5"]
    with pytest.raises(ApiError) as err:
        list(kube.watch_nodes("1", None, 5.0))
    assert err.value.status == 410


def test_cache_over_the_real_client_relists_after_410(api: CountingApiClient) -> None:
    kube = KubeClient(api)
    versions = iter(["1", None])

    def watcher(rv: str, timeout: float):  # type: ignore[no-untyped-def]
        forced = next(versions, None)
        return kube.watch_nodes(forced or rv, None, timeout)

    cache = ObjectCache(lambda: kube.list_nodes(None), watcher, watch_timeout_s=5.0)
    cache.run_once()  # list, then a watch that answers 410
    assert cache.gone == 1 and cache.lists == 1
    cache.run_once()  # relist, then a watch with an event and a bookmark
    assert cache.lists == 2
    assert sorted(i["metadata"]["name"] for i in cache.items()) == ["n1", "n2", "n3"]
    assert cache.resource_version == "25"


def test_stop_unblocks_a_held_watch(api: CountingApiClient) -> None:
    kube = KubeClient(api)
    stream = kube.watch_nodes("hold", None, 30.0)
    got: list[str] = []
    done = threading.Event()

    def read() -> None:
        for event in stream:
            got.append(event["type"])
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert FakeApiServer.held.wait(10.0)
    started = time.monotonic()
    stream.stop()
    assert done.wait(10.0)
    assert time.monotonic() - started < 5.0
    assert got == ["ADDED"]


def test_no_answer_is_an_api_error_with_status_0() -> None:
    configuration = k8s.Configuration(host="http://127.0.0.1:9")  # discard port: refused
    configuration.retries = False
    api = CountingApiClient(configuration)
    try:
        with pytest.raises(ApiError) as err:
            KubeClient(api, request_timeout_s=2.0).get_node("n1")
        assert err.value.status == 0
    finally:
        api.close()
