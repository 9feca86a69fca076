"""Tier 0/1: the fleet and demand readers, and one whole cycle against the fake API."""

from __future__ import annotations

import time

import numpy as np

from orchestrator.adapters.k8s.actuator import KubeActuator
from orchestrator.adapters.k8s.demand import KubeDemandSource
from orchestrator.adapters.k8s.fleet import KubeFleetSource, profile_name_of
from orchestrator.adapters.k8s.objects import STATE_ANNOTATION, format_time
from orchestrator.adapters.k8s.watch import ListingSource
from orchestrator.engine import build_context, decide
from orchestrator.models import DemandSummary, Mode, NodeState, Site, builtin_catalog
from orchestrator.models.config import GuardConfig, KubernetesConfig
from orchestrator.ports import DemandSource, FleetSource
from policies.greedy import Greedy
from tests.conftest import make_prices
from tests.doubles.k8s import FakeKube

NS = "hp"
CFG = KubernetesConfig(namespace=NS, node_selector="hashpivot.io/managed=true")
H100 = "NVIDIA-H100-80GB-HBM3"
NOW = 1_800_000_000.0
MANAGED = {"hashpivot.io/managed": "true"}


def sources(kube: FakeKube) -> tuple[KubeFleetSource, KubeDemandSource]:
    listing = ListingSource(kube, CFG)
    catalog = builtin_catalog()
    sites = [Site(name="west"), Site(name="east")]
    return (
        KubeFleetSource(listing, listing, CFG, catalog, sites),
        KubeDemandSource(listing, CFG, catalog),
    )


def test_protocols() -> None:
    fleet, demand = sources(FakeKube())
    assert isinstance(fleet, FleetSource) and isinstance(demand, DemandSource)


def test_profile_from_label_else_gpu_product() -> None:
    assert profile_name_of({CFG.profile_label: "b200-8x", "nvidia.com/gpu.product": H100}, CFG) == (
        "b200-8x"
    )
    assert profile_name_of({"nvidia.com/gpu.product": H100}, CFG) == "h100-sxm-8x"
    assert profile_name_of({"nvidia.com/gpu.product": "unknown"}, CFG) is None
    assert profile_name_of({}, CFG) is None


def test_fleet_rows_from_nodes_and_pods() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={**MANAGED, "nvidia.com/gpu.product": H100}, gpus=8)
    kube.add_node(
        "b",
        labels={**MANAGED, CFG.profile_label: "a100-sxm-8x", CFG.site_label: "east"},
        annotations={STATE_ANNOTATION: "DRAINING_AI", "hashpivot.io/since": format_time(NOW - 60)},
        gpus=4,
    )
    kube.add_node("c", labels={**MANAGED, "nvidia.com/gpu.product": "Tesla-K80"})
    kube.add_node(
        "d",
        labels={
            **MANAGED,
            "nvidia.com/gpu.product": H100,
            "hashpivot.io/mode": "mine",
            CFG.opt_out_label: "true",
        },
    )
    kube.add_node("d2", labels={"nvidia.com/gpu.product": H100})  # not managed
    kube.add_node("e", labels={**MANAGED, "hashpivot.io/mode": "mine", CFG.profile_label: "s21"})
    lease = format_time(NOW + 3600)
    kube.add_pod("t", "j1", gpus=2, node="b", annotations={CFG.lease_annotation: lease})
    kube.add_pod("t", "j2", gpus=1, node="b", labels={CFG.interruptible_label: "true"})
    kube.add_pod("t", "j3", gpus=8, node="a", priority_class="preemptible")
    kube.add_pod(NS, "hashpivot-miner-a", node="a", daemonset="hashpivot-miner", gpus=8)
    kube.add_pod("t", "pending", gpus=8)
    fleet_source, _ = sources(kube)
    fleet = fleet_source.fleet(NOW)
    assert list(fleet.names) == ["a", "b", "d", "e"]
    assert fleet_source.skipped == {"c": "GPU product 'Tesla-K80' is not in gpu_product_profiles"}
    assert [p.name for p in fleet.profiles] == ["a100-sxm-8x", "h100-sxm-8x", "s21"]
    a, b, d, e = range(4)
    assert fleet.state[a] == NodeState.AI and fleet.mode[a] == Mode.AI  # unlabelled, tenants run
    assert fleet.ai_gpus_busy[a] == 8.0 and fleet.ai_interruptible[a]  # the miner is not AI
    assert fleet.state[b] == NodeState.DRAINING_AI and fleet.mode[b] == Mode.IDLE
    assert fleet.since[b] == NOW - 60
    assert fleet.ai_gpus_busy[b] == 3.0 and fleet.lease_until[b] == NOW + 3600
    assert not fleet.ai_interruptible[b]
    assert fleet.gpus[b] == 4.0  # allocatable wins over the profile's 8
    assert fleet.site[b] == 1 and fleet.site[a] == 0
    assert fleet.opt_out[d] and fleet.mode[d] == Mode.MINE
    assert fleet.gpus[e] == 0.0 and fleet.mode[e] == Mode.MINE and fleet.is_asic()[e]
    assert fleet.reachable.all()


