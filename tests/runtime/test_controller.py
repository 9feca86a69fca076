"""The controller over recorded data: journal, metrics, final modes, and a crash mid-run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.models.config import ControllerMode, load_config
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.journal import read_journal

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


def test_dry_run_in_process_journal_metrics_and_modes(tmp_path: Path) -> None:
    cfg = load_config(GOLDEN)
    options = RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(tmp_path / "j"),
                         metrics_port=0)
    controller = Controller(cfg, options)
    try:
        status = controller.run(24)
        port = status["metrics_port"]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        # Read-only: only routes a grid webhook adds take a POST.
        assert httpx.post(f"http://127.0.0.1:{port}/metrics").status_code == 405
    finally:
        controller.close()
    records = list(read_journal(tmp_path / "j"))
    assert len(records) == 24
    assert [r.now_s for r in records] == sorted(r.now_s for r in records)
    assert all(r.fleet_columns is not None for r in records)
    last = records[-1]
    planned = last.plan["modes"]
    assert sum(planned.values()) == 6
    # The metrics show the last plan's modes and a decision latency histogram.
    for mode, count in planned.items():
        assert f'hashpivot_nodes{{mode="{mode}"}} {float(count)}' in metrics
    assert "hashpivot_decision_latency_seconds_count 24.0" in metrics
    # The spike of day one (hours 14-19 UTC) idled the miners, and it is explained.
    spike = [r for r in records if r.changes and r.changes[0].target == "idle"]
    assert spike and "beats mine" in spike[0].changes[0].text
    # Switches journaled equal switches the simulated site performed: nothing twice.
    assert sum(int(r.plan["changes"]) for r in records) == status["ledger"]["switches"]


def test_a_second_run_resumes_after_the_journal_and_says_its_site_starts_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The first run's simulated site went with it: the second resumes the controller's
    # memory and says that its site starts from the config (the Ray test below resumes
    # against a site living on in its own actor, and says nothing).
    cfg = load_config(GOLDEN)
    options = RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(tmp_path))
    first = Controller(cfg, options)
    first.run(5)
    first.close()
    assert "site starts again" not in caplog.text
    second = Controller(cfg, options)
    second.run(8)
    second.close()
    times = [r.now_s for r in read_journal(tmp_path)]
    assert len(times) == 8 and len(set(times)) == 8 and times == sorted(times)
    assert "its simulated site went with the process" in caplog.text


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="hashpivot-tests")
    yield
    ray.shutdown()


@pytest.mark.ray
def test_killed_controller_actor_restarts_without_repeating(ray_local: None,
                                                          tmp_path: Path) -> None:
    import ray

    from orchestrator.runtime.controller import start_actors

    cfg = load_config(GOLDEN)
    options = RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(tmp_path), pace_s=0.2)
    actor, cluster = start_actors(cfg, options)
    first_pid = ray.get(actor.pid.remote())
    ref = actor.run.remote(40)
    deadline = time.monotonic() + 120
    while sum(1 for _ in read_journal(tmp_path)) < 10:
        assert time.monotonic() < deadline, "controller made no progress"
        time.sleep(0.2)
    ray.kill(actor, no_restart=False)  # a crash: Ray restarts the actor and retries run()
    status = ray.get(ref, timeout=300)
    assert ray.get(actor.pid.remote()) != first_pid
    records = list(read_journal(tmp_path))
    ids = [r.decision_id for r in records]
    assert len(records) == 40 and len(set(ids)) == 40
    assert [r.now_s for r in records] == sorted(r.now_s for r in records)
    applied = ray.get(cluster.applied.remote())
    assert len(applied) == len(set(applied)) <= 40
    # Every switch the site made is a switch some journaled plan asked for, once.
    totals = ray.get(cluster.totals.remote())
    planned = sum(int(r.plan["changes"]) for r in records if r.decision_id in set(applied))
    assert totals["switches"] == planned
    assert status["last_decision"] == ids[-1]


@pytest.mark.ray
def test_cli_dry_run_with_embedded_ray(tmp_path: Path) -> None:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.run(
        [exe, "run", "-c", str(GOLDEN), "--mode", "dry-run", "--cycles", "12", "--journal",
         str(tmp_path), "--metrics-port", "0"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "simulated net USD" in proc.stdout
    assert len(list(read_journal(tmp_path))) == 12
    status = subprocess.run([exe, "status", "--journal", str(tmp_path)], capture_output=True,
                            text=True, check=False)
    assert status.returncode == 0 and "nodes per mode" in status.stdout
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "cycle"
