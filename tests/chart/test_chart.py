"""The chart through the real helm: lint, render a matrix of values, and check the output
against the Kubernetes schemas of the pinned version and against the app's own model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestrator.cli import live_inputs
from orchestrator.models.config import ControllerMode, load_config

from .helm import (
    CHART,
    CI_VALUES,
    K8S_SCHEMA_VERSION,
    NAMESPACE,
    SITE_VALUES,
    Helm,
    by_kind,
    one,
)

KUBERAY_API = ["--api-versions", "ray.io/v1/RayCluster"]

# The values matrix: name -> (values files, extra helm args).
MATRIX: dict[str, tuple[list[Path], list[str]]] = {
    "defaults": ([], []),
    "live": ([CI_VALUES / "live-values.yaml"], []),
    "miner": ([CI_VALUES / "miner-values.yaml"], []),
    "servicemonitor": ([CI_VALUES / "servicemonitor-values.yaml"], []),
    "external-ray": ([CI_VALUES / "external-ray-values.yaml"], []),
    "rbac-off": ([CI_VALUES / "rbac-off-values.yaml"], []),
    "kuberay": ([CI_VALUES / "kuberay-values.yaml"], KUBERAY_API),
    "production": ([CI_VALUES / "production-values.yaml"], []),
}
# Custom resources: no Kubernetes schema of their own (checked below by what they embed).
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("ray.io/v1", "RayCluster")}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
METRICS = [
    "hashpivot_nodes",
    "hashpivot_expected_usd_per_hour",
    "hashpivot_hashprice_usd_per_ph_day",
    "hashpivot_power_price_usd_per_mwh",
    "hashpivot_feed_age_seconds",
    "hashpivot_feed_rejections_total",
    "hashpivot_switches_total",
    "hashpivot_decision_latency_seconds",
    "hashpivot_actuation_errors_total",
    "hashpivot_leader",
    "hashpivot_deciding",
    "hashpivot_site_power_watts",
    "hashpivot_site_power_cap_watts",
    "hashpivot_nodes_held",
    "hashpivot_cycles_total",
    "hashpivot_last_cycle_timestamp_seconds",
]

_rendered: dict[str, list[dict[str, Any]]] = {}


def render(helm: Helm, case: str) -> list[dict[str, Any]]:
    """The chart rendered for a matrix case (cached: rendering takes helm a moment)."""
    if case not in _rendered:
        values, extra = MATRIX[case]
        _rendered[case] = helm.template(values, extra=extra)
    return _rendered[case]


def config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))
    loaded: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return loaded


def controller_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    found = by_kind(docs, kind)
    return [rule for role in found for rule in role["rules"]]


def verbs_on(rule_list: list[dict[str, Any]], resource: str) -> set[str]:
    return {v for r in rule_list if resource in r["resources"] for v in r["verbs"]}


# -- lint and render the matrix ------------------------------------------------------------


# helm lint has no --api-versions, so the KubeRay case (which needs the CRD) is only rendered.
@pytest.mark.parametrize("case", [c for c, (_, extra) in MATRIX.items() if not extra])
def test_lint_strict(helm: Helm, case: str) -> None:
    helm.lint(MATRIX[case][0])


@pytest.mark.parametrize("case", MATRIX)
def test_rendered_objects_match_kubernetes_schemas(helm: Helm, case: str) -> None:
    docs = render(helm, case)
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{case}: {name} at {where}: {exc.message}")


@pytest.mark.parametrize("case", MATRIX)
def test_common_metadata(helm: Helm, case: str) -> None:
    for doc in render(helm, case):
        meta = doc["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "hashpivot", doc["kind"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta
        else:
            assert meta["namespace"] == NAMESPACE, doc["kind"]


@pytest.mark.parametrize("case", MATRIX)
def test_config_map_is_accepted_by_the_application(helm: Helm, case: str, tmp_path: Path) -> None:
    """The rendered config.yaml loads with the app's own loader (as `hashpivot run` does)."""
    docs = render(helm, case)
    cm = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    config = load_config(path)
    assert config.kubernetes.namespace == NAMESPACE
    assert config.controller.journal_dir == "/var/lib/hashpivot/journal"
    port = controller_pod(docs)["containers"][0]["ports"][0]["containerPort"]
    assert config.controller.metrics_port == port
    # Complete for a cycle: the power price the install had to give reaches the config.
    _, lacks = live_inputs(config)
    assert not [x for x in lacks if "power price" in x], lacks


