"""`hashpivot run --ray-address` (the chart's `ray.mode: external` and `kuberay`): the
controller joins the Ray cluster but still runs in its own process, so its journal and
metrics (and the probes on them) are where it was started, not on a Ray node. A Ray head
is started for the test in another folder, as another machine would be."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.runtime.journal import read_journal

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.ray
def test_joining_a_ray_cluster_the_controller_runs_in_its_own_process(tmp_path: Path) -> None:
    head_dir, pod_dir = tmp_path / "head", tmp_path / "pod"
    head_dir.mkdir()
    pod_dir.mkdir()
    # Its own short temp dir: no other test's `ray.init()` finds this cluster.
    temp = Path("/tmp") / f"hpray-{uuid.uuid4().hex[:6]}"
    env = os.environ | {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={_free_port()}", "--num-cpus=1",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         "--block"],
        cwd=head_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        assert head.stdout is not None
        address = None
        for line in head.stdout:  # `ray start --address='IP:PORT'` names the head
            found = re.search(r"--address='([^']+)'", line)
            if found:
                address = found.group(1)
                break
        assert address, "the Ray head did not start"
        run = subprocess.run(
            [str(BIN / "hashpivot"), "run", "-c", str(GOLDEN), "--mode", "dry-run",
             "--cycles", "3", "--journal", "journal", "--metrics-port", "0",
             "--ray-address", address],
            cwd=pod_dir, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        # The journal is the controller's, beside it; none was written on the Ray node.
        assert len(list(read_journal(pod_dir / "journal"))) == 3
        assert not (head_dir / "journal").exists()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
