"""Tier 2: the live controller records an Event on each node it switches and on each node
a guard holds, on the real API server, and the NOTES' `kubectl get events` field selector
finds them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from orchestrator.adapters.k8s.events import REPORTING_CONTROLLER
from orchestrator.models.config import ControllerMode
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


def test_live_switches_leave_an_event_on_each_node(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path,
) -> None:
    admin = kwok_cluster.api_client()
    for i in range(2):  # tenants waiting for whole nodes: the controller flips some to AI
        client.CoreV1Api(admin).create_namespaced_pod(k8s_namespace,
                                                      gpu_pod(f"job-{i}", prefix))
    config = site_config(k8s_namespace, prefix, feeds, "live")
    controller = Controller(
        config, RunOptions(mode=ControllerMode.LIVE, journal_dir=str(tmp_path)),
        api=kwok_cluster.api_client(), clock=PinnedClock(),
    )
    try:
        controller.run(3)
    finally:
        controller.close()
    switched = {(c.node, c.target, c.text) for r in read_journal(tmp_path) for c in r.changes}
    assert switched, "waiting tenants make the controller switch nodes"
    try:
        listed = client.CoreV1Api(admin).list_namespaced_event(
            "default",
            field_selector=f"involvedObject.kind=Node,reportingComponent={REPORTING_CONTROLLER}",
        ).items
    finally:
        admin.close()  # type: ignore[no-untyped-call]
    ours = [e for e in listed if (e.involved_object.name or "").startswith(prefix)]
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
    admin = kwok_cluster.api_client()
    for i in range(2):
        client.CoreV1Api(admin).create_namespaced_pod(k8s_namespace,
                                                      gpu_pod(f"job-{i}", prefix))
    config = site_config(k8s_namespace, prefix, feeds, "live")
    config = config.model_copy(update={"guards": config.guards.model_copy(
        update={"frozen": True})})
    controller = Controller(
        config, RunOptions(mode=ControllerMode.LIVE, journal_dir=str(tmp_path)),
        api=kwok_cluster.api_client(), clock=PinnedClock(),
    )
    try:
        controller.run(2)
    finally:
        controller.close()
    records = list(read_journal(tmp_path))
    assert not any(r.changes for r in records)
    frozen = records[-1].plan["guards"].get("GUARD_FROZEN", 0)
    assert frozen, "greedy wants a node for the waiting tenants; the freeze holds it"
    try:
        listed = client.CoreV1Api(admin).list_namespaced_event(
            "default",
            field_selector=f"involvedObject.kind=Node,reportingComponent={REPORTING_CONTROLLER}",
        ).items
    finally:
        admin.close()  # type: ignore[no-untyped-call]
    ours = [e for e in listed if (e.involved_object.name or "").startswith(prefix)]
    held = [e for e in ours if e.reason == "HeldFrozen"]
    assert len({e.involved_object.name for e in held}) == frozen
    assert all(e.type == "Warning" and "switching frozen by the operator" in (e.message or "")
               for e in held)
    assert not [e for e in ours if (e.reason or "").startswith("SwitchTo")]
