"""Tier 2: two controllers, stale writes, and a controller killed in the middle of a switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from orchestrator.adapters.k8s import (
    CountingApiClient,
    KubeActuator,
    KubeClient,
    LeaderElector,
    ListingSource,
    NodeTarget,
)
from orchestrator.adapters.k8s.api import Obj
from orchestrator.models import Mode

from .cluster import KwokCluster, add_gpu_nodes, delete_nodes
from .k8s_helpers import (
    MINER_SELECTOR,
    drive,
    gpu_pod,
    hp_config,
    node_facts,
    pods_by_node,
    start_cache,
    start_miner,
    wait_for,
)

pytestmark = pytest.mark.tier2

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    name = f"hp-{uuid.uuid4().hex[:6]}"
    yield name
    api = kwok_cluster.api_client()
    try:
        delete_nodes(api, name)
    finally:
        api.close()  # type: ignore[no-untyped-call]


class Replica:
    """One controller instance: its own client (counted), cache, elector and actuator."""

    def __init__(self, cluster: KwokCluster, namespace: str, prefix: str, identity: str) -> None:
        self.api = CountingApiClient.wrapping(cluster.api_client())
        self.config = hp_config(namespace, prefix, miner_daemonset=None)
        self.kube = KubeClient(self.api)
        self.cache = start_cache(self.kube, self.config)
        self.elector = LeaderElector(
            self.kube,
            namespace,
            self.config.lease_name,
            identity=identity,
            lease_duration_s=3.0,
            renew_deadline_s=2.0,
            retry_period_s=0.3,
        )
        self.actuator = KubeActuator(
            self.kube,
            self.config,
            nodes=self.cache,
            pods=self.cache,
            is_leader=self.elector.is_leader,
        )
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def node_patches(self) -> int:
        return self.api.writes_to("/api/v1/nodes/")

    def loop(self, targets: list[NodeTarget]) -> None:
        def run() -> None:
            while not self.stop.is_set():
                self.actuator.apply_targets(targets, self.elector.identity)
                time.sleep(0.1)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def halt(self) -> None:
        """Stop acting and renewing, without releasing the lease (as a crash would)."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10.0)
        self.elector.stop(release=False)

    def close(self) -> None:
        self.halt()
        self.cache.stop()
        self.api.close()


def test_two_replicas_exactly_one_acts_and_the_other_takes_over(
    kwok_cluster: KwokCluster, prefix: str, k8s_namespace: str
) -> None:
    admin = kwok_cluster.api_client()
    names = add_gpu_nodes(admin, prefix, 6)
    admin.close()  # type: ignore[no-untyped-call]
    one = Replica(kwok_cluster, k8s_namespace, prefix, "replica-one")
    two = Replica(kwok_cluster, k8s_namespace, prefix, "replica-two")
    both_led = threading.Event()
    watching = threading.Event()

    def monitor() -> None:
        while not watching.is_set():
            if one.elector.is_leader() and two.elector.is_leader():
                both_led.set()
            time.sleep(0.01)

    threading.Thread(target=monitor, daemon=True).start()
    try:
        one.elector.start()
        wait_for(one.elector.is_leader, "replica one to lead")
        two.elector.start()
        core = client.CoreV1Api(one.api)
        to_idle = [NodeTarget(n, Mode.IDLE) for n in names]
        one.loop(to_idle)
        two.loop(to_idle)
        wait_for(
            lambda: all(f["state"] == "IDLE" for f in node_facts(core, prefix).values()),
            "every node adopted as IDLE",
        )
        time.sleep(1.0)  # both keep applying; only the leader may write
        # (A write may meet a 409 when KWOK's heartbeat moved the node: it is redone.)
        assert one.actuator.totals["patches"] == 6
        assert one.node_patches() == 6 + one.actuator.totals["conflicts"]
        assert two.node_patches() == 0 and two.actuator.totals["patches"] == 0
        assert two.elector.holder == "replica-one"

        # The leader dies without releasing the lease; the standby takes over after it ends.
        one.halt()
        wait_for(two.elector.is_leader, "replica two to take over", timeout=30.0)
        two.stop.set()
        assert two.thread is not None
        two.thread.join(10.0)
        two.stop.clear()
        to_mine = [NodeTarget(n, Mode.MINE) for n in names]
        two.loop(to_mine)
        wait_for(
            lambda: all(f["state"] == "MINING" for f in node_facts(core, prefix).values()),
            "every node MINING by replica two",
        )
        assert two.actuator.totals["patches"] == 6 and one.actuator.totals["patches"] == 6
        assert two.node_patches() == 6 + two.actuator.totals["conflicts"]
        lease = client.CoordinationV1Api(two.api).read_namespaced_lease(
            two.config.lease_name, k8s_namespace
        )
        assert lease.spec.holder_identity == "replica-two"
        assert lease.spec.lease_transitions == 1
    finally:
        watching.set()
        one.close()
        two.close()
    assert not both_led.is_set(), "two replicas believed they led at the same time"


