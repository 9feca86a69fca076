"""A feed's API key mounted through the chart as a file: `feedSecrets` mounts each named
Secret read-only in the controller container, and a feed's `headers` names the file.
The rendered objects pass `helm lint --strict` and the Kubernetes schemas, carry the
Secret's name and never a key's value, and the config loads with the app's own loader
and names a file inside the mount. (Reading the file at each request, so a rotated key
is picked up: tests/contract/test_feeds_credentials.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestrator.models.config import load_config

from .helm import K8S_SCHEMA_VERSION, Helm, HelmError, by_kind

SECRET, KEY = "power-api", "token"


def values_file(tmp_path: Path, secrets: list[str], header_file: str) -> Path:
    values: dict[str, Any] = {
        "feedSecrets": secrets,
        "config": {"live_market": {
            "power_usd_mwh_fixed": None,
            "power_sources": {"default": {
                "kind": "http_json", "url": "https://prices.example/api/hub",
                "value_path": "data.-1.price", "time_path": "data.-1.time",
                "headers": {"Authorization": {"file": header_file, "prefix": "Bearer "}}}}}},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_feed_secret_is_mounted_as_a_file_the_feed_names(helm: Helm, tmp_path: Path) -> None:
    header_file = f"/var/run/hashpivot/secrets/{SECRET}/{KEY}"
    path = values_file(tmp_path, [SECRET, "other-feed"], header_file)
    helm.lint([path])
    docs = helm.template([path])
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
    pod = next(d for d in by_kind(docs, "Deployment"))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    by_secret = {v["secret"]["secretName"]: name for name, v in volumes.items() if "secret" in v}
    assert set(by_secret) == {SECRET, "other-feed"}
    mount = mounts[by_secret[SECRET]]
    assert mount["readOnly"] is True
    # The feed's file lies inside the mount of its Secret, named by its key.
    assert Path(header_file).parent == Path(mount["mountPath"])
    # Only the controller mounts them; nothing rendered carries a key's value.
    assert "secretKeyRef" not in yaml.safe_dump_all(docs)
    cm = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cm["data"]["config.yaml"])
    config = load_config(config_file)
    assert config.live_market is not None
    header = config.live_market.power_sources["default"].headers["Authorization"]  # type: ignore[union-attr]
    assert header.file == header_file and header.env is None


def test_without_feed_secrets_nothing_is_mounted(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template([])
    pod = next(d for d in by_kind(docs, "Deployment"))["spec"]["template"]["spec"]
    assert not any("secret" in v for v in pod["volumes"])


@pytest.mark.parametrize("bad", ["Power_API", "", "-x"])
def test_a_secret_name_kubernetes_would_refuse_is_refused_by_the_schema(
    helm: Helm, tmp_path: Path, bad: str
) -> None:
    path = values_file(tmp_path, [bad], "/var/run/hashpivot/secrets/x/token")
    with pytest.raises(HelmError) as err:
        helm.template([path])
    assert "feedSecrets" in str(err.value)
