"""A feed's API key through the chart: a Secret exposed to the controller by `extraEnv`
(`valueFrom.secretKeyRef`) and named by the feed's `headers` in the config. The rendered
objects carry the Secret's name and key, never a key's value, and the config the chart
renders loads with the app's own loader."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.models.config import load_config

from .helm import Helm, by_kind

ENV = "POWER_API_KEY"


def test_a_secret_key_reaches_the_feed_only_by_reference(helm: Helm, tmp_path: Path) -> None:
    values = {
        "extraEnv": [{"name": ENV, "valueFrom": {"secretKeyRef": {"name": "power-api",
                                                                  "key": "token"}}}],
        "config": {"live_market": {
            "power_usd_mwh_fixed": None,
            "power_sources": {"default": {
                "kind": "http_json", "url": "https://prices.example/api/hub",
                "value_path": "data.-1.price", "time_path": "data.-1.time",
                "headers": {"Authorization": {"env": ENV, "prefix": "Bearer "}}}}}},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = helm.template([path])
    pod = next(d for d in by_kind(docs, "Deployment"))["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
    assert env[ENV]["valueFrom"]["secretKeyRef"] == {"name": "power-api", "key": "token"}
    cm = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cm["data"]["config.yaml"])
    config = load_config(config_file)
    source = config.live_market.power_sources["default"]
    assert source.headers["Authorization"].env == ENV  # type: ignore[union-attr]
