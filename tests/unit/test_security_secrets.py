"""No secret reaches the logs, the journal or the metrics.

Secrets a controller comes near: the API token of its kubeconfig, credentials a site may
put in a feed URL, and whatever tenants put in their pods (the miner's wallet comes from a
Secret the controller never reads: the kubelet does). A run that meets all of them, with
every logger at DEBUG and its failures forced, must not repeat any of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s

from orchestrator.adapters.k8s import KubeClient, miner_daemonset_manifest
from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.errors import FeedError
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.runtime.metrics import ControllerMetrics
from tests.contract.feedserver import FeedServer, Reply
from tests.faults.fake_site import FakeSite

TOKEN = "eyJhbGciOiJSUzI1NiJ9.SECRET-SA-TOKEN-4f9a"
WALLET = "bc1qSECRETWALLETq8z0"
FEED_PASSWORD = "SECRET-FEED-PASSWORD"
FEED_KEY = "SECRET-QUERY-KEY-77"
SECRETS = (TOKEN, WALLET, FEED_PASSWORD, FEED_KEY)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "urllib3", "kubernetes", "hashpivot", "orchestrator"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def test_the_api_token_never_appears_in_errors_or_logs(all_logs: pytest.LogCaptureFixture,
                                                       ) -> None:
    server = FeedServer()  # plays an apiserver that fails every way it can
    server.route("/api/v1/nodes", Reply(status=401, body=b'{"message": "Unauthorized"}'))
    server.route("/api/v1/nodes/n0", Reply(status=500, body=b"<html>oops</html>"))
    server.start()
    try:
        config = k8s.Configuration()
        config.host = server.base
        config.api_key = {"authorization": f"Bearer {TOKEN}"}
        kube = KubeClient(k8s.ApiClient(config), request_timeout_s=2.0)
        messages = []
        for call in (kube.list_nodes, lambda: kube.patch_node("n0", {}),
                     lambda: kube.get_node("missing")):
            try:
                call()
            except ApiError as exc:
                messages.append(str(exc))
        assert len(messages) == 3
    finally:
        server.stop()
    text = "\n".join(messages) + "\n".join(r.getMessage() for r in all_logs.records)
    assert not leaked(text), leaked(text)


def test_feed_credentials_never_appear_in_errors_logs_or_metrics(
    all_logs: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "blocks" in request.url.path:
            raise httpx.ConnectError(f"refused: {request.url}", request=request)
        return httpx.Response(503, content=f"bad key {request.url}".encode())

    base = f"https://reader:{FEED_PASSWORD}@feeds.test"
    config = LiveMarketConfig.model_validate({
        "http": {"retries": 1},
        "chain_sources": [{"kind": "esplora", "base_url": f"{base}/api"}],
        "price_sources": [{"kind": "coinbase", "base_url": base}],
        "power_sources": {"default": {"kind": "http_json",
                                      "url": f"{base}/power.json?key={FEED_KEY}",
                                      "value_path": "price"}},
    })
    market = LiveMarketSource.from_config(config, transport=httpx.MockTransport(handler),
                                          sleep=lambda s: None)
    metrics = ControllerMetrics()
    try:
        market.snapshot(1.8e9)
    except FeedError as exc:
        message = str(exc)
    else:
        raise AssertionError("every feed failed, yet a snapshot was made")
    metrics.observe_rejections(market.rejection_counts())
    status = json.dumps({k: v.model_dump(mode="json") if hasattr(v, "model_dump") else str(v)
                         for k, v in market.status(1.8e9).items()}, default=str)
    text = "\n".join([message, status, metrics.render().decode(),
                      *(r.getMessage() for r in all_logs.records)])
    assert not leaked(text), leaked(text)
    assert "feeds.test" in text  # the host is kept: an operator must know which feed failed


def test_tenant_and_miner_secrets_never_reach_journal_logs_or_metrics(
    tmp_path: Path, all_logs: pytest.LogCaptureFixture
) -> None:
    site = FakeSite(tmp_path)
    # A tenant's pod carries secrets in its env and its annotations; the miner's pods are
    # given the wallet Secret's keys as env (the kubelet reads the Secret, not hashpivot).
    site.tenant("job-1", node=None)
    pod = site.kube.pods["t/job-1"]
    pod["spec"]["containers"][0]["env"] = [{"name": "HF_TOKEN", "value": TOKEN}]
    pod["metadata"]["annotations"]["team.example/api-key"] = FEED_KEY
    for key, miner in site.kube.pods.items():
        if key.startswith("hashpivot/"):
            miner["spec"]["containers"][0]["env"] = [{"name": "WALLET", "value": WALLET}]
    metrics = ControllerMetrics()
    site.deps.metrics = metrics
    site.want("ai")
    site.step(4)
    journal = "".join(p.read_text() for p in site.folder.glob("*.jsonl"))
    text = "\n".join([journal, metrics.render().decode(),
                      *(r.getMessage() for r in all_logs.records)])
    assert "job-1" in journal  # the tenant is in the journal, as demand
    assert not leaked(text), leaked(text)


def test_the_miner_daemonset_names_its_wallet_secret_never_its_value() -> None:
    config = KubernetesConfig(miner_daemonset="hashpivot-miner")
    manifest = miner_daemonset_manifest(config, "miner:1", wallet_secret="miner-wallet")
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "miner-wallet"}}]
    assert "env" not in container