@pytest.mark.parametrize("case", MATRIX)
def test_rbac_never_reaches_secrets_or_wildcards(helm: Helm, case: str) -> None:
    docs = render(helm, case)
    for rule in rules(docs, "ClusterRole") + rules(docs, "Role"):
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        )


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template the chart renders, with a name for messages."""
    out = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in {"Deployment", "DaemonSet"}:
            out.append((name, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "RayCluster":
            out.append((f"{name}/head", doc["spec"]["headGroupSpec"]["template"]["spec"]))
            out += [
                (f"{name}/{g['groupName']}", g["template"]["spec"])
                for g in doc["spec"]["workerGroupSpecs"]
            ]
    return out


@pytest.mark.parametrize("case", MATRIX)
def test_pods_meet_the_restricted_pod_security_standard(helm: Helm, case: str) -> None:
    """Pod Security Standards, "restricted": what a locked-down namespace admits."""
    for name, pod in pod_specs(render(helm, case)):
        pod_sc = pod.get("securityContext", {})
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c.get("securityContext", {})
            where = f"{name} container {c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") in (None, False), where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) != 0, where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, where
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, f"{name} volume {volume['name']}"


# -- defaults ------------------------------------------------------------------------------


def test_defaults_are_safe(helm: Helm) -> None:
    docs = render(helm, "defaults")
    assert config_of(docs)["controller"]["mode"] == ControllerMode.SHADOW
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = controller_pod(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == f"ghcr.io/hashpivot/hashpivot:{chart_app_version()}"
    assert container["args"] == ["--log-format", "text", "run", "--config",
                                 "/etc/hashpivot/config.yaml"]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The read-only root needs writable /tmp; embedded Ray needs a real /dev/shm.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/dev/shm", "/etc/hashpivot", "/var/lib/hashpivot/journal"} <= mounts
    assert pod["serviceAccountName"] == "hashpivot"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9108
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"DaemonSet", "ServiceMonitor", "NetworkPolicy", "RayCluster"}


def test_shadow_mode_grants_no_writes(helm: Helm) -> None:
    docs = render(helm, "defaults")
    cluster = rules(docs, "ClusterRole")
    assert verbs_on(cluster, "nodes") == {"get", "list", "watch"}
    assert verbs_on(cluster, "pods") == {"get", "list", "watch"}
    assert not verbs_on(cluster, "pods/eviction")
    assert not verbs_on(cluster, "leases")
    role = rules(docs, "Role")
    # Only a live controller elects a leader; the miner DaemonSet is never the
    # controller's to read or write.
    assert not verbs_on(role, "leases")
    assert not verbs_on(role, "daemonsets")
    assert config_of(docs)["kubernetes"]["miner_daemonset"] is None


def test_leases_are_limited_to_the_release_namespace_and_own_lease(helm: Helm) -> None:
    docs = render(helm, "live")
    lease_name = config_of(docs)["kubernetes"]["lease_name"]
    assert lease_name == "hashpivot-leader"
    lease_rules = [r for r in rules(docs, "Role") if "leases" in r["resources"]]
    named = [r for r in lease_rules if r.get("resourceNames")]
    # The elector reads its Lease and replaces it (PUT): no patch.
    assert {v for r in named for v in r["verbs"]} == {"get", "update"}
    assert all(r["resourceNames"] == [lease_name] for r in named)
    unnamed = [r for r in lease_rules if not r.get("resourceNames")]
    assert {v for r in unnamed for v in r["verbs"]} == {"create"}
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hashpivot", "namespace": NAMESPACE}
    ]


# -- matrix cases --------------------------------------------------------------------------


def test_live_mode_grants_node_writes_and_evictions(helm: Helm) -> None:
    docs = render(helm, "live")
    assert config_of(docs)["controller"]["mode"] == ControllerMode.LIVE
    cluster = rules(docs, "ClusterRole")
    assert verbs_on(cluster, "nodes") == {"get", "list", "watch", "patch"}
    assert verbs_on(cluster, "pods/eviction") == {"create"}
    assert verbs_on(cluster, "pods") == {"get", "list", "watch"}
    # The operator's own miner DaemonSet is named in the config (its pods are counted
    # as miners), never read or written through the API.
    assert not verbs_on(rules(docs, "Role"), "daemonsets")
    assert config_of(docs)["kubernetes"]["miner_daemonset"] == "site-miner"


def test_events_are_granted_as_the_controller_writes_them(helm: Helm) -> None:
    """Node Events are created (never patched) in the API group of the Event the
    controller builds, in live mode only; shadow writes nothing, events included."""
    from orchestrator.adapters.k8s.events import EVENTS_NAMESPACE, NodeEvents

    events = NodeEvents(lambda namespace, body: body, "replica-0")
    body = events.body("gpu-0", "SwitchToAi", "Normal", "mine → ai", "d-1")
    group = body["apiVersion"].split("/")[0]
    assert EVENTS_NAMESPACE == "default"  # another namespace: hence a ClusterRole rule
    live = [r for r in rules(render(helm, "live"), "ClusterRole") if "events" in r["resources"]]
    assert [(r["apiGroups"], set(r["verbs"])) for r in live] == [([group], {"create"})]
    shadow = rules(render(helm, "defaults"), "ClusterRole")
    assert config_of(render(helm, "defaults"))["controller"]["mode"] == ControllerMode.SHADOW
    assert not verbs_on(shadow, "events")


def test_miner_daemonset(helm: Helm) -> None:
    docs = render(helm, "miner")
    ds = one(docs, "DaemonSet")
    assert ds["metadata"]["name"] == "hashpivot-miner"
    assert config_of(docs)["kubernetes"]["miner_daemonset"] == "hashpivot-miner"
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "hashpivot.io/mode": "mine",
        "nvidia.com/gpu.present": "true",
    }
    assert {
        "key": "hashpivot.io/mining",
        "operator": "Exists",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["runtimeClassName"] == "nvidia"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/mining/gpu-miner:1.4.2"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    wallet = next(e for e in container["env"] if e["name"] == "MINER_WALLET")
    assert wallet["valueFrom"]["secretKeyRef"] == {"name": "miner-wallet", "key": "wallet"}
    # The DaemonSet's pods select only miner pods, not the controller's.
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "miner"
    # The chart owns the DaemonSet; the controller is granted nothing on it.
    assert not verbs_on(rules(docs, "Role"), "daemonsets")


def test_service_monitor_scrapes_the_metrics_service(helm: Helm) -> None:
    docs = render(helm, "servicemonitor")
    sm = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_grafana_dashboard(helm: Helm) -> None:
    docs = render(helm, "servicemonitor")
    cm = next(d for d in by_kind(docs, "ConfigMap") if "hashpivot.json" in d.get("data", {}))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "hashpivot"}
    dashboard = json.loads(cm["data"]["hashpivot.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "hashpivot.json").read_text())


def test_dashboard_covers_every_metric() -> None:
    dashboard = json.loads((CHART / "dashboards" / "hashpivot.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in METRICS:
        assert metric in exprs, f"no panel shows {metric}"
    assert "hashpivot_decision_latency_seconds_bucket" in exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_external_ray(helm: Helm) -> None:
    docs = render(helm, "external-ray")
    assert config_of(docs)["controller"]["ray_address"] == "ray://raycluster-head-svc.ray.svc:10001"
    mounts = {m["mountPath"] for m in controller_pod(docs)["containers"][0]["volumeMounts"]}
    assert "/dev/shm" not in mounts
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 6443, 10001} <= egress_ports
    (metrics_rule,) = [r for r in policy["ingress"] if "from" in r]
    assert metrics_rule["from"][0]["namespaceSelector"]
    # `helm test` runs hashpivot doctor in its own pod: the metrics port lets it in.
    test_pod = one(docs, "Pod")
    allowed = [f["podSelector"]["matchLabels"] for f in metrics_rule["from"]
               if "podSelector" in f]
    labels = test_pod["metadata"]["labels"]
    assert any(all(labels.get(k) == v for k, v in sel.items()) for sel in allowed)


def test_embedded_ray_is_the_default(helm: Helm) -> None:
    assert config_of(render(helm, "defaults"))["controller"]["ray_address"] is None


def test_rbac_off(helm: Helm) -> None:
    docs = render(helm, "rbac-off")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert "ServiceAccount" not in kinds
    assert controller_pod(docs)["serviceAccountName"] == "hashpivot-controller"


def test_kuberay(helm: Helm) -> None:
    docs = render(helm, "kuberay")
    cluster = one(docs, "RayCluster")
    name = cluster["metadata"]["name"]
    assert config_of(docs)["controller"]["ray_address"] == (
        f"ray://{name}-head-svc.{NAMESPACE}.svc:10001"
    )
    spec = cluster["spec"]
    workers = spec["workerGroupSpecs"][0]
    assert (workers["replicas"], workers["maxReplicas"]) == (2, 8)
    # The pod templates KubeRay stamps out must be valid Kubernetes pod templates.
    for template in (spec["headGroupSpec"]["template"], workers["template"]):
        assert template["spec"]["serviceAccountName"] == "hashpivot"
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "ray"},
                "template": template,
            },
            K8S_SCHEMA_VERSION,
            strict=True,
        )
    # The controller's NetworkPolicy lets it reach its RayCluster.
    policy = one(docs, "NetworkPolicy")["spec"]
    peers = [p for rule in policy["egress"] for p in rule.get("to", [])]
    assert {"podSelector": {"matchLabels": {"ray.io/cluster": name}}} in peers


def test_production(helm: Helm) -> None:
    docs = render(helm, "production")
    pod = controller_pod(docs)
    assert pod["containers"][0]["image"] == (
        "ghcr.io/hashpivot/hashpivot@sha256:" + "0123456789abcdef" * 4
    )
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    journal = next(v for v in pod["volumes"] if v["name"] == "journal")
    assert journal["persistentVolumeClaim"] == {"claimName": "hashpivot-journal"}
    config = config_of(docs)
    assert config["sites"][0]["name"] == "west-texas"
    assert config["kubernetes"]["miner_daemonset"] == "hashpivot-miner"
    assert not verbs_on(rules(docs, "Role"), "daemonsets")
    kinds = {d["kind"] for d in docs}
    assert {"DaemonSet", "ServiceMonitor", "NetworkPolicy"} <= kinds


def test_kernel_cache_is_the_images_unless_a_volume_is_given(helm: Helm) -> None:
    """By default the image's NUMBA_CACHE_DIR stands, and the private copy the controller
    makes of that read-only folder (under $HOME) lands on a writable emptyDir; with
    `kernelCache.existingClaim` the claim is mounted where NUMBA_CACHE_DIR points."""
    default = controller_pod(helm.template())
    (container,) = default["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "NUMBA_CACHE_DIR" not in env
    assert not [v for v in default["volumes"] if v["name"] == "kernel-cache"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    copy = Path(env["HOME"]) / ".cache" / "hashpivot" / "numba"  # jit.py's first choice
    (holder,) = [p for p in mounts if copy.is_relative_to(p)]
    volume = next(v for v in default["volumes"] if v["name"] == mounts[holder])
    assert "emptyDir" in volume
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    pod = controller_pod(helm.template(sets=["kernelCache.existingClaim=hashpivot-kernels"]))
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "kernel-cache"]
    assert env["NUMBA_CACHE_DIR"] == mount["mountPath"]
    assert not mount.get("readOnly")  # what a start compiles is kept for the next
    (volume,) = [v for v in pod["volumes"] if v["name"] == "kernel-cache"]
    assert volume["persistentVolumeClaim"] == {"claimName": "hashpivot-kernels"}


def test_config_change_rolls_the_pods(helm: Helm) -> None:
    def checksum(*sets: str) -> str:
        docs = helm.template(sets=sets)
        annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum() != checksum("config.controller.interval_s=60")


def test_other_release_name_and_namespace(helm: Helm) -> None:
    docs = helm.template(release="west", namespace="mining-ops")
    config = config_of(docs)
    assert config["kubernetes"]["namespace"] == "mining-ops"
    assert config["kubernetes"]["lease_name"] == "west-hashpivot-leader"
    role = one(docs, "ClusterRole")
    assert role["metadata"]["name"] == "mining-ops-west-hashpivot"


@pytest.mark.parametrize(("case", "mode"), [("defaults", "SHADOW"), ("production", "LIVE")])
def test_notes_say_what_it_does_and_how_to_see_decisions(helm: Helm, case: str, mode: str) -> None:
    if helm.major < 4:
        # helm 3's install has no --kube-version, and a source build assumes Kubernetes 1.20.
        pytest.skip(f"NOTES are rendered with helm 4's install --dry-run (have {helm.version})")
    values, _ = MATRIX[case]
    args = ["install", "hashpivot", str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
            "--values", str(SITE_VALUES)]
    proc = helm.run(*args, *[a for v in values for a in ("--values", str(v))])
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"MODE: {mode}" in notes
    assert "kubectl -n hashpivot logs -l" in notes
    assert "/metrics" in notes
    assert "hashpivot explain <node> --journal" in notes
    assert "helm test hashpivot -n hashpivot" in notes
    if mode == "SHADOW":
        assert "--set config.controller.mode=live" in notes
        # The go-live command works as printed: live needs a miner, so without one
        # configured it sets the chart's miner too.
        docs = render(helm, case)
        has_miner = bool(config_of(docs)["kubernetes"]["miner_daemonset"])
        assert ("--set miner.enabled=true" in notes) == (not has_miner)
        # Shadow takes no Lease and records no Events: the NOTES do not send anyone there.
        assert "get lease" not in notes and "get events" not in notes
    else:
        assert "config.guards.frozen=true" in notes
        assert "get lease hashpivot-leader" in notes
        assert "reportingComponent=hashpivot.io/controller" in notes
        # Only the leader journals: explain and the journal are read in its pod.
        assert "exec $LEADER -- hashpivot explain <node>" in notes
        assert "exec deploy/" not in notes


def chart_app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


@pytest.mark.parametrize("case", ["defaults", "production"])
def test_helm_test_runs_doctor_as_the_controller(helm: Helm, case: str) -> None:
    docs = render(helm, case)
    (pod,) = [d for d in by_kind(docs, "Pod")
              if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    controller = controller_pod(docs)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == controller["serviceAccountName"]
    (container,) = spec["containers"]
    assert container["image"] == controller["containers"][0]["image"]
    args = container["args"]
    assert args[:3] == ["doctor", "--config", "/etc/hashpivot/config.yaml"]
    service = one(docs, "Service")
    port = service["spec"]["ports"][0]["port"]
    assert args[3:] == ["--url", f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}"]
    # The same config the controller reads, from the same ConfigMap.
    volumes = {v["name"]: v for v in spec["volumes"]}
    controller_volumes = {v["name"]: v for v in controller["volumes"]}
    assert volumes["config"] == controller_volumes["config"]

