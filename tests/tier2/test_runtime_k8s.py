"""Tier 2: the controller (`Controller`, as `hashpivot run` hosts it) against the real
control plane: shadow decides and journals but writes nothing; live converges the cluster.

Market feeds come from a local HTTP server replaying recorded API responses, so the
controller's clock is pinned to the moment those responses describe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from orchestrator.adapters.k8s import CountingApiClient
from orchestrator.models.config import ControllerMode, HashpivotConfig
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

pytestmark = pytest.mark.tier2

N_NODES = 8


class PinnedClock:
    """Market time starts where the recorded responses are, then runs with the wall."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def now_s(self) -> float:
        return NOW + (time.monotonic() - self.started)


@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    with gpu_node_prefix(kwok_cluster, "rt", N_NODES) as name:
        yield name


def site_config(namespace: str, prefix: str, feeds: FeedServer, mode: str) -> HashpivotConfig:
    return HashpivotConfig(
        kubernetes=hp_config(namespace, prefix, miner_daemonset=None),
        live_market=live_config(feeds),
        policy={"name": "greedy"},
        guards={"min_dwell_s": 0, "max_fleet_switch_share_per_hour": 1.0,
                "stale_after_s": 10 * 86_400},
        controller={"mode": mode, "interval_s": 1.0},
    )


def test_shadow_run_journals_plans_and_writes_nothing(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    config = site_config(k8s_namespace, prefix, feeds, "shadow")
    counted = CountingApiClient.wrapping(kwok_cluster.api_client())
    controller = Controller(
        config, RunOptions(mode=ControllerMode.SHADOW, journal_dir=str(tmp_path)),
        api=counted, clock=PinnedClock(),
    )
    try:
        controller.run(3)
    finally:
        controller.close()
    records = list(read_journal(tmp_path))
    assert len(records) == 3
    assert all(r.market is not None and r.mode == "shadow" for r in records)
    assert sum(records[-1].fleet_modes.values()) == N_NODES
    # Shadow still says what it would do, in the journal.
    assert any(r.actuation.get("deferred") for r in records)
    assert counted.writes == 0, dict(counted.calls)
    assert counted.reads > 0


def test_live_run_converges_the_cluster(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    admin = kwok_cluster.api_client()
    core = client.CoreV1Api(admin)
    try:
        # Two tenants wait for whole nodes: demand the controller should serve.
        for i in range(2):
            core.create_namespaced_pod(k8s_namespace, gpu_pod(f"job-{i}", prefix))
        config = site_config(k8s_namespace, prefix, feeds, "live")
        controller = Controller(
            config, RunOptions(mode=ControllerMode.LIVE, journal_dir=str(tmp_path)),
            api=kwok_cluster.api_client(), clock=PinnedClock(),
        )
        try:
            controller.run(6)
        finally:
            controller.close()

        def converged() -> bool:
            facts = node_facts(core, prefix)
            labelled = all(f["mode"] in ("mine", "ai", "idle") for f in facts.values())
            running = pods_by_node(core, k8s_namespace, "app=gpu-job")
            return labelled and sum(len(p) for p in running.values()) == 2

        wait_for(converged, "the live controller to label nodes and place both tenants")
        facts = node_facts(core, prefix)
        ai_nodes = {n for n, f in facts.items() if f["mode"] == "ai"}
        assert len(ai_nodes) >= 2
        placed = pods_by_node(core, k8s_namespace, "app=gpu-job")
        assert set(placed) <= ai_nodes  # tenants run only on nodes flipped to AI
        records = list(read_journal(tmp_path))
        assert records and all(r.mode == "live" for r in records)
    finally:
        admin.close()  # type: ignore[no-untyped-call]
