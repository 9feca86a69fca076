"""A fault-injecting HTTP proxy in front of the tier-2 kube-apiserver.

The controller under test talks plain HTTP to 127.0.0.1:<port>; the proxy forwards every
request over TLS to the real apiserver (the caller's bearer token passes through, so RBAC
is the apiserver's own) and relays the answer, watches included (chunked, as they come).
Rules, matched in order, replace chosen requests with what a sick apiserver does:

- answer a status instead (500, 409, 429, 410) with a `Status` body like the real one;
- drop the connection without an answer;
- answer a watch with the `ERROR` event of an expired resourceVersion (410 Gone);
- forward the request, then hold the answer and never deliver it (the write happened;
  the client is killed while it waits: "kill -9 right after step k").

`down()` drops every open connection and refuses new ones until `up()`. Every request is
logged with what was done to it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
_REASONS = {
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass
class Rule:
    """What to do with matching requests; `times` of them after the first `skip`."""

    name: str
    #: One method or several (None: any).
    method: str | tuple[str, ...] | None = None
    #: Regex searched in the request path (without the query).
    path: str = ""
    #: Substring the query string must contain (e.g. "watch=true").
    query: str | None = None
    status: int | None = None
    drop: bool = False
    gone_event: bool = False
    hold_after: bool = False
    skip: int = 0
    times: int | None = 1
    hits: int = 0
    injected: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str, query: str) -> bool:
        methods = (self.method,) if isinstance(self.method, str) else self.method
        if methods is not None and method not in methods:
            return False
        if self.query is not None and self.query not in query:
            return False
        return re.search(self.path, path) is not None

    @property
    def spent(self) -> bool:
        return self.times is not None and self.injected >= self.times


@dataclass(frozen=True)
class Entry:
    method: str
    path: str
    query: str
    status: int | None
    rule: str | None


def status_body(code: int, message: str) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": _REASONS.get(code, "InternalError"),
            "code": code,
        }
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are the point


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        ca_file: str | None,
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 443
        self._ctx_token = ssl.create_default_context(cafile=ca_file)
        self._ctx_cert = ssl.create_default_context(cafile=ca_file)
        if client_cert is not None:
            self._ctx_cert.load_cert_chain(*client_cert)
        self.rules: list[Rule] = []
        self.log: list[Entry] = []
        self._lock = threading.Lock()
        self._down = False
        self._conns: set[socket.socket] = set()
        self._upstreams: set[http.client.HTTPConnection] = set()
        #: Watch streams being relayed: their upstream connection and an expiry flag.
        self._streams: list[dict[str, Any]] = []
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="fault-proxy",
        )

    # -- control ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        for rule in self.rules:
            rule.release.set()
        self.up()
        self.drop_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)
        rule.release.set()

    def drop_all(self) -> int:
        """Cut every open connection, both sides (watch streams end mid-flight)."""
        with self._lock:
            conns, ups = list(self._conns), list(self._upstreams)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for up in ups:
            with contextlib.suppress(OSError):
                if up.sock is not None:
                    up.sock.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def expire_watches(self) -> int:
        """End every relayed watch the way an apiserver ends one whose resourceVersion was
        compacted away: an `ERROR` event with a 410 `Status`, then the end of the stream."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream["expire"] = True
            with contextlib.suppress(OSError):
                if stream["up"].sock is not None:
                    stream["up"].sock.shutdown(socket.SHUT_RDWR)
        return len(streams)

    def down(self) -> int:
        """The apiserver is gone: drop everything open and refuse what comes."""
        with self._lock:
            self._down = True
        return self.drop_all()

    def up(self) -> None:
        with self._lock:
            self._down = False

    @contextlib.contextmanager
    def outage(self) -> Iterator[int]:
        dropped = self.down()
        try:
            yield dropped
        finally:
            self.up()

    def count(self, method: str, path: str, *, status: int | None = None) -> int:
        """Requests logged with this method, path regex (and answered status)."""
        with self._lock:
            return sum(
                1
                for e in self.log
                if e.method == method
                and re.search(path, e.path)
                and (status is None or e.status == status)
            )

    def kubeconfig(self, token: str, path: Path) -> Path:
        """A kubeconfig for a client of the proxy, authenticated by `token`."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
                    "users": [{"name": "sa", "user": {"token": token}}],
                    "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "sa"}}],
                    "current-context": "proxy",
                }
            )
        )
        return path

    # -- the server ------------------------------------------------------------------------

    def _pick(self, method: str, path: str, query: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.spent or not rule.matches(method, path, query):
                    continue
                rule.hits += 1
                if rule.hits <= rule.skip:
                    continue
                rule.injected += 1
                return rule
        return None

    def _record(self, entry: Entry) -> None:
        with self._lock:
            self.log.append(entry)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._conns.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._conns.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def do_PATCH(self) -> None:
                self._serve()

            def do_DELETE(self) -> None:
                self._serve()

            def _serve(self) -> None:
                method = self.command
                parts = urlsplit(self.path)
                path, query = parts.path, parts.query
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy._down:
                    proxy._record(Entry(method, path, query, None, "down"))
                    self._hang_up()
                    return
                rule = proxy._pick(method, path, query)
                name = rule.name if rule is not None else None
                if rule is not None and rule.drop:
                    proxy._record(Entry(method, path, query, None, name))
                    self._hang_up()
                    return
                if rule is not None and rule.status is not None:
                    proxy._record(Entry(method, path, query, rule.status, name))
                    self._answer(rule.status, status_body(rule.status, f"injected: {name}"))
                    return
                if rule is not None and rule.gone_event:
                    proxy._record(Entry(method, path, query, 200, name))
                    event = {
                        "type": "ERROR",
                        "object": json.loads(
                            status_body(410, "too old resource version (injected)")
                        ),
                    }
                    self._answer(200, json.dumps(event).encode() + b"\n")
                    return
                try:
                    self._forward(method, path, query, body, rule)
                except (OSError, http.client.HTTPException):
                    proxy._record(Entry(method, path, query, None, "upstream failed"))
                    self._hang_up()

            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(
                self, method: str, path: str, query: str, body: bytes | None, rule: Rule | None
            ) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                token = any(k.lower() == "authorization" for k in headers)
                up = http.client.HTTPSConnection(
                    proxy.upstream_host,
                    proxy.upstream_port,
                    context=proxy._ctx_token if token else proxy._ctx_cert,
                    timeout=600,
                )
                with proxy._lock:
                    proxy._upstreams.add(up)
                try:
                    target = f"{path}?{query}" if query else path
                    up.request(method, target, body=body, headers=headers)
                    resp = up.getresponse()
                    streaming = "watch=true" in query or "watch=1" in query
                    proxy._record(Entry(method, path, query, resp.status, rule and rule.name))
                    if rule is not None and rule.hold_after:
                        resp.read()
                        rule.held.set()
                        rule.release.wait(300)
                        self._hang_up()
                        return
                    if streaming and resp.status == 200:
                        self._relay_stream(resp, up)
                        return
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with proxy._lock:
                        proxy._upstreams.discard(up)
                    up.close()

            def _relay_stream(
                self, resp: http.client.HTTPResponse, up: http.client.HTTPConnection
            ) -> None:
                stream: dict[str, Any] = {"up": up, "expire": False}
                with proxy._lock:
                    proxy._streams.append(stream)
                try:
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                    while True:
                        try:
                            data = resp.read1(65536)
                        except (OSError, http.client.HTTPException):
                            data = b""
                        if not data:
                            break
                        self._chunk(data)
                    if stream["expire"]:
                        event = {"type": "ERROR", "object": json.loads(
                            status_body(410, "too old resource version (injected)"))}
                        # On a line of its own, even if the cut left half an event.
                        self._chunk(b"\n" + json.dumps(event).encode() + b"\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                finally:
                    with proxy._lock:
                        proxy._streams.remove(stream)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
