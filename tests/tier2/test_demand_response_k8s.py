"""Tier 2: a called demand-response event against the real control plane. A live
controller (`Controller`, as `hashpivot run` hosts it) has GPU nodes mining and two
tenants on AI nodes; a controller whose site has a demand-response commitment, with an
event in force, idles the miners in its first cycle, keeps the site under the committed
draw and leaves the tenants where they run.

Market feeds come from a local HTTP server replaying recorded API responses, so the
controller's clock is pinned to the moment those responses describe.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.models.hardware import builtin_catalog
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import NOW, FeedServer, live_config

from .cluster import KwokCluster
from .k8s_helpers import (
    gpu_node_prefix,
    gpu_pod,
    hp_config,
    node_facts,
    pods_by_node,
    wait_for,
)
from .test_runtime_k8s import PinnedClock

pytestmark = pytest.mark.tier2

N_NODES = 6
TENANTS = 2
PROGRAM = "tier-2 demand response"


@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    with gpu_node_prefix(kwok_cluster, "dr", N_NODES) as name:
        yield name


def _config(namespace: str, prefix: str, feeds: FeedServer,
            contract: dict[str, object] | None) -> HashpivotConfig:
    site: dict[str, object] = {"name": "hall", "timezone": "UTC"}
    if contract is not None:
        site["contract"] = contract
    return HashpivotConfig(
        sites=[site],
        kubernetes=hp_config(namespace, prefix, miner_daemonset=None),
        # GPUs earn by selling hashpower when no tenant wants them.
        live_market=live_config(feeds, hashpower_btc_per_unit_day_fixed={
            "gpu-hashpower": 0.0003}),
        policy={"name": "greedy"},
        guards={"min_dwell_s": 0, "max_fleet_switch_share_per_hour": 1.0,
                "stale_after_s": 10 * 86_400},
        controller={"mode": "live", "interval_s": 1.0},
    )


def _run(config: HashpivotConfig, kwok: KwokCluster, journal: Path, cycles: int) -> None:
    controller = Controller(config, RunOptions(mode=ControllerMode.LIVE,
                                               journal_dir=str(journal)),
                            api=kwok.api_client(), clock=PinnedClock())
    try:
        controller.run(cycles)
    finally:
        controller.close()


def test_called_event_idles_miners_and_keeps_tenants(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    admin = kwok_cluster.api_client()
    core = client.CoreV1Api(admin)
    try:
        for i in range(TENANTS):
            core.create_namespaced_pod(k8s_namespace, gpu_pod(f"job-{i}", prefix))
        _run(_config(k8s_namespace, prefix, feeds, None), kwok_cluster, tmp_path / "a", 6)

        def settled() -> bool:
            facts = node_facts(core, prefix)
            running = pods_by_node(core, k8s_namespace, "app=gpu-job")
            return (sum(len(p) for p in running.values()) == TENANTS
                    and any(f["mode"] == "mine" for f in facts.values()))

        wait_for(settled, "the controller to place both tenants and mine on the rest")
        tenants_before = pods_by_node(core, k8s_namespace, "app=gpu-job")
        miners = [n for n, f in node_facts(core, prefix).items() if f["mode"] == "mine"]
        assert miners

        # The committed draw: the tenants' nodes at full AI power, every other node idle.
        h100 = builtin_catalog()["h100-sxm-8x"]
        max_kw = (TENANTS * h100.watts_ai + (N_NODES - TENANTS) * h100.watts_idle) / 1000.0
        events = tmp_path / "events.csv"
        # Called before the controller starts, due at once, ending in an hour (market time).
        events.write_text(f"start,end,called\n{NOW - 60:.0f},{NOW + 3600:.0f},{NOW - 120:.0f}\n")
        contract = {"demand_response": {
            "program": PROGRAM, "max_draw_kw": max_kw, "committed_kw": 30.0,
            "response_min": 0.5,
            "events": {"path": str(events), "called_column": "called"}}}
        _run(_config(k8s_namespace, prefix, feeds, contract), kwok_cluster, tmp_path / "b", 3)

        def shed() -> bool:
            facts = node_facts(core, prefix)
            return all(facts[n]["mode"] == "idle" for n in miners)

        wait_for(shed, "the miners to be idled for the event")
        assert pods_by_node(core, k8s_namespace, "app=gpu-job") == tenants_before
        records = [r for r in read_journal(tmp_path / "b") if r.plan]
        assert records
        first = records[0]
        assert first.plan["site_power_kw"][0] <= max_kw + 1e-6
        assert first.plan["site_cap_kw"][0] == pytest.approx(max_kw)
        assert first.plan["modes"]["ai"] >= TENANTS
        shed_now = {c.node for c in first.changes if c.target == "idle"}
        assert set(miners) <= shed_now
        assert all(PROGRAM in c.text for c in first.changes if c.node in miners)
    finally:
        admin.close()  # type: ignore[no-untyped-call]
