"""Tier 2: a live grid event acknowledged on the real control plane. A live controller
whose site has a demand-response commitment reads an event from its watched file, caps
the site in its first cycle, and acknowledges the event's start with a Kubernetes Event
(reason GridEventStarted, naming the event and the site) besides the log line.

Market feeds come from a local HTTP server replaying recorded API responses, so the
controller's clock is pinned to the moment those responses describe.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.adapters.k8s.events import EVENTS_NAMESPACE
from orchestrator.models.hardware import builtin_catalog
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import NOW, FeedServer

from .cluster import KwokCluster
from .k8s_helpers import wait_for
from .test_demand_response_k8s import N_NODES, _config, _run, prefix  # noqa: F401

pytestmark = pytest.mark.tier2


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_live_grid_event_caps_the_site_and_is_acknowledged_with_an_event(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str,  # noqa: F811
    feeds: FeedServer, tmp_path: Path,
) -> None:
    h100 = builtin_catalog()["h100-sxm-8x"]
    max_kw = N_NODES * h100.watts_idle / 1000.0
    calendar = tmp_path / "events.csv"
    calendar.write_text("start,end\n")  # nothing recorded: the event comes live
    signals = tmp_path / "signals.json"
    eid = f"t2-{prefix}"
    signals.write_text(json.dumps({"events": [{
        "id": eid, "start": _iso(NOW - 60), "end": _iso(NOW + 3600),
        "called_at": _iso(NOW - 120), "max_draw_kw": max_kw}]}))
    contract = {"demand_response": {
        "program": "tier-2 live demand response", "max_draw_kw": 10_000.0,
        "committed_kw": 30.0, "response_min": 0.5, "events": {"path": str(calendar)}},
        "live": {"file": str(signals)}}
    _run(_config(k8s_namespace, prefix, feeds, contract), kwok_cluster, tmp_path / "j", 2)
    records = [r for r in read_journal(tmp_path / "j") if r.plan]
    assert records
    first = records[0]
    assert first.plan["site_cap_kw"][0] == pytest.approx(max_kw)
    assert first.plan["site_power_kw"][0] <= max_kw + 1e-6
    admin = kwok_cluster.api_client()
    # The core view, narrowed to this reason by the apiserver: other tests' Events in the
    # namespace (some without an eventTime, which the events.k8s.io model refuses) are
    # never read.
    core = client.CoreV1Api(admin)
    try:
        def grid_acks() -> list[Any]:
            return list(core.list_namespaced_event(
                EVENTS_NAMESPACE, field_selector="reason=GridEventStarted").items)

        def acknowledged() -> bool:
            return any(eid in (e.message or "") for e in grid_acks())

        wait_for(acknowledged, "the GridEventStarted Event")
        ack = next(e for e in grid_acks() if eid in (e.message or ""))
        assert "site hall" in ack.message
        assert ack.involved_object.kind == "Namespace"
        assert ack.involved_object.name == k8s_namespace
    finally:
        admin.close()  # type: ignore[no-untyped-call]
