"""Tier 2: a mixed hall — GPU nodes on the real test control plane and emulated miners on
loopback — under one power cap, run by `hashpivot run` as a subprocess.

AI tenants wait for whole GPU nodes; serving them needs power the miners are using, so
the miners give way (curtailed through their firmware, within the ramp limits) while the
GPU nodes wait for that power and then go to AI, and the tenants run. Site power,
sampled from outside the controller (each miner's state at its emulator, each node's
mode label at the apiserver, priced at full-load watts), never exceeds the cap. Shadow on
the same site sends no command to any miner and leaves every node as it was.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from orchestrator.adapters.asic.service import POWER_WAIT
from orchestrator.adapters.k8s.objects import MINING_TAINT_EFFECT, MINING_TAINT_KEY, MODE_LABEL
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import FeedServer
from tests.contract.fixtures.miners.emulator import EmulatedMiner, MinerLab
from tests.e2e.test_asic_site import (
    CALM_USD_MWH,
    FAMILIES,
    Controller,
    is_command,
    set_power,
)
from tests.faults.k8s_site import market_values
from tests.tier2.cluster import KwokCluster, add_gpu_nodes, delete_nodes
from tests.tier2.k8s_helpers import gpu_pod, hp_config, node_facts, pods_by_node, wait_for

pytestmark = pytest.mark.tier2

GPU_NODES = 4
TENANTS = 2
#: Full-load draw of what the emulated miners report (S19 XP, stock), W.
MINER_W = 3010.0
#: Idle GPU nodes and every miner fit; once the GPU nodes the tenants (and the demand
#: level's headroom) call for go to AI, not every miner does.
CAP_KW = 28.0


@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    name = f"mx{uuid.uuid4().hex[:6]}"
    admin = kwok_cluster.api_client()
    try:
        # Idle and tainted, as hashpivot leaves a node it idled: tenants wait for it.
        taint = client.V1Taint(key=MINING_TAINT_KEY, value="true", effect=MINING_TAINT_EFFECT)
        add_gpu_nodes(admin, name, GPU_NODES, labels={MODE_LABEL: "idle"}, taints=[taint])
        yield name
    finally:
        delete_nodes(admin, name)
        admin.close()  # type: ignore[no-untyped-call]


def mixed_config(tmp_path: Path, namespace: str, prefix: str, miners: list[EmulatedMiner],
                 feeds: FeedServer, mode: str) -> Path:
    market = market_values(feeds)
    market["power_sources"] = {"default": {"kind": "http_json", "url": f"{feeds.base}/power",
                                           "value_path": "price"}}
    market.pop("power_usd_mwh_fixed", None)
    config: dict[str, Any] = {
        "sites": [{"name": "hall", "power_cap_kw": CAP_KW}],
        "kubernetes": hp_config(namespace, prefix, miner_daemonset=None).model_dump(
            mode="json"),
        "asic": {
            "ranges": [{"addresses": [m.ip for m in miners], "site": "hall"}],
            "io": {"timeout_s": 2.0, "retries": 1, "read_timeout_s": 20},
            "ramp": {"max_miners_per_window": 1, "window_s": 1, "step_s": 0.25},
            "use_ray": False,
        },
        "live_market": market,
        "policy": {"name": "greedy"},
        "guards": {"min_dwell_s": 0, "max_fleet_switch_share_per_hour": 1.0,
                   "max_switches_per_node_per_day": 24},
        "controller": {"mode": mode, "interval_s": 1.0},
    }
    path = tmp_path / f"mixed-{mode}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class PowerSampler:
    """Site power as an outside meter would add it up: miners by what their emulators are
    doing, GPU nodes by their mode label at full-load draw."""

    def __init__(self, core: client.CoreV1Api, prefix: str, miners: list[EmulatedMiner],
                 config: Path) -> None:
        self.core, self.prefix, self.miners = core, prefix, miners
        catalog = profile_catalog(HashpivotConfig.model_validate(
            yaml.safe_load(config.read_text())))
        h100 = catalog["h100-sxm-8x"]
        self.node_w = {"ai": h100.watts_ai, "mine": h100.watts_mine, "idle": h100.watts_idle,
                       None: h100.watts_idle}
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        nodes = sum(self.node_w.get(f["mode"], max(self.node_w.values()))
                    for f in node_facts(self.core, self.prefix).values())
        miners = sum(MINER_W if m.mining else 0.0 for m in self.miners)
        return (nodes + miners) / 1000.0

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.sample())
            self.stop.wait(0.1)

    def __enter__(self) -> PowerSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_mixed_site_miners_give_way_to_ai_under_one_cap(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, tmp_path: Path,
    lab: MinerLab, feeds: FeedServer,
) -> None:
    miners = [lab.add(f) for f in (*FAMILIES, "antminer")]
    set_power(feeds, CALM_USD_MWH)
    admin = kwok_cluster.api_client()
    core = client.CoreV1Api(admin)
    config = mixed_config(tmp_path, k8s_namespace, prefix, miners, feeds, "live")
    try:
        for i in range(TENANTS):
            core.create_namespaced_pod(k8s_namespace, gpu_pod(f"job-{i}", prefix))
        with PowerSampler(core, prefix, miners, config) as meter:
            run = Controller(config, tmp_path / "journal", "live", tmp_path,
                             kubeconfig=str(kwok_cluster.kubeconfig))
            try:
                def served() -> bool:
                    running = pods_by_node(core, k8s_namespace, "app=gpu-job")
                    return sum(len(p) for p in running.values()) == TENANTS

                wait_for(served, "both tenants to run on nodes flipped to AI")
                run.wait_cycles(3)
            finally:
                run.stop()
        facts = node_facts(core, prefix)
        placed = pods_by_node(core, k8s_namespace, "app=gpu-job")
        assert set(placed) <= {n for n, f in facts.items() if f["mode"] == "ai"}
        asleep = [m for m in miners if not m.mining]
        assert 1 <= len(asleep) < len(miners), [m.mining for m in miners]
        assert meter.samples and max(meter.samples) <= CAP_KW + 1e-9, max(meter.samples)
        # One fleet table: the journal's fleet holds the nodes and the miners together.
        records = [r for r in read_journal(tmp_path / "journal") if r.fleet_columns]
        names = set(records[-1].fleet_columns.names)
        assert {m.ip for m in miners} <= names and set(facts) <= names
        # docs/asic.md: a GPU node's switch that adds power waits, journaled as such,
        # while the miners curtailed for it ramp down; the node then goes to AI.
        waited = {node for r in records for node, why in r.actuation.get("deferred", {}).items()
                  if why == POWER_WAIT}
        assert waited and waited <= set(facts), waited
        assert waited & {n for n, f in facts.items() if f["mode"] == "ai"}
    finally:
        admin.close()  # type: ignore[no-untyped-call]


def test_mixed_site_shadow_commands_no_miner_and_labels_no_node(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, tmp_path: Path,
    lab: MinerLab, feeds: FeedServer,
) -> None:
    miners = [lab.add(f) for f in (*FAMILIES, "antminer")]
    set_power(feeds, CALM_USD_MWH)
    admin = kwok_cluster.api_client()
    core = client.CoreV1Api(admin)
    config = mixed_config(tmp_path, k8s_namespace, prefix, miners, feeds, "shadow")
    try:
        for i in range(TENANTS):
            core.create_namespaced_pod(k8s_namespace, gpu_pod(f"job-{i}", prefix))
        before = node_facts(core, prefix)
        run = Controller(config, tmp_path / "journal", "shadow", tmp_path,
                         kubeconfig=str(kwok_cluster.kubeconfig))
        try:
            run.wait_cycles(5)
        finally:
            run.stop()
        assert node_facts(core, prefix) == before  # nothing written to any node
        assert not pods_by_node(core, k8s_namespace, "app=gpu-job")
        commands = {m.ip: [s for s in m.seen if is_command(s)] for m in miners}
        assert all(not c for c in commands.values()), commands
        assert all(m.mining for m in miners) and all(m.seen for m in miners)
        records = list(read_journal(tmp_path / "journal"))
        planned = {c.node for r in records for c in r.changes}
        assert planned & {m.ip for m in miners}, "shadow plans the miners' curtailment"
    finally:
        admin.close()  # type: ignore[no-untyped-call]
