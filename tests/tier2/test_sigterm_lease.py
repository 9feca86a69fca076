"""Tier 2: `hashpivot run --mode live` (the installed script) against the real API server
takes the leader Lease, and on SIGTERM (a pod being stopped) hands it over and exits 0
without a traceback, so a standby takes over at once instead of after the Lease expires."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.contract.feedserver import FeedServer

from .cluster import KwokCluster
from .k8s_helpers import gpu_node_prefix
from .test_runtime_k8s import site_config

pytestmark = pytest.mark.tier2



@pytest.fixture
def prefix(kwok_cluster: KwokCluster) -> Iterator[str]:
    with gpu_node_prefix(kwok_cluster, "st", 2) as name:
        yield name


def holder(coord: client.CoordinationV1Api, namespace: str, name: str) -> str | None:
    try:
        lease = coord.read_namespaced_lease(name, namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity if lease.spec is not None else None


@pytest.mark.parametrize("ray", [False, pytest.param(True, marks=pytest.mark.ray)],
                         ids=["in-process", "ray-actor"])
def test_sigterm_hands_the_lease_over_and_exits_quietly(
    kwok_cluster: KwokCluster, k8s_namespace: str, prefix: str, feeds: FeedServer,
    tmp_path: Path, ray: bool,
) -> None:
    config = site_config(k8s_namespace, prefix, feeds, "live")
    config_file = tmp_path / "site.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.Popen(
        [exe, "run", "-c", str(config_file), "--mode", "live", "--kubeconfig",
         str(kwok_cluster.kubeconfig), "--journal", str(tmp_path / "journal"),
         "--metrics-port", "0", "--ray" if ray else "--no-ray"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    admin = kwok_cluster.api_client()
    coord = client.CoordinationV1Api(admin)
    lease = config.kubernetes.lease_name
    try:
        while not holder(coord, k8s_namespace, lease):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        leader = holder(coord, k8s_namespace, lease)
        time.sleep(2)  # a cycle or two under way: stopping must wait for a whole one
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in out + err
        assert "stopping (SIGTERM)" in err
        # Handed over: no holder, where before it was this process.
        assert leader and not holder(coord, k8s_namespace, lease)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        admin.close()  # type: ignore[no-untyped-call]
