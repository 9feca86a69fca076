"""What the controller exposes and what it reaches out to: read-only endpoints, bounded
outbound calls, and policies documented as trusted code."""

from __future__ import annotations

import http.client
from pathlib import Path

import httpx
import pytest

from orchestrator.adapters.k8s import KubeClient
from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.quality import FeedRejectError, Reject
from orchestrator.framework import policy as policy_module
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.feeds_config import HttpSettings
from orchestrator.runtime.metrics import ControllerMetrics, Health, MetricsServer
from tests.contract.feedserver import FeedServer, Reply

DOCS = Path(__file__).parents[2] / "docs"


@pytest.fixture
def server() -> MetricsServer:
    metrics = ControllerMetrics()
    health = Health(300.0)
    health.beat()
    srv = MetricsServer(metrics, health, 0, host="127.0.0.1").start()
    yield srv  # type: ignore[misc]
    srv.stop()


def call(port: int, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/", "/../../etc/passwd"])
def test_endpoints_answer_get_and_refuse_every_write(server: MetricsServer, path: str) -> None:
    before = server.metrics.render()
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"):
        assert call(server.port, method, path, b"hashpivot_leader 1\n") in (405, 501), method
    assert call(server.port, "GET", path) == (200 if path in ("/metrics", "/healthz",
                                                              "/readyz") else 404)
    assert server.metrics.render() == before  # nothing a caller sends changes anything


def test_feed_calls_are_bounded_by_default() -> None:
    settings = HttpSettings()
    assert settings.timeout_s == 10.0 and settings.retries == 2
    assert settings.backoff_max_s == 10.0
    assert settings.max_response_bytes == 2_000_000
    assert settings.require_https and not settings.allow_loopback_http
    client = FeedHttpClient(settings)
    try:
        inner = client._client
        assert inner.timeout == httpx.Timeout(10.0)
        assert inner.follow_redirects is False
    finally:
        client.close()
    # Worst case per feed and poll: every attempt times out and every backoff is the cap.
    worst = (settings.retries + 1) * settings.timeout_s + settings.retries * settings.backoff_max_s
    assert worst <= 60.0


def test_feed_bodies_over_the_limit_are_refused_unread() -> None:
    feeds = FeedServer()
    big = b"[" + b"1," * 4000 + b"1]"
    feeds.route("/declared", Reply(body=big))
    feeds.route("/chunked", Reply(body=big, chunked=True))
    feeds.route("/moved", Reply(status=302, headers={"Location": "https://elsewhere.test/"}))
    feeds.route("/slow", Reply(hang=True))
    feeds.start()
    settings = HttpSettings(max_response_bytes=1024, timeout_s=0.3, retries=0,
                            allow_loopback_http=True)
    client = FeedHttpClient(settings, sleep=lambda s: None)
    try:
        for path, reason in (("/declared", Reject.TOO_LARGE), ("/chunked", Reject.TOO_LARGE),
                             ("/moved", Reject.HTTP_STATUS), ("/slow", Reject.TIMEOUT)):
            with pytest.raises(FeedRejectError) as err:
                client.get(f"{feeds.base}{path}")
            assert err.value.reason == reason, path
        with pytest.raises(FeedRejectError) as err:
            FeedHttpClient(HttpSettings()).get("http://feeds.example/plain")
        assert err.value.reason == Reject.INSECURE_URL
    finally:
        client.close()
        feeds.stop()


def test_kubernetes_calls_have_timeouts() -> None:
    from kubernetes import client as k8s

    kube = KubeClient(k8s.ApiClient(k8s.Configuration()))
    assert 0 < kube.request_timeout_s <= 60
    config = KubernetesConfig()
    assert config.write_budget_s <= 60 and config.lease_renew_deadline_s < config.lease_duration_s


def test_policies_are_documented_as_trusted_code() -> None:
    assert "trusted code" in (policy_module.__doc__ or "")
    ops = (DOCS / "operations.md").read_text()
    assert "trusted code" in ops