class StaleNodes:
    """Nodes as listed once: a cache that has not seen the latest change."""

    def __init__(self, items: list[Obj]) -> None:
        self.items = items

    def nodes(self) -> list[Obj]:
        return self.items

    def node(self, name: str) -> Obj | None:
        return None  # never fresher than the listing


def test_a_stale_write_gets_409_and_is_redone_on_fresh_data(
    kwok_cluster: KwokCluster, prefix: str, k8s_namespace: str
) -> None:
    api = CountingApiClient.wrapping(kwok_cluster.api_client())
    try:
        names = add_gpu_nodes(api, prefix, 2)
        config = hp_config(k8s_namespace, prefix, miner_daemonset=None)
        kube = KubeClient(api)
        stale = StaleNodes(kube.list_nodes(config.node_selector)[0])
        core = client.CoreV1Api(api)
        # Someone else changes both nodes after our read: one label, one taint of their own.
        core.patch_node(names[0], {"metadata": {"labels": {"team": "vision"}}})
        maint = client.V1Taint(
            key="example.com/maintenance", value="soon", effect="PreferNoSchedule"
        )
        core.patch_node(names[1], {"spec": {"taints": [maint]}})
        before = api.writes_to("/api/v1/nodes/")
        actuator = KubeActuator(kube, config, nodes=stale, pods=ListingSource(kube, config))
        wanted = [NodeTarget(n, Mode.MINE) for n in names]
        result = actuator.apply_targets(wanted, "t2-409")
        started = set(result.started)
        # KWOK's heartbeat can move a node again between the 409 and the redo: that node
        # waits for the next pass, which writes on fresh data.
        for _ in range(2):
            if not result.deferred:
                break
            assert all("conflict" in why for why in result.deferred.values()), result.deferred
            result = actuator.apply_targets(wanted, "t2-409")
            started |= set(result.started)
        assert not result.errors and not result.deferred and started == set(names)
        assert actuator.totals["conflicts"] >= 2  # (KWOK's heartbeat may add more)
        assert actuator.totals["patches"] == 2
        # Each: a 409, then the redo on fresh data.
        assert api.writes_to("/api/v1/nodes/") - before == 2 + actuator.totals["conflicts"]
        node0 = core.read_node(names[0])
        node1 = core.read_node(names[1])
        assert node0.metadata.labels["team"] == "vision"  # their change survived ours
        assert {t.key for t in node1.spec.taints} == {
            "example.com/maintenance",
            "hashpivot.io/mining",
        }
        for node in (node0, node1):
            assert node.metadata.labels["hashpivot.io/mode"] == "mine"
            assert node.metadata.annotations["hashpivot.io/decision-id"] == "t2-409"
    finally:
        api.close()


CONTROLLER = textwrap.dedent(
    """
    import json, sys, time
    from orchestrator.adapters.k8s import (
        ClusterCache, KubeActuator, KubeClient, NodeTarget, load_api_client,
    )
    from orchestrator.models import Mode
    from orchestrator.models.config import KubernetesConfig

    args = json.loads(sys.argv[1])
    config = KubernetesConfig(**args["config"])
    kube = KubeClient(load_api_client(args["kubeconfig"]))
    cache = ClusterCache(kube, config, watch_timeout_s=30.0).start()
    cache.wait_synced(60.0)
    actuator = KubeActuator(kube, config, nodes=cache, pods=cache)
    mode = Mode.parse(args["mode"])
    targets = [NodeTarget(n, mode, reason="HIGHER_VALUE") for n in args["nodes"]]
    while True:
        result = actuator.apply_targets(targets, args["decision"])
        print(json.dumps({"writes": result.writes, "deferred": result.deferred}), flush=True)
        time.sleep(0.2)
    """
)


