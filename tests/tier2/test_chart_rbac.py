"""The rendered chart on a real apiserver: applied server-side, then used as the
controller's own ServiceAccount (a token from the TokenRequest API), which can do its job
and is refused everything else.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.k8s.client import KubeClient
from orchestrator.adapters.k8s.events import EVENTS_NAMESPACE, NodeEvents
from tests.chart.helm import Helm, find_helm, missing_helm_message, require_tools

from .cluster import (
    NODE_PREFIX_LABEL,
    KwokCluster,
    add_gpu_nodes,
    delete_nodes,
    name_of,
    wait_until,
)

pytestmark = pytest.mark.tier2

TIMEOUT = 120.0
RELEASE = "hashpivot"
SERVICE_ACCOUNT = "hashpivot"
LEASE = "hashpivot-leader"
MINER = "hashpivot-miner"
MODE_LABEL = "hashpivot.io/mode"
MINING_TAINT = "hashpivot.io/mining"
# Never pulled: KWOK fakes the kubelet, so an image only has to be a valid reference.
PAUSE = "registry.k8s.io/pause"


@pytest.fixture(scope="module")
def helm() -> Helm:
    path = find_helm()
    if path is None:
        if require_tools():
            pytest.fail(missing_helm_message(), pytrace=False)
        pytest.skip(missing_helm_message())
    return Helm(path)


@pytest.fixture
def admin(kwok_cluster: KwokCluster) -> Iterator[client.ApiClient]:
    api = kwok_cluster.api_client()
    yield api
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def nodes(admin: client.ApiClient) -> Iterator[tuple[str, str]]:
    """Two fake GPU nodes of this test only: one to mine, one for AI."""
    prefix = f"chart-{uuid.uuid4().hex[:6]}"
    mine, ai = add_gpu_nodes(admin, prefix, 2, labels={"hashpivot.io/managed": "true"})
    yield mine, ai
    delete_nodes(admin, prefix)


def install(
    helm: Helm,
    kwok_cluster: KwokCluster,
    admin: client.ApiClient,
    namespace: str,
    values: dict[str, Any],
    tmp_path: Path,
) -> list[dict[str, Any]]:
    """Render the chart and apply it server-side, as cluster-admin (what helm would do).

    The namespace enforces the "restricted" Pod Security Standard first, so pods of the
    chart that need more privileges would be refused.
    """
    client.CoreV1Api(admin).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    text = helm.template_text([values_file], namespace=namespace, release=RELEASE)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    proc = subprocess.run(
        [
            str(kwok_cluster.bin_dir / "kubectl"),
            "--kubeconfig",
            str(kwok_cluster.kubeconfig),
            "apply",
            "--server-side",
            "--field-manager=hashpivot-chart-test",
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"server-side apply failed:\n{proc.stdout}\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture
def cluster_scoped_cleanup(admin: client.ApiClient) -> Iterator[list[str]]:
    """Names of the ClusterRole(Binding)s a test created; deleted afterwards."""
    names: list[str] = []
    yield names
    rbac = client.RbacAuthorizationV1Api(admin)
    for name in names:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def service_account_client(admin: client.ApiClient, namespace: str) -> client.ApiClient:
    """A client authenticated as the chart's ServiceAccount, with a TokenRequest token."""
    core = client.CoreV1Api(admin)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    issued = core.create_namespaced_service_account_token(SERVICE_ACCOUNT, namespace, request)
    assert issued.status is not None, "TokenRequest returned no token"
    base = admin.configuration
    config = client.Configuration()
    config.host = base.host
    config.verify_ssl = base.verify_ssl
    config.ssl_ca_cert = base.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {issued.status.token}"}
    return client.ApiClient(config)


def refused(call: Callable[[], object]) -> None:
    """403 Forbidden, from the official client's API classes or hashpivot's `KubeClient`."""
    with pytest.raises((ApiException, ApiError)) as caught:
        call()
    assert caught.value.status == 403, f"expected 403 Forbidden, got {caught.value.status}"


def chart_values(node_prefix: str, **over: Any) -> dict[str, Any]:
    """Values that keep the chart's pods on this test's nodes."""
    values: dict[str, Any] = {
        "nodeSelector": {NODE_PREFIX_LABEL: node_prefix},
        "miner": {
            "enabled": True,
            "image": {"repository": PAUSE, "tag": "3.10"},
            "wallet": {"existingSecret": "miner-wallet"},
            "nodeSelector": {NODE_PREFIX_LABEL: node_prefix},
        },
    }
    values.update(over)
    return values


