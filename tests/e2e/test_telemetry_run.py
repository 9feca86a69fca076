"""Tier 2: `telemetry:` in a site file starts NVML agents under `hashpivot run` (as a
subprocess against the real test control plane). This machine has no NVIDIA driver: the
agents answer "unavailable", the controller says so, and cycles go on at nameplate watts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import FeedServer
from tests.faults.k8s_site import market_values
from tests.tier2.cluster import KwokCluster, add_gpu_nodes, delete_nodes
from tests.tier2.k8s_helpers import hp_config

pytestmark = pytest.mark.tier2


@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    name = f"tm{uuid.uuid4().hex[:6]}"
    admin = kwok_cluster.api_client()
    try:
        add_gpu_nodes(admin, name, 2)
        yield name
    finally:
        delete_nodes(admin, name)
        admin.close()  # type: ignore[no-untyped-call]


def run(tmp_path: Path, kwok_cluster: KwokCluster, namespace: str, prefix: str,
        feeds: FeedServer, *flags: str) -> subprocess.CompletedProcess[str]:
    config: dict[str, Any] = {
        "kubernetes": hp_config(namespace, prefix, miner_daemonset=None).model_dump(
            mode="json"),
        "live_market": market_values(feeds),
        # Every Ray node offers CPU: the local one gets an agent, as a GPU node would.
        "telemetry": {"enabled": True, "resource": "CPU"},
        "controller": {"mode": "shadow", "interval_s": 1.0},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    exe = Path(sys.executable).parent / "hashpivot"
    return subprocess.run(
        [str(exe), "run", "-c", str(path), "--mode", "shadow", "--cycles", "2",
         "--metrics-port", "0",
         "--journal", str(tmp_path / "journal"), "--kubeconfig", str(kwok_cluster.kubeconfig),
         *flags],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "200"})


def test_telemetry_agents_start_and_fall_back_without_nvml(
    tmp_path: Path, kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str,
    feeds: FeedServer,
) -> None:
    out = run(tmp_path, kwok_cluster, k8s_namespace, prefix, feeds)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "telemetry: 1 NVML agent(s) on Ray nodes offering 'CPU'" in log, log[-3000:]
    assert "has no NVML" in log, log[-3000:]
    assert len(list(read_journal(tmp_path / "journal"))) == 2


def test_telemetry_without_ray_says_nameplate(
    tmp_path: Path, kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str,
    feeds: FeedServer,
) -> None:
    out = run(tmp_path, kwok_cluster, k8s_namespace, prefix, feeds, "--no-ray")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "GPU power stays at nameplate values" in out.stdout + out.stderr
    assert len(list(read_journal(tmp_path / "journal"))) == 2
