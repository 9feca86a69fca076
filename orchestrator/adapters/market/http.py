"""A small httpx wrapper for market feeds: timeouts, bounded retries, size limit, HTTPS.

Retries (exponential backoff with jitter, Retry-After honoured up to the cap) cover only
what may heal by itself: timeouts, dropped connections, 429 and 5xx. Bodies are read by
streaming and refused past `max_response_bytes`, so a broken or hostile endpoint cannot
exhaust memory. Redirects are not followed: a feed that moves is a configuration change.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from orchestrator.adapters.market.quality import FeedRejectError, Reject, redact
from orchestrator.models.feeds_config import HeaderSecret, HttpSettings

Sleep = Callable[[float], None]


class _RedactUrls(logging.Filter):
    """httpx logs every request's URL (INFO): mask credentials and query values first."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_RedactUrls())


@dataclass(frozen=True, slots=True)
class HttpResponse:
    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]

    def text(self) -> str:
        try:
            return self.body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FeedRejectError(
                Reject.SCHEMA, f"body is not UTF-8: {exc}", source=self.url
            ) from None

    def json(self) -> Any:
        return parse_json(self.body, source=self.url)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_json(body: bytes, *, source: str) -> Any:
    """Decode JSON, refusing NaN and Infinity (Python's json would accept them).

    A few kilobytes of nested brackets are valid JSON that exhausts the decoder's
    recursion limit: that is refused like any other body the feed cannot use.
    """
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedRejectError(Reject.BAD_JSON, f"not valid JSON: {exc}", source=source) from None
    except RecursionError:
        raise FeedRejectError(
            Reject.BAD_JSON, "nested deeper than the decoder allows", source=source
        ) from None


class FeedHttpClient:
    """GET with the feed policy. One instance per process; close it when done."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.timeout_s),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "application/json, text/csv;q=0.9, text/plain;q=0.8",
            },
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FeedHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backoff_s(self, attempt: int, retry_after: str | None = None) -> float:
        """Wait before retry number `attempt` (0-based): jittered doubling, capped."""
        cap = self.settings.backoff_max_s
        if retry_after is not None:
            try:
                wait = float(retry_after)
            except ValueError:
                wait = math.nan  # an HTTP-date; fall back to our own schedule
            if math.isfinite(wait):  # 'nan' or 'inf' from a server would break sleep()
                return min(max(wait, 0.0), cap)
        base = min(cap, self.settings.backoff_initial_s * (2.0**attempt))
        return base * self._rng.uniform(0.5, 1.0)

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, HeaderSecret] | None = None,
    ) -> HttpResponse:
        """GET `url`, retrying what may heal; raise FeedRejectError with the reason otherwise.

        `headers` are read (environment or file) for this request only and never kept."""
        try:
            self.settings.check_url(url, where="feed")
        except ValueError as exc:
            raise FeedRejectError(Reject.INSECURE_URL, str(exc), source=url) from None
        sent = resolve_headers(headers or {}, source=url)
        last: _RetryableError | None = None
        for attempt in range(self.settings.retries + 1):
            if last is not None:
                self._sleep(self.backoff_s(attempt - 1, last.retry_after))
            try:
                return self._once(url, params, sent)
            except _RetryableError as exc:
                last = exc
        assert last is not None
        raise FeedRejectError(
            last.reason, f"{last.detail} (after {attempt + 1} attempts)", source=url
        )

    def _once(
        self, url: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> HttpResponse:
        limit = self.settings.max_response_bytes
        try:
            with self._client.stream("GET", url, params=params, headers=headers) as resp:
                status = resp.status_code
                if status == 429 or status >= 500:
                    reason = Reject.RATE_LIMITED if status == 429 else Reject.SERVER_ERROR
                    raise _RetryableError(
                        reason, f"HTTP {status}", url, resp.headers.get("Retry-After")
                    )
                if status != 200:
                    raise FeedRejectError(Reject.HTTP_STATUS, f"HTTP {status}", source=url)
                declared = resp.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise FeedRejectError(
                        Reject.TOO_LARGE, f"{declared} bytes declared > {limit}", source=url
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FeedRejectError(
                            Reject.TOO_LARGE, f"body exceeds {limit} bytes", source=url
                        )
                    chunks.append(chunk)
                return HttpResponse(str(resp.url), status, b"".join(chunks), dict(resp.headers))
        except httpx.TimeoutException as exc:
            raise _RetryableError(
                Reject.TIMEOUT, f"timed out ({type(exc).__name__})", url
            ) from None
        except httpx.TransportError as exc:
            # Refused or dropped connections, bodies cut short of their Content-Length.
            raise _RetryableError(Reject.TRANSPORT, f"{type(exc).__name__}: {exc}", url) from None


def resolve_headers(headers: Mapping[str, HeaderSecret], *, source: str) -> dict[str, str]:
    """Header values from their environment variables or files. A missing one is named
    (variable or path), never its value."""
    out: dict[str, str] = {}
    for name, secret in headers.items():
        if secret.env is not None:
            value = os.environ.get(secret.env)
            if not value:
                raise FeedRejectError(
                    Reject.CREDENTIALS,
                    f"header {name}: environment variable {secret.env} is not set",
                    source=source,
                )
        else:
            assert secret.file is not None
            try:
                value = Path(secret.file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise FeedRejectError(
                    Reject.CREDENTIALS,
                    f"header {name}: cannot read {secret.file} ({type(exc).__name__})",
                    source=source,
                ) from None
            if not value:
                raise FeedRejectError(
                    Reject.CREDENTIALS, f"header {name}: {secret.file} is empty", source=source
                )
        out[name] = secret.prefix + value
    return out


class _RetryableError(FeedRejectError):
    def __init__(self, reason: Reject, detail: str, url: str, retry_after: str | None = None):
        super().__init__(reason, detail, source=url)
        self.retry_after = retry_after