def lease(namespace: str, name: str, holder: str) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        spec=client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=15),
    )


def ai_pod(node: str, labels: dict[str, str] | None = None) -> client.V1Pod:
    """A tenant's AI pod, bound to `node`, fit for a "restricted" namespace."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="ai-job", labels=labels),
        spec=client.V1PodSpec(
            node_name=node,
            security_context=client.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=65532,
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
            ),
            containers=[
                client.V1Container(
                    name="job",
                    image=f"{PAUSE}:3.10",
                    security_context=client.V1SecurityContext(
                        allow_privilege_escalation=False,
                        capabilities=client.V1Capabilities(drop=["ALL"]),
                    ),
                )
            ],
        ),
    )


def miner_pods_on(admin: client.ApiClient, namespace: str, node: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(admin).list_namespaced_pod(
        namespace,
        label_selector="app.kubernetes.io/component=miner",
        field_selector=f"spec.nodeName={node}",
    )
    return [p for p in pods.items if p.metadata is None or p.metadata.deletion_timestamp is None]


def test_live_chart_lets_the_controller_do_its_job_and_nothing_else(
    helm: Helm,
    kwok_cluster: KwokCluster,
    admin: client.ApiClient,
    k8s_namespace: str,
    nodes: tuple[str, str],
    cluster_scoped_cleanup: list[str],
    tmp_path: Path,
) -> None:
    ns = k8s_namespace
    mine_node, ai_node = nodes
    prefix = mine_node.rsplit("-", 1)[0]
    core_admin = client.CoreV1Api(admin)
    core_admin.create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="miner-wallet"), string_data={"wallet": "bc1q"}
        ),
    )
    cluster_scoped_cleanup.append(f"{ns}-{RELEASE}")
    docs = install(
        helm,
        kwok_cluster,
        admin,
        ns,
        chart_values(prefix, config={"controller": {"mode": "live"}}),
        tmp_path,
    )
    assert {"Deployment", "DaemonSet", "ClusterRole", "Role"} <= {d["kind"] for d in docs}
    # Both controller replicas are admitted under the restricted policy.
    wait_until(
        lambda: (
            len(
                core_admin.list_namespaced_pod(
                    ns, label_selector="app.kubernetes.io/component=controller"
                ).items
            )
            == 2
            or None
        ),
        timeout=TIMEOUT,
        what="two controller pods",
    )

    sa = service_account_client(admin, ns)
    try:
        core = client.CoreV1Api(sa)
        apps = client.AppsV1Api(sa)
        coordination = client.CoordinationV1Api(sa)

        # Reads: nodes and pods, cluster-wide (RBAC caches may take a moment to catch up).
        wait_until(lambda: core.list_node().items, timeout=TIMEOUT, what="list nodes as SA")
        core.list_pod_for_all_namespaces(limit=5)

        # Switch a node to mine the way the controller does: taint first, then the label.
        core.patch_node(
            mine_node,
            {
                "spec": {"taints": [{"key": MINING_TAINT, "effect": "NoSchedule"}]},
                "metadata": {"labels": {MODE_LABEL: "mine"}},
            },
        )
        core.patch_node(ai_node, {"metadata": {"labels": {MODE_LABEL: "ai"}}})
        # The chart's miner DaemonSet follows the label (and tolerates the taint).
        wait_until(
            lambda: miner_pods_on(admin, ns, mine_node),
            timeout=TIMEOUT,
            what=f"a miner pod on {mine_node}",
        )
        assert not miner_pods_on(admin, ns, ai_node)

        # Evict an interruptible AI pod through the Eviction API.
        pod = core_admin.create_namespaced_pod(
            ns, ai_pod(ai_node, labels={"hashpivot.io/interruptible": "true"})
        )
        core.create_namespaced_pod_eviction(
            name_of(pod),
            ns,
            client.V1Eviction(metadata=client.V1ObjectMeta(name=name_of(pod), namespace=ns)),
        )

        # Flip back: the miner pod goes away with the label.
        core.patch_node(mine_node, {"metadata": {"labels": {MODE_LABEL: "ai"}}})
        core.patch_node(mine_node, {"spec": {"taints": None}})
        wait_until(
            lambda: not miner_pods_on(admin, ns, mine_node),
            timeout=TIMEOUT,
            what=f"the miner pod to leave {mine_node}",
        )

        # Leader election on its own Lease.
        coordination.create_namespaced_lease(ns, lease(ns, LEASE, "pod-a"))
        held = coordination.read_namespaced_lease(LEASE, ns)
        held.spec = client.V1LeaseSpec(holder_identity="pod-b", lease_duration_seconds=15)
        coordination.replace_namespaced_lease(LEASE, ns, held)
        # The elector reads and replaces its Lease; it never patches it.
        refused(lambda: coordination.patch_namespaced_lease(
            LEASE, ns, {"spec": {"leaseDurationSeconds": 20}}))

        # The miner DaemonSet is the chart's: the controller can neither read nor change it.
        refused(lambda: apps.read_namespaced_daemon_set(MINER, ns))
        refused(lambda: apps.patch_namespaced_daemon_set(
            MINER, ns, {"metadata": {"annotations": {"hashpivot.io/checked": "yes"}}}))

        # Events about nodes, which live in "default", written the way the controller
        # writes them (its client, its Event body). They are never patched, and the core
        # group's Events are not granted.
        kube = KubeClient(sa)
        note = NodeEvents(kube.create_event, "replica-0").body(
            ai_node, "SwitchToAi", "Normal", "mine → ai", "d-1")
        event = kube.create_event(EVENTS_NAMESPACE, note)
        assert event["regarding"]["name"] == ai_node
        refused(lambda: client.EventsV1Api(sa).patch_namespaced_event(
            event["metadata"]["name"], EVENTS_NAMESPACE, {"note": "changed"}))
        refused(lambda: core.create_namespaced_event(
            EVENTS_NAMESPACE,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name="hashpivot-"),
                involved_object=client.V1ObjectReference(kind="Node", name=ai_node),
                reason="Switched", message="mine -> ai", type="Normal",
            ),
        ))

        # Everything else is refused.
        refused(lambda: core.list_namespaced_secret(ns))
        refused(lambda: core.read_namespaced_secret("miner-wallet", ns))
        refused(core.list_secret_for_all_namespaces)
        refused(lambda: core.delete_node(ai_node))
        refused(lambda: core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="x"))))
        refused(lambda: core.delete_namespaced_pod("ai-job", ns))
        refused(
            lambda: core.create_namespaced_pod(
                ns,
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name="sneaky"),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                ),
            )
        )
        refused(lambda: core.patch_namespaced_pod("ai-job", ns, {"metadata": {"labels": {}}}))
        refused(lambda: core.list_namespaced_config_map(ns))
        refused(lambda: core.delete_namespace(ns))
        refused(lambda: coordination.read_namespaced_lease("someone-else", ns))
        refused(lambda: coordination.list_namespaced_lease(ns))
        refused(lambda: apps.list_namespaced_daemon_set(ns))
        refused(lambda: apps.read_namespaced_daemon_set("other-daemonset", ns))
        refused(lambda: apps.delete_namespaced_daemon_set(MINER, ns))
        refused(lambda: apps.list_namespaced_deployment(ns))
        refused(lambda: client.RbacAuthorizationV1Api(sa).list_cluster_role())
    finally:
        sa.close()  # type: ignore[no-untyped-call]


def test_shadow_chart_is_read_only(
    helm: Helm,
    kwok_cluster: KwokCluster,
    admin: client.ApiClient,
    k8s_namespace: str,
    nodes: tuple[str, str],
    cluster_scoped_cleanup: list[str],
    tmp_path: Path,
) -> None:
    ns = k8s_namespace
    mine_node, _ = nodes
    prefix = mine_node.rsplit("-", 1)[0]
    cluster_scoped_cleanup.append(f"{ns}-{RELEASE}")
    install(helm, kwok_cluster, admin, ns, chart_values(prefix), tmp_path)
    pod = client.CoreV1Api(admin).create_namespaced_pod(ns, ai_pod(mine_node))

    sa = service_account_client(admin, ns)
    try:
        core = client.CoreV1Api(sa)
        apps = client.AppsV1Api(sa)
        coordination = client.CoordinationV1Api(sa)
        wait_until(lambda: core.list_node().items, timeout=TIMEOUT, what="list nodes as SA")
        core.list_pod_for_all_namespaces(limit=5)
        # No leader election in shadow (every replica decides and writes nothing), and
        # the miner DaemonSet is the chart's.
        refused(lambda: coordination.create_namespaced_lease(ns, lease(ns, LEASE, "pod-a")))
        refused(lambda: coordination.read_namespaced_lease(LEASE, ns))
        refused(lambda: apps.read_namespaced_daemon_set(MINER, ns))

        refused(lambda: core.patch_node(mine_node, {"metadata": {"labels": {MODE_LABEL: "mine"}}}))
        kube = KubeClient(sa)
        note = NodeEvents(kube.create_event, "replica-0").body(
            mine_node, "SwitchToMine", "Normal", "ai → mine", "d-1")
        refused(lambda: kube.create_event(EVENTS_NAMESPACE, note))
        refused(
            lambda: core.create_namespaced_pod_eviction(
                name_of(pod),
                ns,
                client.V1Eviction(metadata=client.V1ObjectMeta(name=name_of(pod), namespace=ns)),
            )
        )
        refused(
            lambda: apps.patch_namespaced_daemon_set(
                MINER, ns, {"metadata": {"annotations": {"x": "y"}}}
            )
        )
        refused(lambda: core.list_namespaced_secret(ns))
    finally:
        sa.close()  # type: ignore[no-untyped-call]


def sa_kubeconfig(kwok_cluster: KwokCluster, admin: client.ApiClient, namespace: str,
                  account: str, path: Path) -> Path:
    """The cluster's kubeconfig with its user's credentials replaced by a token of
    `account` (TokenRequest API): what the controller's pod would present."""
    core = client.CoreV1Api(admin)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    issued = core.create_namespaced_service_account_token(account, namespace, request)
    assert issued.status is not None
    kc = yaml.safe_load(kwok_cluster.kubeconfig.read_text())
    for user in kc["users"]:
        user["user"] = {"token": issued.status.token}
    path.write_text(yaml.safe_dump(kc))
    return path


