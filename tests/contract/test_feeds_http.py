"""The feed HTTP client against a local server: retries, limits, timeouts and HTTPS."""

from __future__ import annotations

import json
import random

import pytest

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.quality import FeedRejectError, Reject
from orchestrator.models.feeds_config import HttpSettings
from tests.contract.feedserver import FeedServer, Reply, SleepLog


def client(settings: HttpSettings, sleeps: SleepLog) -> FeedHttpClient:
    return FeedHttpClient(settings, sleep=sleeps, rng=random.Random(7))


def test_json_body_is_returned(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    feed_server.json("/v1/prices", '{"USD": 97010, "time": 1736000000}')
    with client(http_settings, sleeps) as http:
        assert http.get(f"{feed_server.base}/v1/prices").json() == {
            "USD": 97010,
            "time": 1736000000,
        }
    assert sleeps.waits == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_with_backoff(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog, status: int
) -> None:
    feed_server.route("/x", Reply(status=status), Reply(status=status), Reply(body=b"[1]"))
    with client(http_settings, sleeps) as http:
        assert http.get(f"{feed_server.base}/x").json() == [1]
    assert feed_server.hits("/x") == 3
    # Jittered doubling: the first wait in [0.25, 0.5], the second in [0.5, 1.0].
    assert len(sleeps.waits) == 2
    assert 0.25 <= sleeps.waits[0] <= 0.5
    assert 0.5 <= sleeps.waits[1] <= 1.0


def test_429_honours_retry_after_up_to_the_cap(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    feed_server.route(
        "/x",
        Reply(status=429, headers={"Retry-After": "2"}),
        Reply(status=429, headers={"Retry-After": "3600"}),
        Reply(body=b"{}"),
    )
    with client(http_settings, sleeps) as http:
        http.get(f"{feed_server.base}/x")
    assert sleeps.waits == [2.0, http_settings.backoff_max_s]


def test_persistent_429_fails_with_its_reason(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    feed_server.route("/x", Reply(status=429))
    with client(http_settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/x")
    assert err.value.reason == Reject.RATE_LIMITED
    assert feed_server.hits("/x") == http_settings.retries + 1


def test_timeout_is_retried_then_reported(feed_server: FeedServer, sleeps: SleepLog) -> None:
    settings = HttpSettings(timeout_s=0.2, retries=1, allow_loopback_http=True)
    feed_server.route("/slow", Reply(hang=True))
    with client(settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/slow")
    assert err.value.reason == Reject.TIMEOUT
    assert feed_server.hits("/slow") == 2
    assert len(sleeps.waits) == 1


def test_timeout_then_success(feed_server: FeedServer, sleeps: SleepLog) -> None:
    settings = HttpSettings(timeout_s=0.2, retries=2, allow_loopback_http=True)
    feed_server.route("/slow", Reply(hang=True), Reply(body=b'{"ok": true}'))
    with client(settings, sleeps) as http:
        assert http.get(f"{feed_server.base}/slow").json() == {"ok": True}


def test_body_cut_short_of_its_length_is_a_transport_error(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    body = json.dumps({"USD": 97010, "time": 1736000000}).encode()
    feed_server.route("/cut", Reply(body=body, cut_at=10))
    with client(http_settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/cut")
    assert err.value.reason == Reject.TRANSPORT
    assert feed_server.hits("/cut") == http_settings.retries + 1


def test_truncated_json_is_refused_without_retry(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    feed_server.json("/trunc", '{"data": {"amount": "97012.3')
    with client(http_settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/trunc").json()
    assert err.value.reason == Reject.BAD_JSON
    assert feed_server.hits("/trunc") == 1


def test_nan_in_json_is_refused(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    feed_server.json("/nan", '{"USD": NaN}')
    with client(http_settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/nan").json()
    assert err.value.reason == Reject.BAD_JSON


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_refused(
    feed_server: FeedServer, sleeps: SleepLog, chunked: bool
) -> None:
    settings = HttpSettings(max_response_bytes=2048, allow_loopback_http=True)
    feed_server.route("/big", Reply(body=b"[" + b"1," * 5000 + b"1]", chunked=chunked))
    with client(settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/big")
    assert err.value.reason == Reject.TOO_LARGE
    assert feed_server.hits("/big") == 1


@pytest.mark.parametrize("status", [301, 400, 403, 404])
def test_other_statuses_fail_at_once(
    feed_server: FeedServer, http_settings: HttpSettings, sleeps: SleepLog, status: int
) -> None:
    feed_server.route("/x", Reply(status=status, headers={"Location": "http://example.com/"}))
    with client(http_settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/x")
    assert err.value.reason == Reject.HTTP_STATUS
    assert feed_server.hits("/x") == 1


def test_plain_http_is_refused_unless_allowed(feed_server: FeedServer, sleeps: SleepLog) -> None:
    feed_server.json("/x", "{}")
    with client(HttpSettings(), sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(f"{feed_server.base}/x")
    assert err.value.reason == Reject.INSECURE_URL
    assert feed_server.requests == []
    with client(HttpSettings(require_https=False), sleeps) as http:
        assert http.get(f"{feed_server.base}/x").json() == {}


def test_loopback_allowance_does_not_cover_other_hosts(sleeps: SleepLog) -> None:
    settings = HttpSettings(allow_loopback_http=True)
    with client(settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get("http://mempool.space/api/v1/blocks")
    assert err.value.reason == Reject.INSECURE_URL


def test_connection_refused_is_a_transport_error(
    http_settings: HttpSettings, sleeps: SleepLog
) -> None:
    server = FeedServer()  # bound, never started: nothing accepts
    url = f"{server.base}/x"
    server.stop()
    with client(http_settings, sleeps) as http, pytest.raises(FeedRejectError) as err:
        http.get(url)
    assert err.value.reason in (Reject.TRANSPORT, Reject.TIMEOUT)