def test_killed_mid_switch_a_new_controller_converges_without_double_actions(
    kwok_cluster: KwokCluster, prefix: str, k8s_namespace: str
) -> None:
    api = kwok_cluster.api_client()
    core = client.CoreV1Api(api)
    names = add_gpu_nodes(api, prefix, 3)
    config = hp_config(k8s_namespace, prefix)
    kube = KubeClient(api)
    start_miner(kube, config, prefix)
    # A tenant's job (not interruptible) per node, waiting for its node to turn to AI: a
    # switch back to mine must then wait for it.
    for i, name in enumerate(names):
        core.create_namespaced_pod(k8s_namespace, gpu_pod(f"job-{i}", prefix, node=name))
    setup_cache = start_cache(kube, config)
    try:
        setup = KubeActuator(kube, config, nodes=setup_cache, pods=setup_cache)
        drive(
            setup,
            [NodeTarget(n, Mode.AI) for n in names],
            lambda: len(pods_by_node(core, k8s_namespace, "app=gpu-job")) == 3,
            what="every node AI and its job running",
        )
    finally:
        setup_cache.stop()
    assert all(f["state"] == "AI" for f in node_facts(core, prefix).values())

    args = {
        "kubeconfig": str(kwok_cluster.kubeconfig),
        "config": config.model_dump(mode="json"),
        "nodes": names,
        "mode": "mine",
        "decision": "before-crash",
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, json.dumps(args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                proc.poll() is None
                and all(f["state"] == "DRAINING_AI" for f in node_facts(core, prefix).values())
            ),
            "the first controller to start draining",
        )
        time.sleep(0.5)  # a few more of its passes: waiting on the jobs
    finally:
        proc.send_signal(signal.SIGKILL)  # killed in the middle of the switch
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    passes = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert passes and all(p["writes"] == 0 for p in passes[1:]), passes[:3]
    before = node_facts(core, prefix)
    assert all(f["tainted"] and f["mode"] == "idle" for f in before.values())

    # The jobs end. A new controller (no memory, a new plan that holds the nodes while they
    # switch) reads the cluster and finishes the switch.
    for i in range(3):
        core.delete_namespaced_pod(f"job-{i}", k8s_namespace, grace_period_seconds=0)
    counted = CountingApiClient.wrapping(api)
    kube2 = KubeClient(counted)
    cache = start_cache(kube2, config)
    try:
        restarted = KubeActuator(kube2, config, nodes=cache, pods=cache)
        held = [
            NodeTarget(n, Mode.IDLE, reason="GUARD_IN_TRANSITION", held_in_transition=True)
            for n in names
        ]
        drive(
            restarted,
            held,
            lambda: all(f["state"] == "MINING" for f in node_facts(core, prefix).values()),
            decision="after-restart",
            what="every node MINING after the restart",
        )
        # Converged: neither the held plan nor one that keeps them mining writes anything.
        assert restarted.apply_targets(held, "after-restart").writes == 0
        keep = [NodeTarget(n, Mode.MINE) for n in names]
        assert restarted.apply_targets(keep, "after-restart").writes == 0
    finally:
        cache.stop()
    # Exactly the remaining steps: → STARTING_MINE, → MINING per node; no eviction at all.
    assert restarted.totals["patches"] == 2 * len(names), restarted.totals
    assert counted.writes_to("/api/v1/nodes/") == 2 * len(names) + restarted.totals["conflicts"]
    assert counted.writes_to("/eviction") == 0
    after = node_facts(core, prefix)
    for name in names:
        notes, was = after[name]["annotations"], before[name]["annotations"]
        assert after[name]["mode"] == "mine" and after[name]["tainted"]
        assert notes["hashpivot.io/decision-id"] == "before-crash"  # why it began: kept
        assert notes["hashpivot.io/reason"] == was["hashpivot.io/reason"] == "HIGHER_VALUE"
        assert notes["hashpivot.io/target"] == "mine"
    miners = pods_by_node(core, k8s_namespace, MINER_SELECTOR)
    assert sorted(miners) == sorted(names)  # MINING means the miner pod runs
    api.close()  # type: ignore[no-untyped-call]
