"""Tier 2: hashpivot beside the real Kueue (v0.17.0) and KubeRay operator (v1.6.0).

A suspended Job and two queued RayClusters (one protected, one marked interruptible) wait
in Kueue with no pods at all. `hashpivot run` (live, in its own process, on a config file)
reads them as AI demand, flips mining nodes to AI and raises the ClusterQueue's GPU quota;
Kueue admits and the pods run on the KWOK nodes. A second `hashpivot run` told to mine
lowers the quota first, deactivates the interruptible RayCluster's Workload through Kueue
(which requeues it) and waits for the protected one. A sampler thread checks all along
that the quota never exceeds the GPUs of the nodes in AI.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from orchestrator.adapters.k8s.client import KubeClient
from orchestrator.adapters.k8s.demand import KubeDemandSource
from orchestrator.adapters.k8s.kueue import KubeCustomObjects, KueueReader, gpu_quotas
from orchestrator.adapters.k8s.objects import SINCE_ANNOTATION, format_time
from orchestrator.adapters.k8s.watch import ListingSource
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.kueue_config import KubeRayConfig, KueueConfig
from orchestrator.runtime.journal import read_journal
from tests.chart.helm import Helm, find_helm, missing_helm_message
from tests.contract.feedserver import FeedServer
from tests.faults.k8s_site import market_values, serve_fresh_market, settle_as

from .cluster import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    H100,
    NODE_PREFIX_LABEL,
    KwokCluster,
    add_gpu_nodes,
    delete_nodes,
    wait_until,
)
from .k8s_helpers import IMAGE, hp_config, node_facts
from .kueue_env import BUILD_SCRIPT, KueueEnv, find_kueue_testenv, kueue_testenv_dir, running

pytestmark = pytest.mark.tier2

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
INTERRUPTIBLE = "hashpivot.io/interruptible"
N_NODES = 4
GPUS_PER_NODE = 8
JOB_PODS = 2
TIMEOUT = 240.0


def _required() -> bool:
    ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    return ci or bool(os.environ.get("HASHPIVOT_REQUIRE_TIER2"))


@pytest.fixture(scope="module")
def kueue(kwok_cluster: KwokCluster) -> Iterator[KueueEnv]:
    root = find_kueue_testenv()
    if root is None:
        message = (
            f"KUEUE TIER-2 NOT RUN: Kueue/KubeRay binaries missing in "
            f"{kueue_testenv_dir()}. Build them once with `bash {BUILD_SCRIPT}` "
            f"(about 8 min cold, cached after)."
        )
        if _required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with running(kwok_cluster, root) as env:
        try:
            yield env
        finally:
            # Kueue is gone after this module: its webhooks must not stand in front of
            # every Job the rest of the session creates.
            admin = kwok_cluster.api_client()
            reg = client.AdmissionregistrationV1Api(admin)
            with contextlib.suppress(ApiException):
                reg.delete_mutating_webhook_configuration("kueue-mutating-webhook-configuration")
            with contextlib.suppress(ApiException):
                reg.delete_validating_webhook_configuration(
                    "kueue-validating-webhook-configuration")
            admin.close()  # type: ignore[no-untyped-call]


# -- objects ---------------------------------------------------------------------------------


def gpu_container(gpus: int) -> dict[str, Any]:
    return {"name": "main", "image": IMAGE,
            "resources": {"limits": {GPU_RESOURCE: str(gpus)}}}


def suspended_job(name: str, queue: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "suspend": True, "parallelism": JOB_PODS, "completions": JOB_PODS,
            "template": {"metadata": {"labels": {"app": "kueue-job"}}, "spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "containers": [gpu_container(GPUS_PER_NODE)]}},
        },
    }


def ray_cluster(name: str, queue: str, *, interruptible: bool) -> dict[str, Any]:
    labels = {"app": f"ray-{name}", **({INTERRUPTIBLE: "true"} if interruptible else {})}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "rayVersion": "2.46.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "ray-head", "image": IMAGE}]}}},
            "workerGroupSpecs": [{
                "groupName": "gpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                "rayStartParams": {}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"terminationGracePeriodSeconds": 0,
                             "containers": [gpu_container(GPUS_PER_NODE)]}}}],
        },
    }


def queue_objects(prefix: str, namespace: str) -> tuple[str, str, str, list[dict[str, Any]]]:
    flavor, cq, lq = f"f-{prefix}", f"cq-{prefix}", "gpus"
    docs = [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor",
         "metadata": {"name": flavor},
         "spec": {"nodeLabels": {NODE_PREFIX_LABEL: prefix, GPU_PRODUCT_LABEL: H100}}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue", "metadata": {"name": cq},
         "spec": {"namespaceSelector": {}, "resourceGroups": [{
             "coveredResources": ["cpu", "memory", GPU_RESOURCE],
             "flavors": [{"name": flavor, "resources": [
                 {"name": "cpu", "nominalQuota": "1000"},
                 {"name": "memory", "nominalQuota": "10Ti"},
                 {"name": GPU_RESOURCE, "nominalQuota": "0"}]}]}]}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue",
         "metadata": {"name": lq, "namespace": namespace}, "spec": {"clusterQueue": cq}},
    ]
    return flavor, cq, lq, docs


# -- reading the cluster -------------------------------------------------------------------


class Cluster:
    def __init__(self, api: client.ApiClient, namespace: str, prefix: str, cq: str) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.prefix = prefix
        self.cq = cq

    def quota(self) -> float:
        obj = self.custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", self.cq)
        return sum(q.quota for q in gpu_quotas(obj, GPU_RESOURCE))

    def workloads(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workloads")["items"]
        return items

    def workload_of(self, kind: str, name: str) -> dict[str, Any] | None:
        for wl in self.workloads():
            for ref in wl["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == kind and ref.get("name") == name:
                    return wl
        return None

    def states(self) -> dict[str, str | None]:
        return {n: f["state"] for n, f in node_facts(self.core, self.prefix).items()}

    def ai_gpus(self) -> float:
        return GPUS_PER_NODE * sum(1 for s in self.states().values() if s == "AI")

    def running_pods(self, selector: str) -> dict[str, str]:
        """pod → node, Running and not deleting."""
        return {p.metadata.name: p.spec.node_name
                for p in self.core.list_namespaced_pod(self.namespace,
                                                       label_selector=selector).items
                if p.status.phase == "Running" and p.metadata.deletion_timestamp is None}


class QuotaSampler(threading.Thread):
    """Samples the quota and the nodes in AI; records every moment the quota exceeded them.

    The quota is read after the nodes, so a quota lowered between the two reads cannot
    look like a violation; a raise between them could only hide one, never invent one.
    """

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True, name="quota-sampler")
        self.cluster = cluster
        self.stop = threading.Event()
        self.samples = 0
        self.violations: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                states = self.cluster.states()
                quota = self.cluster.quota()
            except ApiException:
                continue
            ai = GPUS_PER_NODE * sum(1 for s in states.values() if s == "AI")
            self.samples += 1
            if quota > ai:
                self.violations.append(f"quota {quota:g} > {ai} GPUs in AI: {states}")
            self.stop.wait(0.1)


# -- hashpivot run ---------------------------------------------------------------------------


def site_values(namespace: str, prefix: str, feeds: FeedServer, cq: str,
                policy: dict[str, Any], min_dwell_s: float) -> dict[str, Any]:
    k8s = hp_config(namespace, prefix, miner_daemonset=None).model_dump(mode="json")
    return {
        "policy": policy,
        "guards": {"min_dwell_s": min_dwell_s, "max_fleet_switch_share_per_hour": 1.0,
                   "max_switches_per_node_per_day": 1000},
        "controller": {"mode": "live", "interval_s": 1.0},
        "kubernetes": k8s,
        "kueue": {"enabled": True, "cluster_queue": cq},
        "kuberay": {"enabled": True},
        "live_market": market_values(feeds),
    }


def hashpivot_run(tmp: Path, name: str, values: dict[str, Any],
                  kubeconfig: Path) -> subprocess.Popen[bytes]:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(values))
    HashpivotConfig(**values)  # the file is valid before a process is spent on it
    exe = Path(sys.executable).parent / "hashpivot"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log = (tmp / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            [str(exe), "run", "-c", str(cfg), "--mode", "live", "--no-ray",
             "--kubeconfig", str(kubeconfig), "--journal", str(tmp / name),
             "--metrics-port", "0"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def refusals(log: Path) -> list[str]:
    """Lines of a hashpivot log where the apiserver refused it something (RBAC)."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if "forbidden" in line.lower()]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def waiting(proc: subprocess.Popen[bytes], log: Path, probe: Any, what: str) -> Any:
    def check() -> Any:
        if proc.poll() is not None:
            raise AssertionError(f"hashpivot run exited {proc.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        return probe()

    try:
        return wait_until(check, timeout=TIMEOUT, interval=0.5, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- hashpivot log\n"
                             f"{log.read_text(errors='replace')[-4000:]}") from None


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
RELEASE = "hashpivot"


def chart_identity(kueue: KueueEnv, admin: client.ApiClient, namespace: str, cq: str,
                   lease_name: str, tmp: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The chart's ServiceAccount and RBAC (live, Kueue and KubeRay on) in `namespace`,
    and a kubeconfig that authenticates as that ServiceAccount: hashpivot runs with no
    more than the chart grants."""
    found = find_helm()
    if found is None:
        if _required():
            pytest.fail(missing_helm_message(), pytrace=False)
        pytest.skip(missing_helm_message())
    values = tmp / "chart-values.yaml"
    values.write_text(yaml.safe_dump({"config": {
        "controller": {"mode": "live"},
        "kueue": {"enabled": True, "cluster_queue": cq},
        "kuberay": {"enabled": True},
        # A live chart needs a miner DaemonSet named; this test's nodes run none.
        "kubernetes": {"miner_daemonset": "hashpivot-miner", "lease_name": lease_name},
    }}))
    text = Helm(found).template_text([values], namespace=namespace, release=RELEASE)
    docs = [d for d in yaml.safe_load_all(text) if d and d.get("kind") in RBAC_KINDS]
    kueue.kubectl("-n", namespace, "apply", "--server-side",
                  "--field-manager=hashpivot-tests", "-f", "-", stdin=yaml.safe_dump_all(docs))
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        RELEASE, namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    base = admin.configuration
    ca = tmp / "ca.crt"
    ca.write_bytes(Path(base.ssl_ca_cert).read_bytes())
    kubeconfig = tmp / "sa-kubeconfig.yaml"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "t2", "cluster": {"server": base.host,
                                                "certificate-authority": str(ca)}}],
        "users": [{"name": RELEASE, "user": {"token": token.status.token}}],
        "contexts": [{"name": "t2", "context": {"cluster": "t2", "user": RELEASE}}],
        "current-context": "t2",
    }))
    return kubeconfig, docs


def as_service_account(kubeconfig: Path) -> client.ApiClient:
    api: client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig))
    return api


def forbidden(call: Any) -> bool:
    try:
        call()
    except ApiException as exc:
        return exc.status == 403
    return False


def quota_notes(records: list[Any], cq: str) -> list[str]:
    """The quota changes a journal holds, in order."""
    return [v for r in records for k, v in (r.actuation.get("notes") or {}).items()
            if k.startswith(f"clusterqueue/{cq}")]


# -- the test --------------------------------------------------------------------------------


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    serve_fresh_market(server)
    try:
        yield server
    finally:
        server.stop()


def test_kueue_demand_flips_nodes_raises_quota_and_flipping_back_lowers_it_first(
    kwok_cluster: KwokCluster, kueue: KueueEnv, k8s_namespace: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    prefix = f"kq{uuid.uuid4().hex[:6]}"
    admin = kwok_cluster.api_client()
    sampler: QuotaSampler | None = None
    rbac_docs: list[dict[str, Any]] = []
    try:
        nodes = add_gpu_nodes(admin, prefix, N_NODES, gpus=GPUS_PER_NODE)
        cluster = Cluster(admin, k8s_namespace, prefix, "")
        for name in nodes:
            settle_as(cluster.core, name, "mine")
        _, cq, lq, docs = queue_objects(prefix, k8s_namespace)
        cluster.cq = cq
        kueue.apply(docs)
        wait_until(lambda: cluster.quota() == 0 or None, timeout=TIMEOUT, what="ClusterQueue")
        kueue.kubectl("-n", k8s_namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all([
            suspended_job("train", lq),
            ray_cluster("serve", lq, interruptible=False),
            ray_cluster("spot", lq, interruptible=True),
        ]))

        # Kueue holds all three with no pods: only their Workloads say they wait.
        wait_until(lambda: len(cluster.workloads()) == 3 or None, timeout=TIMEOUT,
                   what="Kueue to make three Workloads")
        assert cluster.running_pods("app") == {}
        reader = KueueReader(
            KubeCustomObjects(KubeClient(kwok_cluster.api_client())), hp_config(
                k8s_namespace, prefix), KueueConfig(enabled=True, cluster_queue=cq),
            KubeRayConfig(enabled=True), profile_catalog(HashpivotConfig()))
        try:
            pending = {j.id.split("/", 2)[1]: j for j in reader.pending([])
                       if j.id.startswith(f"workload:{k8s_namespace}/")}
        finally:
            reader.stop()
        by_owner = {name: cluster.workload_of(kind, name)["metadata"]["name"]  # type: ignore[index]
                    for kind, name in (("Job", "train"), ("RayCluster", "serve"),
                                       ("RayCluster", "spot"))}
        assert pending[by_owner["train"]].gpus == JOB_PODS * GPUS_PER_NODE
        assert pending[by_owner["serve"]].gpus == GPUS_PER_NODE
        assert pending[by_owner["spot"]].interruptible
        assert not pending[by_owner["serve"]].interruptible
        assert pending[by_owner["train"]].gpu_model == "H100_80GB_SXM5"  # via the flavor

        # hashpivot acts as the chart's ServiceAccount, which may touch only its own queue.
        identity, rbac_docs = chart_identity(
            kueue, admin, k8s_namespace, cq, hp_config(k8s_namespace, prefix).lease_name,
            tmp_path)
        sa = as_service_account(identity)
        try:
            sa_custom = client.CustomObjectsApi(sa)
            assert forbidden(lambda: sa_custom.get_cluster_custom_object(
                GROUP, VERSION, "clusterqueues", f"other-{prefix}"))
            assert forbidden(lambda: sa_custom.delete_namespaced_custom_object(
                GROUP, VERSION, k8s_namespace, "workloads", by_owner["train"]))
            assert forbidden(lambda: sa_custom.patch_namespaced_custom_object(
                "ray.io", "v1", k8s_namespace, "rayclusters", "serve", {"spec": {}}))
        finally:
            sa.close()  # type: ignore[no-untyped-call]

        sampler = QuotaSampler(cluster)
        sampler.start()
        # -- up: greedy on a fresh market, demand only from Kueue --------------------------
        up = hashpivot_run(tmp_path, "up", site_values(
            k8s_namespace, prefix, feeds, cq, {"name": "greedy"}, min_dwell_s=3600),
            identity)
        try:
            def admitted_and_running() -> bool:
                job = cluster.batch.read_namespaced_job("train", k8s_namespace)
                ray = cluster.running_pods("app in (ray-serve, ray-spot)")
                return (job.status.succeeded or 0) == JOB_PODS and len(ray) == 4

            waiting(up, tmp_path / "up.log", admitted_and_running,
                    "Kueue to admit the Job and both RayClusters on nodes flipped to AI")
            states = cluster.states()
            ai_nodes = {n for n, s in states.items() if s == "AI"}
            assert ai_nodes, states
            waiting(up, tmp_path / "up.log",
                    lambda: cluster.quota() == GPUS_PER_NODE * len(ai_nodes) or None,
                    "the quota to equal the GPUs in AI")
            ray_nodes = set(cluster.running_pods("app in (ray-serve, ray-spot)").values())
            assert ray_nodes <= ai_nodes
            # One more cycle, so the journal has the results of the passes before it.
            cycles = len(list(read_journal(tmp_path / "up")))
            waiting(up, tmp_path / "up.log",
                    lambda: len(list(read_journal(tmp_path / "up"))) > cycles + 1 or None,
                    "another cycle")
        finally:
            stop(up)
        # The chart's RBAC is all it needs: nothing was refused.
        assert refusals(tmp_path / "up.log") == []
        records = list(read_journal(tmp_path / "up"))
        assert any(j.id.startswith("workload:") for r in records for j in r.demand.pending)
        # Every quota change is journaled with a cycle's result: the last one set the GPUs
        # of the nodes in AI.
        changes = quota_notes(records, cq)
        assert changes and changes[-1].endswith(f"→ {GPUS_PER_NODE * len(ai_nodes)}"), changes

        # -- down: every node told to mine, hours later ------------------------------------
        # The fleet's hourly switch budget counts the flips to AI a minute ago by the nodes'
        # `since`: move it back, as if the flip back came hours later.
        for name in nodes:
            cluster.core.patch_node(name, {"metadata": {"annotations": {
                SINCE_ANNOTATION: format_time(time.time() - 3 * 3600)}}})
        serve_nodes = {node for pod, node in cluster.running_pods("app=ray-serve").items()
                       if "gpu" in pod}
        down = hashpivot_run(tmp_path, "down", site_values(
            k8s_namespace, prefix, feeds, cq,
            {"name": "tests.faults.scripted:Scripted", "params": {"mode": "mine"}},
            min_dwell_s=0), identity)
        try:
            def drained() -> bool:
                states = cluster.states()
                others = {n: s for n, s in states.items() if n not in serve_nodes}
                return (all(s == "MINING" for s in others.values())
                        and all(states[n] == "DRAINING_AI" for n in serve_nodes))

            waiting(down, tmp_path / "down.log", drained,
                    "every node but the protected RayCluster's to mine")
            assert cluster.quota() == 0
            spot = cluster.workload_of("RayCluster", "spot")
            serve = cluster.workload_of("RayCluster", "serve")
            assert spot is not None and spot["spec"]["active"] is False
            assert serve is not None and serve["spec"].get("active", True) is True
            # The protected tenant still runs where it was.
            serve_now = {node for pod, node in cluster.running_pods("app=ray-serve").items()
                         if "gpu" in pod}
            assert serve_now == serve_nodes
        finally:
            stop(down)
        assert refusals(tmp_path / "down.log") == []
        down_records = list(read_journal(tmp_path / "down"))
        changes = quota_notes(down_records, cq)
        assert changes and changes[-1].endswith("→ 0"), changes
        deactivated = [k for r in down_records for k, v in
                       (r.actuation.get("notes") or {}).items() if "deactivated" in v]
        assert any(spot["metadata"]["name"] in k for k in deactivated), deactivated
        sampler.stop.set()
        sampler.join(10)
        assert sampler.samples > 0
        assert not sampler.violations, sampler.violations[:5]
    finally:
        rbac = client.RbacAuthorizationV1Api(admin)
        for doc in rbac_docs:
            name = doc["metadata"]["name"]
            if doc["kind"] == "ClusterRole":
                with contextlib.suppress(ApiException):
                    rbac.delete_cluster_role(name)
            elif doc["kind"] == "ClusterRoleBinding":
                with contextlib.suppress(ApiException):
                    rbac.delete_cluster_role_binding(name)
        if sampler is not None:
            sampler.stop.set()
            sampler.join(10)
        delete_nodes(admin, prefix)
        custom = client.CustomObjectsApi(admin)
        for plural, name in (("clusterqueues", f"cq-{prefix}"),
                             ("resourceflavors", f"f-{prefix}")):
            # Never made, or held by Kueue's finalizer until its Workloads go: either is fine.
            with contextlib.suppress(ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
        admin.close()  # type: ignore[no-untyped-call]


def test_raycluster_outside_kueue_counts_its_gpus_once(
    kwok_cluster: KwokCluster, kueue: KueueEnv, k8s_namespace: str
) -> None:
    """KubeRay makes the pods of a RayCluster no queue holds at once; once it has, the
    pending pods are the demand and the cluster itself adds nothing: counted once."""
    workers = 2
    body = ray_cluster("free", "unused", interruptible=False)
    del body["metadata"]["labels"][QUEUE_LABEL]
    group = body["spec"]["workerGroupSpecs"][0]
    group.update(replicas=workers, minReplicas=workers, maxReplicas=workers)
    for spec in (body["spec"]["headGroupSpec"]["template"]["spec"], group["template"]["spec"]):
        # No node carries this label: the pods stay Pending, wherever the test runs.
        spec["nodeSelector"] = {"hashpivot.test/nowhere": "true"}
    api = kwok_cluster.api_client()
    kube = KubeClient(api)
    k8s = hp_config(k8s_namespace, "none")
    reader = KueueReader(KubeCustomObjects(kube, watch=False), k8s,
                         KueueConfig(enabled=True), KubeRayConfig(enabled=True),
                         profile_catalog(HashpivotConfig()))
    source = KubeDemandSource(ListingSource(kube, k8s), k8s, profile_catalog(HashpivotConfig()),
                              reader)
    try:
        kueue.kubectl("-n", k8s_namespace, "apply", "-f", "-", stdin=yaml.safe_dump(body))
        core = client.CoreV1Api(api)

        def worker_pods() -> int | None:
            pods = core.list_namespaced_pod(k8s_namespace, label_selector="app=ray-free").items
            made = [p for p in pods if "worker" in (p.metadata.name if p.metadata else "")]
            return len(made) if len(made) == workers else None

        wait_until(worker_pods, timeout=TIMEOUT, what="KubeRay to make the worker pods")
        mine = [j for j in source.demand(time.time()).pending
                if j.id.startswith((f"{k8s_namespace}/", f"raycluster:{k8s_namespace}/"))]
        assert sum(j.gpus for j in mine) == workers * GPUS_PER_NODE, mine
        assert not [j for j in mine if j.id.startswith("raycluster:")], mine
    finally:
        api.close()  # type: ignore[no-untyped-call]