def test_demand_reads_pending_gpu_pods_only() -> None:
    kube = FakeKube()
    kube.add_pod(
        "t",
        "priced",
        gpus=8,
        node_selector={"nvidia.com/gpu.product": H100},
        annotations={CFG.price_annotation: "3.1", CFG.duration_annotation: "12"},
    )
    kube.add_pod("t", "any", gpus=2, priority_class="preemptible")
    kube.add_pod("t", "by-profile", gpus=1, node_selector={CFG.profile_label: "b200-8x"})
    kube.add_pod("t", "running", gpus=4, node="n1")
    kube.add_pod("t", "cpu", gpus=0)
    kube.add_pod(NS, "miner-x", gpus=8, daemonset="hashpivot-miner", phase="Pending")
    _, demand_source = sources(kube)
    snap = demand_source.demand(NOW)
    assert snap.source == "kubernetes" and snap.observed_at is not None
    jobs = {j.id: j for j in snap.pending}
    assert sorted(jobs) == ["t/any", "t/by-profile", "t/priced"]
    assert jobs["t/priced"].gpu_model == "H100_80GB_SXM5"
    assert jobs["t/priced"].offered_usd_per_gpu_hour == 3.1
    assert jobs["t/priced"].expected_duration_h == 12.0
    assert jobs["t/any"].gpu_model is None and jobs["t/any"].interruptible
    assert jobs["t/any"].offered_usd_per_gpu_hour is None  # the configured market price applies
    assert jobs["t/by-profile"].gpu_model == "B200_180GB"
    assert [j.id for j in demand_source.running()] == ["t/running"]


def test_one_cycle_pending_pods_pull_mining_gpus_into_ai() -> None:
    """FleetSource → engine → Actuator: demand for 16 GPUs flips two mining nodes to AI."""
    kube = FakeKube()
    for i in range(4):
        kube.add_node(
            f"g{i}",
            labels={**MANAGED, "nvidia.com/gpu.product": H100, "hashpivot.io/mode": "mine"},
            annotations={
                STATE_ANNOTATION: "MINING",
                "hashpivot.io/target": "mine",
                "hashpivot.io/since": format_time(NOW - 86400),
            },
            taints=[{"key": "hashpivot.io/mining", "value": "true", "effect": "NoSchedule"}],
        )
    for j in range(2):
        kube.add_pod("t", f"train{j}", gpus=8, node_selector={"nvidia.com/gpu.product": H100})
    fleet_source, demand_source = sources(kube)
    fleet = fleet_source.fleet(NOW)
    snapshot = demand_source.demand(NOW)
    demand = DemandSummary.from_jobs(snapshot.pending, fleet.gpu_models)
    assert demand.pending_gpus.tolist() == [16.0]
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    ctx = build_context(
        now_s=NOW,
        prices=make_prices(fleet, observed_s=NOW, gpu_usd_per_gpu_hour=2.5),
        demand=demand,
        fleet=fleet,
        guards=guards,
    )
    plan = decide(ctx, Greedy(), guards)
    assert int(np.count_nonzero(plan.target == Mode.AI)) == 2
    listing = ListingSource(kube, CFG)
    act = KubeActuator(kube, CFG, nodes=listing, pods=listing, clock=lambda: NOW)
    result = act.apply(plan, fleet)
    assert len(result.started) == 2 and result.writes == 2
    chosen = sorted(result.started)
    for name in chosen:
        assert kube.nodes[name]["metadata"]["annotations"]["hashpivot.io/decision-id"] == (
            plan.decision_id
        )
    # The miner is not managed here by a running DaemonSet: no pods to wait for.
    again = act.apply(plan, fleet)
    assert sorted(again.completed) == chosen
    after = fleet_source.fleet(NOW)
    assert int(np.count_nonzero(after.mode == Mode.AI)) == 2


def test_build_adapters_live_and_shadow() -> None:
    from orchestrator.adapters.k8s import KubeActuator, ShadowActuator, build_adapters
    from orchestrator.models.config import HashpivotConfig

    kube = FakeKube()
    kube.watch_hold_s = 0.01
    kube.add_node("g0", labels={**MANAGED, "nvidia.com/gpu.product": H100})
    live = build_adapters(
        HashpivotConfig(controller={"mode": "live"}, kubernetes={"namespace": NS}),
        kube=kube,
        identity="me",
    )
    assert isinstance(live.actuator, KubeActuator) and live.elector is not None
    try:
        assert live.start(10.0)
        deadline = time.monotonic() + 10.0
        while not live.is_leader() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert live.is_leader()
        assert list(live.fleet.fleet(NOW).names) == ["g0"]
    finally:
        live.stop()
    assert kube.leases[f"{NS}/hashpivot-leader"]["spec"].get("holderIdentity") is None  # released

    shadow_kube = FakeKube()
    shadow_kube.add_node("g0", labels={**MANAGED, "nvidia.com/gpu.product": H100})
    shadow = build_adapters(HashpivotConfig(kubernetes={"namespace": NS}), kube=shadow_kube)
    assert isinstance(shadow.actuator, ShadowActuator) and shadow.elector is None
    from orchestrator.adapters.k8s import NodeTarget

    result = shadow.kube_actuator.apply_targets([NodeTarget("g0", Mode.MINE)], "x")
    assert result.writes == 0 and shadow_kube.writes == 0  # even the inner actuator