@pytest.mark.parametrize("mode", ["shadow", "live"])
def test_doctor_checks_the_installed_rbac(
    helm: Helm,
    kwok_cluster: KwokCluster,
    admin: client.ApiClient,
    k8s_namespace: str,
    nodes: tuple[str, str],
    cluster_scoped_cleanup: list[str],
    tmp_path: Path,
    mode: str,
) -> None:
    import shutil
    import sys

    ns = k8s_namespace
    prefix = nodes[0].rsplit("-", 1)[0]
    cluster_scoped_cleanup.append(f"{ns}-{RELEASE}")
    over: dict[str, Any] = {"config": {"controller": {"mode": mode}}}
    if mode == "live":
        client.CoreV1Api(admin).create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name="miner-wallet"), string_data={"wallet": "bc1q"}))
    docs = install(helm, kwok_cluster, admin, ns, chart_values(prefix, **over), tmp_path)
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"])
    config = tmp_path / "config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe

    def doctor(account: str) -> subprocess.CompletedProcess[str]:
        kc = sa_kubeconfig(kwok_cluster, admin, ns, account, tmp_path / f"{account}.kc")
        return subprocess.run([exe, "doctor", "-c", str(config), "--kubeconfig", str(kc)],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)

    wait_until(lambda: doctor(SERVICE_ACCOUNT).returncode == 0, timeout=TIMEOUT,
               what="the chart's RBAC to take effect")
    proc = doctor(SERVICE_ACCOUNT)
    assert "FAIL" not in proc.stdout
    if mode == "live":
        assert "ok   may patch nodes cluster-wide" in proc.stdout
        assert "ok   may create events.events.k8s.io in default" in proc.stdout
    else:
        assert "ok   may not patch nodes cluster-wide" in proc.stdout
        assert "ok   may not create events.events.k8s.io in default" in proc.stdout
    assert f"ok   may not get secrets in {ns}" in proc.stdout
    # The namespace's default ServiceAccount has none of the grants: the first need fails.
    bare = doctor("default")
    assert bare.returncode == 2 and "not allowed to list nodes (403, RBAC)" in bare.stderr
    assert "Traceback" not in bare.stderr
