"""The grid webhook's bearer token through the chart: a Secret named in `feedSecrets` is
mounted read-only in the controller container, the site's `contract.live.webhook.token`
names the file inside the mount, the config loads with the app's own loader, and the
Service exposes the port the webhook listens on (the controller's metrics port).
(Reading the token at each request, 401 without it: tests/unit/test_grid_signals.py and
tests/e2e/test_contracts_live_signals.py.)"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

from orchestrator.models.config import load_config

from .helm import K8S_SCHEMA_VERSION, Helm, by_kind

SECRET, KEY = "grid-webhook", "token"


def test_webhook_token_secret_is_mounted_where_the_site_reads_it(helm: Helm,
                                                                 tmp_path: Path) -> None:
    token_file = f"/var/run/hashpivot/secrets/{SECRET}/{KEY}"
    site = {"name": "west-texas", "power_cap_kw": 3200, "contract": {
        "demand_response": {"max_draw_kw": 400, "committed_kw": 2800, "events": {
            "path": "bundled:recorded/ercot_dr_events_illustrative.csv",
            "called_column": "called_at"}},
        "live": {"webhook": {"token": {"file": token_file}}}}}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"feedSecrets": [SECRET], "config": {"sites": [site]}}))
    helm.lint([values])
    docs = helm.template([values])
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
    pod = next(d for d in by_kind(docs, "Deployment"))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    name = next(n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == SECRET)
    assert mounts[name]["readOnly"] is True
    assert Path(token_file).parent == Path(mounts[name]["mountPath"])
    cm = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cm["data"]["config.yaml"])
    config = load_config(config_file)
    live = config.sites[0].contract.live  # type: ignore[union-attr]
    assert live is not None and live.webhook is not None
    assert live.webhook.token.file == token_file
    # The webhook is served on the controller's metrics port, which the Service exposes.
    port = config.controller.metrics_port
    assert any(p["containerPort"] == port for p in container["ports"])
    service = next(d for d in by_kind(docs, "Service"))
    assert any(p["targetPort"] in ("metrics", port) for p in service["spec"]["ports"])
    assert "secretKeyRef" not in yaml.safe_dump_all(docs)
