"""Tier 2: the live controller records an Event on each node it switches and on each node
a guard holds, on the real API server, and the NOTES' `kubectl get events` field selector
finds them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.adapters.k8s.events import REPORTING_CONTROLLER
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import FeedServer

from .cluster import KwokCluster
from .k8s_helpers import gpu_node_prefix, gpu_pod
from .test_runtime_k8s import PinnedClock, site_config

pytestmark = pytest.mark.tier2


@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    with gpu_node_prefix(kwok_cluster, "ev", 6) as name:
        yield name


def live_run_with_waiting_tenants(kwok_cluster: KwokCluster, namespace: str, prefix: str,
                                  config: HashpivotConfig, journal: Path, cycles: int,
                                  ) -> list[Any]:
    """Two tenants wait for whole nodes; the live controller runs `cycles` cycles. Returns
    the Events it recorded on this test's nodes."""
    admin = kwok_cluster.api_client()
    try:
        for i in range(2):
            client.CoreV1Api(admin).create_namespaced_pod(namespace,
                                                          gpu_pod(f"job-{i}", prefix))
        controller = Controller(
            config, RunOptions(mode=ControllerMode.LIVE, journal_dir=str(journal)),
            api=kwok_cluster.api_client(), clock=PinnedClock(),
        )
        try:
            controller.run(cycles)
        finally:
            controller.close()
        listed = client.CoreV1Api(admin).list_namespaced_event(
            "default",
            field_selector=f"involvedObject.kind=Node,reportingComponent={REPORTING_CONTROLLER}",
        ).items
    finally:
        admin.close()  # type: ignore[no-untyped-call]
    return [e for e in listed if (e.involved_object.name or "").startswith(prefix)]


def test_live_switches_leave_an_event_on_each_node(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    # The waiting tenants make the controller flip nodes to AI.
    config = site_config(k8s_namespace, prefix, feeds, "live")
    ours = live_run_with_waiting_tenants(kwok_cluster, k8s_namespace, prefix, config,
                                         tmp_path, 3)
    switched = {(c.node, c.target, c.text) for r in read_journal(tmp_path) for c in r.changes}
    assert switched, "waiting tenants make the controller switch nodes"
    for node, target, text in switched:
        reason = f"SwitchTo{target.capitalize()}"
        assert any(e.involved_object.name == node and e.reason == reason
                   and text in (e.message or "")
                   for e in ours), (node, reason)
    assert all(e.type in ("Normal", "Warning") for e in ours)


def test_a_guard_hold_leaves_an_event_on_the_node_it_keeps(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    # Tenants wait, but the operator froze switching: the node greedy would flip to AI is
    # held, and its Event says so as a Warning (docs/operations.md: `Held<Guard>`).
    config = site_config(k8s_namespace, prefix, feeds, "live")
    config = config.model_copy(update={"guards": config.guards.model_copy(
        update={"frozen": True})})
    ours = live_run_with_waiting_tenants(kwok_cluster, k8s_namespace, prefix, config,
                                         tmp_path, 2)
    records = list(read_journal(tmp_path))
    assert not any(r.changes for r in records)
    frozen = records[-1].plan["guards"].get("GUARD_FROZEN", 0)
    assert frozen, "greedy wants a node for the waiting tenants; the freeze holds it"
    held = [e for e in ours if e.reason == "HeldFrozen"]
    assert len({e.involved_object.name for e in held}) == frozen
    assert all(e.type == "Warning" and "switching frozen by the operator" in (e.message or "")
               for e in held)
    assert not [e for e in ours if (e.reason or "").startswith("SwitchTo")]
