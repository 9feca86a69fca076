"""API keys in request headers, read from the environment or a mounted file (a Kubernetes
Secret): sent to the feed, never written anywhere hashpivot writes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.models.feeds_config import LiveMarketConfig
from tests.contract.feedserver import NOW, FeedServer, Reply, live_config, serve_market

SECRET = "hp-test-9f1c3e7a2b"
ENV = "HASHPIVOT_TEST_POWER_KEY"


def keyed_config(server: FeedServer, header: dict[str, str]) -> LiveMarketConfig:
    power = {"kind": "http_json", "url": f"{server.base}/power.json",
             "value_path": "data.-1.price", "time_path": "data.-1.interval_start",
             "headers": {"X-Api-Key": header}}
    return live_config(server, fees_window_blocks=15, power_sources={"default": power})


def sent_keys(server: FeedServer) -> list[str]:
    return [h["x-api-key"] for p, h in zip(server.requests, server.headers, strict=True)
            if p == "/power.json" and "x-api-key" in h]


def test_key_from_the_environment_is_sent_and_never_shown(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serve_market(feed_server)
    feed_server.route("/power.json", Reply(status=500))  # a failure logs the request too
    monkeypatch.setenv(ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    cfg = keyed_config(feed_server, {"env": ENV})
    src = LiveMarketSource.from_config(cfg, sleep=lambda s: None)
    try:
        report = src.refresh(NOW)
    finally:
        src.close()
    assert sent_keys(feed_server) and set(sent_keys(feed_server)) == {SECRET}
    shown = [caplog.text, json.dumps(cfg.model_dump(mode="json")), repr(report),
             repr(src.status(NOW)), repr(src.rejection_counts())]
    assert all(SECRET not in text for text in shown)


def test_key_from_a_mounted_secret_is_reread_when_rotated(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    serve_market(feed_server)
    key = tmp_path / "power-api-key"
    key.write_text("first-key\n")  # Secret files often end in a newline
    cfg = keyed_config(feed_server, {"file": str(key), "prefix": "Bearer "})
    src = LiveMarketSource.from_config(cfg, sleep=lambda s: None)
    try:
        src.refresh(NOW)
        key.write_text("second-key")
        src.refresh(NOW + 60)
    finally:
        src.close()
    assert sent_keys(feed_server) == ["Bearer first-key", "Bearer second-key"]


def test_a_missing_key_is_a_named_refusal(feed_server: FeedServer, tmp_path: Path) -> None:
    serve_market(feed_server)
    os.environ.pop(ENV, None)
    for header, named in (({"env": ENV}, ENV), ({"file": str(tmp_path / "nope")}, "nope")):
        src = LiveMarketSource.from_config(keyed_config(feed_server, header),
                                           sleep=lambda s: None)
        try:
            report = src.refresh(NOW)
        finally:
            src.close()
        refused = [(f, r, d) for f, r, d in report.rejected if r == "credentials"]
        assert refused and refused[0][0] == "power_usd_mwh.default" and named in refused[0][2]
    assert sent_keys(feed_server) == []  # nothing was sent without its key


def test_exactly_one_of_env_or_file() -> None:
    for bad in ({}, {"env": ENV, "file": "/x"}):
        with pytest.raises(ValueError, match="exactly one of env or file"):
            LiveMarketConfig.model_validate({"power_sources": {"default": {
                "kind": "http_json", "url": "https://p.example/x", "value_path": "v",
                "headers": {"X-Api-Key": bad}}}})


def test_hashpivot_record_never_writes_the_key(feed_server: FeedServer, tmp_path: Path) -> None:
    serve_market(feed_server)
    feed_server.route("/power.json", Reply(status=500))  # refused: its reason is recorded
    cfg = keyed_config(feed_server, {"env": ENV})
    site_file = tmp_path / "live.yaml"
    site_file.write_text(yaml.safe_dump({"live_market": cfg.model_dump(mode="json")}))
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe
    out = tmp_path / "rec"
    proc = subprocess.run(
        [exe, "record", "--config", str(site_file), "--out", str(out), "--samples", "1",
         "--interval", "0"],
        capture_output=True, text=True, check=False, env={**os.environ, ENV: SECRET})
    assert sent_keys(feed_server) and set(sent_keys(feed_server)) == {SECRET}
    assert SECRET not in proc.stdout + proc.stderr
    written = [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert written and all(SECRET not in text for text in written)
    assert "power_usd_mwh.default,server_error" in (out / "rejected.csv").read_text()
