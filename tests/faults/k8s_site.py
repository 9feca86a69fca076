"""A small GPU site on the tier-2 control plane, run by the real controller under the chart's
own RBAC, through the fault proxy.

- four KWOK H100 nodes of this test's prefix, mining at the start (miner DaemonSet pods
  running), in one site whose 25 kW cap lets two of them serve AI while two mine (three
  if the fourth is idle), never all four;
- the chart's ServiceAccount, ClusterRole, Role and bindings (rendered by helm, live mode)
  in the test's namespace: the controller authenticates with that ServiceAccount's token;
- a `FaultProxy` in front of the apiserver, and a market feed server on 127.0.0.1 whose
  answers are always fresh (the controller runs on the wall clock);
- a `Watcher` thread sampling nodes and pods straight from the apiserver (not through the
  proxy) into a `NodeHistory`: the draw of the site and every half-done switch.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from orchestrator.adapters.k8s.objects import (
    DECISION_ANNOTATION,
    MINING_TAINT_KEY,
    MODE_LABEL,
    SINCE_ANNOTATION,
    STATE_ANNOTATION,
    TARGET_ANNOTATION,
    format_time,
)
from orchestrator.framework.registry import load_policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.journal import read_journal
from tests.chart.helm import Helm
from tests.contract.feedserver import FeedServer, Reply, fixture_bytes
from tests.faults.checks import NodeHistory, check_journal, check_leases, planned_power_ok
from tests.faults.ledger import HALF_SWITCHED, POWER_CAP, FaultRun
from tests.faults.proxy import FaultProxy
from tests.tier2.cluster import NODE_PREFIX_LABEL, KwokCluster, add_gpu_nodes, wait_until
from tests.tier2.k8s_helpers import IMAGE, MINER, gpu_pod

REPO = Path(__file__).resolve().parents[2]
SCRIPTED = "tests.faults.scripted:Scripted"
RELEASE = "hashpivot"
LEASE = "hashpivot-leader"
N_NODES = 4
CAP_KW = 25.0
#: h100-sxm-8x from the built-in catalog: what each mode draws at full load.
WATTS = {"idle": 1160.0, "mine": 5080.0, "ai": 7100.0}
#: A switch may take this long; the invariant is checked against it (a bound, not a speed).
SWITCH_TIMEOUT_S = 120.0
TIMEOUT = 180.0
MINER_APP = f"app.kubernetes.io/name={MINER}"
AI_APP = "app=gpu-job"


# -- market feeds ---------------------------------------------------------------------------


def serve_fresh_market(server: FeedServer) -> None:
    """A chain API and a spot price with no timestamps: observed when fetched."""
    stats = json.loads(fixture_bytes("blockchain_info_stats.json"))
    stats.pop("timestamp")
    server.route("/bci/stats", Reply(body=json.dumps(stats).encode()))
    server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture("coinbase_spot.json"))


def market_values(server: FeedServer, **http: Any) -> dict[str, Any]:
    return {
        "http": {"timeout_s": 2.0, "retries": 0, "allow_loopback_http": True, **http},
        "chain_sources": [{"kind": "blockchain_info", "base_url": f"{server.base}/bci"}],
        "price_sources": [{"kind": "coinbase", "base_url": f"{server.base}/coinbase"}],
        "power_usd_mwh_fixed": 40.0,
        "gpu_usd_per_gpu_hour_fixed": {"H100_80GB_SXM5": 2.0},
        "poll_interval_s": 0.0,
    }


# -- the chart's RBAC -----------------------------------------------------------------------

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def install_chart_rbac(
    helm: Helm, cluster: KwokCluster, namespace: str, tmp: Path, *, mode: str = "live"
) -> list[dict[str, Any]]:
    """Render the chart and apply only its identity and permissions (nothing else runs)."""
    values = tmp / "rbac-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"config": {"controller": {"mode": mode}, "kubernetes": {"miner_daemonset": MINER}}}
        )
    )
    docs = [
        d
        for d in yaml.safe_load_all(
            helm.template_text([values], namespace=namespace, release=RELEASE)
        )
        if d and d.get("kind") in RBAC_KINDS
    ]
    manifest = tmp / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run(
        [
            str(cluster.bin_dir / "kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "apply",
            "--server-side",
            "--field-manager=hashpivot-fault-suite",
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"applying the chart's RBAC failed:\n{proc.stderr}"
    return docs


def delete_cluster_scoped(admin: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    for doc in docs:
        name = doc["metadata"]["name"]
        delete = {
            "ClusterRole": rbac.delete_cluster_role,
            "ClusterRoleBinding": rbac.delete_cluster_role_binding,
        }.get(doc["kind"])
        if delete is None:
            continue
        try:
            delete(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def service_account_token(admin: client.ApiClient, namespace: str) -> str:
    issued = client.CoreV1Api(admin).create_namespaced_service_account_token(
        RELEASE,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    )
    assert issued.status is not None and issued.status.token
    return str(issued.status.token)


def wait(probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll until `probe` holds; the deadline only bounds a hung test."""
    return wait_until(probe, timeout=timeout, interval=0.2, what=what)


