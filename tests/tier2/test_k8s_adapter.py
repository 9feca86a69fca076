"""Tier 2: the Kubernetes adapter against a real control plane with KWOK GPU nodes.

Switching (labels, taints, the miner DaemonSet, pending pods as demand), draining
(disruption budgets, non-interruptible pods, protected leases) and shadow mode.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from orchestrator.adapters.k8s import (
    CountingApiClient,
    KubeActuator,
    KubeClient,
    KubeDemandSource,
    KubeFleetSource,
    NodeTarget,
    ShadowActuator,
)
from orchestrator.adapters.k8s.objects import MINING_TAINT_KEY, MODE_LABEL, format_time
from orchestrator.engine import build_context, decide
from orchestrator.models import AIJob, DemandSummary, FleetTable, Mode, builtin_catalog
from orchestrator.models.config import GuardConfig
from policies.greedy import Greedy
from tests.conftest import make_prices

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

N_NODES = 52


@pytest.fixture
def api(kwok_cluster: KwokCluster) -> Iterator[CountingApiClient]:
    base = kwok_cluster.api_client()
    counted = CountingApiClient.wrapping(base)
    yield counted
    counted.close()
    base.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def prefix(api: CountingApiClient) -> Iterator[str]:
    name = f"hp-{uuid.uuid4().hex[:6]}"
    yield name
    delete_nodes(api, name)


def test_modes_taints_miner_and_demand_on_52_gpu_nodes(
    api: CountingApiClient, prefix: str, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(api)
    names = add_gpu_nodes(api, prefix, N_NODES)
    config = hp_config(k8s_namespace, prefix)
    kube = KubeClient(api)
    start_miner(kube, config, prefix)
    cache = start_cache(kube, config)
    try:
        catalog = builtin_catalog()
        fleet_source = KubeFleetSource(cache, cache, config, catalog)
        demand_source = KubeDemandSource(cache, config, catalog)
        actuator = KubeActuator(kube, config, nodes=cache, pods=cache)
        wait_for(lambda: len(cache.nodes()) == N_NODES, "the cache to see every node")

        # Every node to mine: labelled, tainted, and the miner runs on each.
        to_mine = [NodeTarget(n, Mode.MINE, reason="HIGHER_VALUE") for n in names]

        def all_mining() -> bool:
            facts = node_facts(core, prefix)
            return all(f["state"] == "MINING" for f in facts.values())

        drive(actuator, to_mine, all_mining, what="every node MINING")
        facts = node_facts(core, prefix)
        assert all(f["mode"] == "mine" and f["tainted"] for f in facts.values())
        miners = pods_by_node(core, k8s_namespace, MINER_SELECTOR)
        assert sorted(miners) == sorted(names)
        fleet = fleet_source.fleet(time.time())
        assert fleet.n == N_NODES and all(fleet.mode == Mode.MINE)
        assert [p.name for p in fleet.profiles] == ["h100-sxm-8x"]

        # Tenants' GPU pods wait: every node is tainted for mining. They are demand.
        for i in range(6):
            pod = gpu_pod(f"train-{i}", prefix, annotations={config.price_annotation: "3.5"})
            core.create_namespaced_pod(k8s_namespace, pod)

        def ours(jobs: list[AIJob]) -> list[AIJob]:
            # The demand is cluster-wide; other tests' pods may still be around.
            return [j for j in jobs if j.id.startswith(f"{k8s_namespace}/")]

        def six_pending() -> list[AIJob] | None:
            jobs = ours(demand_source.demand(time.time()).pending)
            return jobs if len(jobs) == 6 else None

        jobs = wait_for(six_pending, "six pending GPU pods in the demand")
        assert {j.gpu_model for j in jobs} == {"H100_80GB_SXM5"}
        assert {j.offered_usd_per_gpu_hour for j in jobs} == {3.5}
        assert sum(j.gpus for j in jobs) == 48

        # Enough nodes flip to AI for the demand; the pods then schedule and run there.
        n_ai = math.ceil(sum(j.gpus for j in jobs) / 8)
        chosen = set(names[:n_ai])
        plan = [NodeTarget(n, Mode.AI if n in chosen else Mode.MINE) for n in names]

        def pods_run_on_ai_nodes() -> bool:
            running = pods_by_node(core, k8s_namespace, "app=gpu-job")
            placed = sum(len(v) for v in running.values())
            return placed == 6 and set(running) <= chosen

        drive(actuator, plan, pods_run_on_ai_nodes, decision="t2-ai", what="GPU pods to run")
        wait_for(
            lambda: all(node_facts(core, prefix)[n]["state"] == "AI" for n in chosen),
            "chosen nodes in state AI",
        )
        facts = node_facts(core, prefix)
        for name, f in facts.items():
            if name in chosen:
                assert f["mode"] == "ai" and not f["tainted"] and f["state"] == "AI"
                assert f["annotations"]["hashpivot.io/decision-id"] == "t2-ai"
            else:
                assert f["mode"] == "mine" and f["tainted"] and f["state"] == "MINING"

        # The miner left the AI nodes and runs only on mine nodes.
        def miners_on_mine_nodes() -> dict[str, list[str]] | None:
            m = pods_by_node(core, k8s_namespace, MINER_SELECTOR)
            return m if set(m) == set(names) - chosen else None

        miners = wait_for(miners_on_mine_nodes, "miner pods only on mine nodes")
        assert all(facts[n]["mode"] == "mine" for n in miners)

        def busy_fleet() -> FleetTable | None:
            f = fleet_source.fleet(time.time())
            return f if f.ai_gpus_busy.sum() == 48 else None

        fleet = wait_for(busy_fleet, "the fleet to see 48 busy GPUs")
        assert int((fleet.mode == Mode.AI).sum()) == n_ai
        assert not ours(demand_source.demand(time.time()).pending)
        assert {j.id.split("/")[1] for j in ours(demand_source.running())} == {
            f"train-{i}" for i in range(6)
        }
        # Converged: another pass writes nothing.
        assert actuator.apply_targets(plan, "t2-ai").writes == 0

        # Someone removes a mining node's taint, and another node's mode label: drift,
        # put back by the pass between cycles (docs/operations.md), nothing else written.
        untainted, unlabelled = sorted(set(names) - chosen)[:2]
        node = core.read_node(untainted)
        node.spec.taints = [t for t in node.spec.taints or [] if t.key != MINING_TAINT_KEY]
        core.replace_node(untainted, node)
        core.patch_node(unlabelled, {"metadata": {"labels": {MODE_LABEL: None}}})
        assert not node_facts(core, prefix)[untainted]["tainted"]

        def put_back() -> bool:
            actuator.reconcile()
            facts = node_facts(core, prefix)
            return bool(facts[untainted]["tainted"] and facts[unlabelled]["mode"] == "mine")

        wait_for(put_back, "the taint and the label put back")
        facts = node_facts(core, prefix)
        assert facts[untainted]["state"] == facts[unlabelled]["state"] == "MINING"
        assert actuator.apply_targets(plan, "t2-ai").writes == 0
    finally:
        cache.stop()


def _create_pdb(api: client.ApiClient, namespace: str, app: str) -> None:
    policy = client.PolicyV1Api(api)
    pdb = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name=app),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=1, selector=client.V1LabelSelector(match_labels={"budget": app})
        ),
    )
    policy.create_namespaced_pod_disruption_budget(namespace, pdb)

    def processed() -> bool:
        current = policy.read_namespaced_pod_disruption_budget(app, namespace)
        status = current.status
        return bool(
            status
            and status.observed_generation == current.metadata.generation
            and status.current_healthy == 1
            and status.disruptions_allowed == 0
        )

    wait_for(processed, f"PDB {app} processed by the disruption controller")


def test_drain_respects_budgets_tenants_and_leases(
    api: CountingApiClient, prefix: str, k8s_namespace: str
) -> None:
    """Four AI nodes go to mine. On each a different pod:
    a: interruptible, under a PDB (429, retried later, then evicted when the PDB goes);
    b: not interruptible (never evicted: waits for the job to end);
    c: interruptible but inside a protected lease (never evicted while it runs);
    d: interruptible (priority class), no lease (evicted at once)."""
    core = client.CoreV1Api(api)
    scheduling = client.SchedulingV1Api(api)
    names = add_gpu_nodes(api, prefix, 4)
    preemptible = f"{prefix}-preemptible"  # priority classes are cluster-wide: one per test
    scheduling.create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=preemptible), value=0)
    )
    config = hp_config(k8s_namespace, prefix, interruptible_priority_classes=[preemptible])
    kube = KubeClient(api)
    start_miner(kube, config, prefix)
    cache = start_cache(kube, config)
    try:
        actuator = KubeActuator(kube, config, nodes=cache, pods=cache)
        wait_for(lambda: len(cache.nodes()) == 4, "the cache to see every node")
        a, b, c, d = names
        interruptible = {config.interruptible_label: "true"}
        lease = format_time(time.time() + 3600)
        pods = {
            a: gpu_pod("job-a", prefix, node=a, labels={**interruptible, "budget": "a"}),
            b: gpu_pod("job-b", prefix, node=b),
            c: gpu_pod(
                "job-c",
                prefix,
                node=c,
                labels=interruptible,
                annotations={config.lease_annotation: lease},
            ),
            d: gpu_pod("job-d", prefix, node=d, priority_class=preemptible),
        }
        # The jobs wait for their nodes (tainted at first), then run once they turn to AI.
        for pod in pods.values():
            core.create_namespaced_pod(k8s_namespace, pod)
        drive(
            actuator,
            [NodeTarget(n, Mode.AI) for n in names],
            lambda: len(pods_by_node(core, k8s_namespace, "app=gpu-job")) == 4,
            what="every node AI and four AI pods running",
        )
        _create_pdb(api, k8s_namespace, "a")
        wait_for(lambda: len(cache.pods()) >= 4, "the pod cache to see the AI pods")

        to_mine = [NodeTarget(n, Mode.MINE, reason="HIGHER_VALUE") for n in names]
        evictions_before = api.writes_to("/eviction")

        def d_mining_a_refused() -> bool:
            facts = node_facts(core, prefix)
            return facts[d]["state"] == "MINING" and "job-a" in str(actuator.last_report.refused)

        results = drive(actuator, to_mine, d_mining_a_refused, what="d MINING and a's 429")
        assert any("disruption budget" in r.deferred.get(a, "") for r in results)
        # A few more passes: a's eviction is retried and refused, b and c are left alone.
        for _ in range(5):
            result = actuator.apply_targets(to_mine, "t2")
            assert not result.errors
            time.sleep(0.2)
        assert "disruption budget" in result.deferred[a]
        assert "not interruptible" in result.deferred[b]
        assert "protected by lease" in result.deferred[c]
        facts = node_facts(core, prefix)
        assert all(facts[n]["state"] == "DRAINING_AI" and facts[n]["tainted"] for n in (a, b, c))
        evictions = api.writes_to("/eviction") - evictions_before
        assert api.writes_to("/pods/job-b/eviction") == 0
        assert api.writes_to("/pods/job-c/eviction") == 0
        assert api.writes_to("/pods/job-d/eviction") == 1
        assert api.writes_to("/pods/job-a/eviction") == evictions - 1 >= 2
        for name in ("job-a", "job-b", "job-c"):
            pod = core.read_namespaced_pod(name, k8s_namespace)
            assert pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None

        # The budget is lifted: a is evicted and converges; b's job ends on its own.
        client.PolicyV1Api(api).delete_namespaced_pod_disruption_budget("a", k8s_namespace)
        core.delete_namespaced_pod("job-b", k8s_namespace, grace_period_seconds=0)
        drive(
            actuator,
            to_mine,
            lambda: all(node_facts(core, prefix)[n]["state"] == "MINING" for n in (a, b, d)),
            what="a, b and d MINING",
        )
        # The lease still runs: c keeps draining and job-c was never touched.
        assert node_facts(core, prefix)[c]["state"] == "DRAINING_AI"
        assert api.writes_to("/pods/job-c/eviction") == 0
        assert api.writes_to("/pods/job-b/eviction") == 0
    finally:
        cache.stop()
        scheduling.delete_priority_class(preemptible)


def test_shadow_mode_makes_zero_write_calls(
    kwok_cluster: KwokCluster, prefix: str, k8s_namespace: str
) -> None:
    """The whole shadow cycle (read fleet and demand, decide, preview) writes nothing."""
    admin = kwok_cluster.api_client()
    try:
        names = add_gpu_nodes(admin, prefix, 6)
    finally:
        admin.close()  # type: ignore[no-untyped-call]
    counted = CountingApiClient.wrapping(kwok_cluster.api_client())
    try:
        config = hp_config(k8s_namespace, prefix)
        kube = KubeClient(counted)
        cache = start_cache(kube, config)
        guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
        try:
            catalog = builtin_catalog()
            fleet_source = KubeFleetSource(cache, cache, config, catalog)
            demand_source = KubeDemandSource(cache, config, catalog)
            shadow = ShadowActuator(KubeActuator(kube, config, nodes=cache, pods=cache))
            wait_for(lambda: len(cache.nodes()) == 6, "the cache to see every node")
            for _ in range(5):
                now = time.time()
                fleet = fleet_source.fleet(now)
                jobs = demand_source.demand(now).pending
                ctx = build_context(
                    now_s=now,
                    prices=make_prices(fleet, observed_s=now),
                    demand=DemandSummary.from_jobs(jobs, fleet.gpu_models),
                    fleet=fleet,
                    guards=guards,
                )
                result = shadow.apply(decide(ctx, Greedy(), guards), fleet)
                assert result.writes == 0
                # Untouched nodes would at least be adopted (labelled, tainted): all 6 listed.
                assert sorted(result.deferred) == sorted(names)
                time.sleep(0.2)
        finally:
            cache.stop()
        assert counted.writes == 0, dict(counted.calls)
        assert counted.reads >= 4  # it did read: lists and watches
        assert len(shadow.records) == 5
        facts = node_facts(client.CoreV1Api(counted), prefix)
        assert all(f["mode"] is None and not f["tainted"] for f in facts.values())
        assert counted.writes == 0
    finally:
        counted.close()
