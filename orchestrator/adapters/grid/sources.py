"""Where live grid messages come from: a polled URL and a watched file.

Each source hands back the raw body of a new message (or nothing); `parse_message`
turns a body into a `GridMessage` or a `GridSignalError` saying why not. Nothing a
source sends raises anything else: a body that is not JSON, has the wrong types, is too
large, or a server that is down or slow becomes a `GridSignalError` with a reason (the
metric's label) and a line for the log.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from orchestrator.adapters.market.http import FeedHttpClient, parse_json, resolve_headers
from orchestrator.adapters.market.quality import FeedRejectError
from orchestrator.errors import HashpivotError
from orchestrator.models.contract import GridMessage, LiveSignals


class GridSignalError(HashpivotError):
    """A grid message that could not be read or used; `reason` labels the metric."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def parse_message(body: bytes, *, source: str, max_bytes: int) -> GridMessage:
    """The message in `body`; GridSignalError naming the source and the first bad field."""
    if len(body) > max_bytes:
        raise GridSignalError("too_large", f"{source}: {len(body)} bytes > {max_bytes}")
    try:
        data = parse_json(body, source=source)
    except FeedRejectError as exc:
        raise GridSignalError("bad_json", str(exc)) from None  # names the source
    if not isinstance(data, dict):
        raise GridSignalError("schema", f"{source}: expected a JSON object, got "
                                        f"{type(data).__name__}")
    try:
        return GridMessage.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(body)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise GridSignalError("schema", f"{source}: {where}: {first['msg']}{more}") from None


class FileSource:
    """A file holding one GridMessage, read again whenever its content changes."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self._stat: tuple[int, int] | None = None
        self._digest: bytes | None = None

    @property
    def name(self) -> str:
        return f"file {self.path}"

    def forget(self) -> None:
        """Read the file again at the next poll, changed or not."""
        self._stat = self._digest = None

    def poll(self) -> bytes | None:
        """The file's body when it changed since the last poll (None: unchanged)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None  # not written yet: no message, nothing wrong
        except OSError as exc:
            raise GridSignalError("unreadable", f"{self.name}: {exc.strerror}") from None
        stat = (st.st_mtime_ns, st.st_size)
        if stat == self._stat:
            return None
        if st.st_size > self.max_bytes:
            self._stat = stat
            raise GridSignalError("too_large", f"{self.name}: {st.st_size} bytes > "
                                               f"{self.max_bytes}")
        try:
            with self.path.open("rb") as handle:
                body = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise GridSignalError("unreadable", f"{self.name}: {exc.strerror}") from None
        self._stat = stat
        digest = hashlib.sha256(body).digest()
        if digest == self._digest:
            return None  # touched, not changed
        self._digest = digest
        return body


class UrlSource:
    """A URL polled every `poll_s` (monotonic time) for a GridMessage."""

    def __init__(self, live: LiveSignals, *, client: FeedHttpClient | None = None,
                 clock: Callable[[], float] = time.monotonic):
        assert live.url is not None
        self.url = live.url
        self.live = live
        self.client = client or FeedHttpClient(live.http)
        self._clock = clock
        self._next: float | None = None

    @property
    def name(self) -> str:
        return f"url {self.url.split('?')[0]}"

    def poll(self) -> bytes | None:
        """The body when a poll is due (None: not yet); GridSignalError when the server is
        down, slow, refuses or sends too much."""
        now = self._clock()
        if self._next is not None and now < self._next:
            return None
        self._next = now + self.live.poll_s
        try:
            return self.client.get(self.url, headers=self.live.headers).body
        except FeedRejectError as exc:
            raise GridSignalError(str(exc.reason), f"{self.name}: {exc}") from None

    def close(self) -> None:
        self.client.close()


def post_ack(live: LiveSignals, payload: Mapping[str, Any]) -> None:
    """POST an acknowledgement to `live.ack_url` (its http settings' URL policy and
    timeout, the poll's headers); GridSignalError when it fails."""
    assert live.ack_url is not None
    try:
        live.http.check_url(live.ack_url, where="ack_url")
    except ValueError as exc:
        raise GridSignalError("insecure_url", f"ack {live.ack_url}: {exc}") from None
    try:
        headers = resolve_headers(live.headers, source=live.ack_url)
        resp = httpx.post(live.ack_url, content=json.dumps(payload).encode(),
                          headers={"Content-Type": "application/json", **headers},
                          timeout=live.http.timeout_s, follow_redirects=False)
    except FeedRejectError as exc:
        raise GridSignalError("credentials", f"ack: {exc}") from None
    except httpx.HTTPError as exc:
        raise GridSignalError("transport", f"ack {live.ack_url}: {type(exc).__name__}") from None
    if resp.status_code >= 300:
        raise GridSignalError("http_status", f"ack {live.ack_url}: HTTP {resp.status_code}")