def settle_as(core: client.CoreV1Api, name: str, mode: str) -> None:
    """Put a node in a steady mode by hand, as a finished switch would leave it."""
    state = {"mine": "MINING", "ai": "AI", "idle": "IDLE"}[mode]
    taint = {"key": MINING_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
    core.patch_node(
        name,
        {
            "metadata": {
                "labels": {MODE_LABEL: mode},
                "annotations": {
                    STATE_ANNOTATION: state,
                    TARGET_ANNOTATION: mode,
                    SINCE_ANNOTATION: format_time(time.time() - 7200),
                    DECISION_ANNOTATION: "setup",
                },
            },
            "spec": {"taints": None if mode == "ai" else [taint]},
        },
    )


def running(core: client.CoreV1Api, namespace: str, selector: str) -> dict[str, list[str]]:
    """Running, not deleting pods of `selector`, by node."""
    out: dict[str, list[str]] = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        if (
            pod.spec.node_name
            and pod.status.phase == "Running"
            and pod.metadata.deletion_timestamp is None
        ):
            out.setdefault(pod.spec.node_name, []).append(pod.metadata.name)
    return out


# -- watching the site ----------------------------------------------------------------------


class Watcher:
    """Samples the site every `interval` s from the apiserver directly, on a thread."""

    def __init__(self, core: client.CoreV1Api, namespace: str, prefix: str) -> None:
        self.core = core
        self.namespace = namespace
        self.prefix = prefix
        self.history = NodeHistory(WATTS, CAP_KW * 1000.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def sample(self) -> None:
        nodes = self.core.list_node(label_selector=f"{NODE_PREFIX_LABEL}={self.prefix}").items
        pods = self.core.list_namespaced_pod(self.namespace).items
        states = {
            n.metadata.name: (n.metadata.annotations or {}).get(STATE_ANNOTATION) for n in nodes
        }
        miner_on: set[str] = set()
        ai_on: set[str] = set()
        for pod in pods:
            node = pod.spec.node_name
            if not node or pod.status.phase in ("Succeeded", "Failed"):
                continue
            labels = pod.metadata.labels or {}
            if labels.get("app.kubernetes.io/name") == MINER:
                miner_on.add(node)
            elif labels.get("app") == "gpu-job":
                ai_on.add(node)
        self.history.observe(time.monotonic(), states, miner_on, ai_on)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # a sample lost to a restarting apiserver is only a gap
                self.errors += 1
            self._stop.wait(0.15)

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True, name="site-watcher")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()  # the final state, surely


# -- the site -------------------------------------------------------------------------------


@dataclass
class Site:
    cluster: KwokCluster
    admin: client.ApiClient
    namespace: str
    prefix: str
    names: list[str]
    proxy: FaultProxy
    token: str
    market: FeedServer
    tmp: Path
    watcher: Watcher
    #: Pods of tenants the controller must never evict (non-interruptible or leased).
    protected: set[str] = field(default_factory=set)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.admin)

    # -- configuration -----------------------------------------------------------------

    def values(
        self, mode: str | None = None, targets: dict[str, str] | None = None, **controller: Any
    ) -> dict[str, Any]:
        return {
            "sites": [{"name": "default", "power_cap_kw": CAP_KW}],
            "policy": {"name": SCRIPTED, "params": {"mode": mode, "targets": targets or {}}},
            "guards": {
                "min_dwell_s": 0,
                "max_fleet_switch_share_per_hour": 1.0,
                "max_switches_per_node_per_day": 1000,
            },
            "controller": {"mode": "live", "interval_s": 1.0, **controller},
            "kubernetes": {
                "namespace": self.namespace,
                "node_selector": f"{NODE_PREFIX_LABEL}={self.prefix}",
                "miner_daemonset": MINER,
                "qps": 200.0,
                "burst": 400,
                "lease_name": LEASE,
                "lease_duration_s": 3.0,
                "lease_renew_deadline_s": 2.0,
                "lease_retry_period_s": 0.5,
                "switch_timeout_s": SWITCH_TIMEOUT_S,
            },
            "live_market": market_values(self.market),
        }

    def config(
        self, mode: str | None = None, targets: dict[str, str] | None = None, **controller: Any
    ) -> HashpivotConfig:
        return HashpivotConfig(**self.values(mode, targets, **controller))

    def kubeconfig(self) -> Path:
        return self.proxy.kubeconfig(self.token, self.tmp / "proxy-kubeconfig.json")

    def api_client(self) -> client.ApiClient:
        """The controller's client: the proxy, as the chart's ServiceAccount."""
        config = client.Configuration()
        config.host = self.proxy.url
        config.api_key = {"authorization": f"Bearer {self.token}"}
        return client.ApiClient(config)

    # -- the cluster -------------------------------------------------------------------

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self.core.patch_node(name, body)

    def settle_as(self, name: str, mode: str) -> None:
        settle_as(self.core, name, mode)

    def facts(self) -> dict[str, dict[str, Any]]:
        out = {}
        for node in self.core.list_node(
            label_selector=f"{NODE_PREFIX_LABEL}={self.prefix}"
        ).items:
            notes = dict(node.metadata.annotations or {})
            out[node.metadata.name] = {
                "mode": (node.metadata.labels or {}).get(MODE_LABEL),
                "state": notes.get(STATE_ANNOTATION),
                "decision": notes.get(DECISION_ANNOTATION),
                "labels": dict(node.metadata.labels or {}),
            }
        return out

    def states(self) -> dict[str, str | None]:
        return {n: f["state"] for n, f in self.facts().items()}

    def running(self, selector: str) -> dict[str, list[str]]:
        return running(self.core, self.namespace, selector)

    def wait(self, probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        try:
            return wait(probe, what, timeout)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def describe(self) -> str:
        """Where everything is: for a failed wait's message."""
        from orchestrator.runtime.journal import last_record

        lines = [f"states: {self.states()}", f"AI pods: {self.running(AI_APP)}",
                 f"miners: {self.running(MINER_APP)}",
                 f"proxy rules: {[(r.name, r.injected) for r in self.proxy.rules]}"]
        last = last_record(self.journal()) if self.journal().exists() else None
        if last is not None:
            lines.append(f"last decision {last.decision_id}: plan {last.plan}")
            lines.append(f"  actuation {last.actuation}")
        return "\n".join(lines)

    def wait_states(self, want: Callable[[dict[str, str | None]], bool], what: str) -> None:
        self.wait(lambda: want(self.states()), what)

    def tenant(
        self,
        name: str,
        *,
        interruptible: bool,
        lease_h: float | None = None,
        gpus: int = 8,
        node: str | None = None,
    ) -> None:
        """A tenant's GPU pod for this site (pending until a node turns to AI)."""
        labels = {"hashpivot.io/interruptible": "true"} if interruptible else {}
        notes = {}
        if lease_h is not None:
            notes["hashpivot.io/lease-until"] = format_time(time.time() + lease_h * 3600)
        if not interruptible or lease_h is not None:
            self.protected.add(name)
        self.core.create_namespaced_pod(
            self.namespace,
            gpu_pod(name, self.prefix, gpus, node=node, labels=labels,
                    annotations=notes or None),
        )

    def finish(self, name: str) -> None:
        """A tenant's job ends by itself."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def evicted(self, *, attempts: bool = False) -> list[str]:
        """Pods the controller evicted (or, with `attempts`, tried to evict at all)."""
        names = []
        for entry in self.proxy.log:
            if entry.method != "POST" or not entry.path.endswith("/eviction"):
                continue
            if attempts or (entry.status is not None and 200 <= entry.status < 300):
                names.append(entry.path.rsplit("/", 2)[-2])
        return names

    def decisions_on_nodes(self) -> list[str]:
        return [f["decision"] for f in self.facts().values() if f["decision"]]

    def journal(self, name: str = "journal") -> Path:
        return self.tmp / name

    # -- the controller ----------------------------------------------------------------

    @contextlib.contextmanager
    def controller(
        self,
        mode: str | None = None,
        targets: dict[str, str] | None = None,
        *,
        journal: Path | None = None,
        **controller: Any,
    ) -> Iterator[RunningController]:
        running = RunningController(
            self, self.config(mode, targets, **controller), journal or self.journal()
        )
        try:
            yield running.start()
        finally:
            running.close()

    def cli_controller(
        self, targets: dict[str, str], journal: Path, log: Path
    ) -> subprocess.Popen[bytes]:
        """`hashpivot run` in its own process (live, no Ray), as a pod would run it."""
        cfg = self.tmp / "site.yaml"
        cfg.write_text(yaml.safe_dump(self.values(None, targets)))
        exe = Path(sys.executable).parent / "hashpivot"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(exe), "run", "-c", str(cfg), "--mode", "live", "--no-ray",
                 "--kubeconfig", str(self.kubeconfig()), "--journal", str(journal),
                 "--metrics-port", "0"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )


class LaterClock:
    """The wall clock, moved on by `later()`: the fleet's hourly switch budget counts
    nodes switched in the last hour, so the second flip of a test happens "hours later"."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now_s(self) -> float:
        return time.time() + self.offset_s

    def later(self, hours: float = 2.0) -> None:
        self.offset_s += hours * 3600.0


class RunningController:
    """The real `Controller` (live) on a thread, stoppable between passes."""

    def __init__(self, site: Site, config: HashpivotConfig, journal: Path) -> None:
        self.site = site
        self.stop = threading.Event()
        self.cycles = 0
        self.error: BaseException | None = None
        self.clock = LaterClock()
        self.controller = Controller(
            config,
            RunOptions(mode=ControllerMode.LIVE, journal_dir=str(journal)),
            api=site.api_client(),
            on_cycle=self._count,
            clock=self.clock,
        )
        # `advance` is asked after every pass: the loop ends when the test says so.
        self.controller.wiring.advance = lambda: not self.stop.is_set()
        self.thread = threading.Thread(target=self._run, daemon=True, name="controller")

    def _count(self, outcome: Any) -> None:
        self.cycles += 1

    def _run(self) -> None:
        try:
            self.controller.run(None)
        except BaseException as exc:
            self.error = exc

    def start(self) -> RunningController:
        self.thread.start()
        return self

    def want(self, mode: str | None, **targets: str) -> None:
        """The policy's wish from the next cycle on."""
        policy = load_policy(SCRIPTED, {"mode": mode, "targets": targets})
        cycle = self.controller.cycle
        cycle.policy = policy
        step = getattr(cycle, "step", None)  # a cycle may hand its policy to its step
        if step is not None:
            step.policy = policy

    def leader(self) -> bool:
        return self.controller.wiring.is_leader()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        self.controller.close()
        if self.error is not None:
            raise self.error


def add_site_nodes(admin: client.ApiClient, prefix: str) -> list[str]:
    return add_gpu_nodes(admin, prefix, N_NODES)


def miner_daemonset(namespace: str, prefix: str) -> dict[str, Any]:
    from orchestrator.adapters.k8s import miner_daemonset_manifest
    from orchestrator.models.config import KubernetesConfig

    config = KubernetesConfig(namespace=namespace, miner_daemonset=MINER)
    return miner_daemonset_manifest(config, IMAGE, node_selector={NODE_PREFIX_LABEL: prefix})


def make_site(cluster: KwokCluster, namespace: str, helm: Helm, tmp: Path) -> Iterator[Site]:
    admin = cluster.api_client()
    core = client.CoreV1Api(admin)
    prefix = f"flt-{uuid.uuid4().hex[:6]}"
    docs: list[dict[str, Any]] = []
    proxy: FaultProxy | None = None
    market: FeedServer | None = None
    watcher: Watcher | None = None
    try:
        names = add_site_nodes(admin, prefix)
        client.AppsV1Api(admin).create_namespaced_daemon_set(
            namespace, miner_daemonset(namespace, prefix)
        )
        for name in names:
            settle_as(core, name, "mine")
        wait(lambda: len(running(core, namespace, MINER_APP)) == N_NODES, "a miner on every node")
        docs = install_chart_rbac(helm, cluster, namespace, tmp)
        token = service_account_token(admin, namespace)
        conf = admin.configuration
        proxy = FaultProxy(
            conf.host, ca_file=conf.ssl_ca_cert, client_cert=(conf.cert_file, conf.key_file)
        ).start()
        market = FeedServer()
        serve_fresh_market(market)
        market.start()
        watcher = Watcher(core, namespace, prefix).start()
        yield Site(cluster, admin, namespace, prefix, names, proxy, token, market, tmp, watcher)
    finally:
        for stop in (
            watcher.stop if watcher else None,
            proxy.stop if proxy else None,
            market.stop if market else None,
        ):
            if stop is not None:
                with contextlib.suppress(Exception):
                    stop()
        try:
            from tests.tier2.cluster import delete_nodes

            delete_nodes(admin, prefix)
            delete_cluster_scoped(admin, docs)
        finally:
            admin.close()  # type: ignore[no-untyped-call]


def check_site(run: FaultRun, site: Site, journal: Path, cycles: int,
              *, torn_allowed: int = 0) -> None:
    """The four invariants of the issue, after the flips."""
    site.watcher.sample()
    records = list(read_journal(journal))
    planned_ok, planned = planned_power_ok(records, CAP_KW)
    seen_ok, seen = site.watcher.history.power()
    run.check(POWER_CAP, planned_ok and seen_ok, f"{planned}; {seen}")
    check_leases(run, site.protected, site.evicted(attempts=True))
    ok, detail = site.watcher.history.half_switched(time.monotonic(), SWITCH_TIMEOUT_S)
    run.check(HALF_SWITCHED, ok, detail)
    check_journal(run, journal, cycles=cycles, torn_allowed=torn_allowed,
                  decisions_on_nodes=site.decisions_on_nodes())
