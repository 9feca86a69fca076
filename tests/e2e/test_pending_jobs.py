"""The waiting jobs one by one (`ctx.demand.jobs`) reach a policy through `hashpivot
backtest` and `hashpivot run --mode dry-run`, filled from the recorded job trace.

The trace is four 8-GPU, 2-hour jobs an hour apart, scaled to the site's 16 GPUs at a load
factor of one (so it repeats every four hours, unstretched). Both GPU nodes mine until
the probe policy (tests/e2e/policies/job_probe.py) sees a job that has waited 2.5 h; the
test recomputes every job it was shown from the trace alone."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from orchestrator.runtime.journal import read_journal
from tests.e2e.test_one_decision_path import hashpivot

HOUR = 3600.0
START = datetime(2025, 1, 2, tzinfo=UTC).timestamp()
STEPS = 8
GPUS, DURATION_S, MAX_WAIT_H, OFFERED, PATIENCE_H = 8.0, 7200.0, 6.0, 3.5, 2.5
INTERRUPTIBLE = [0, 1, 0, 1]
PROBE = Path(__file__).parent / "policies" / "job_probe.py"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _site(tmp_path: Path) -> Path:
    with (tmp_path / "jobs.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["submit_offset_s", "gpus", "duration_s", "interruptible"])
        for k, flag in enumerate(INTERRUPTIBLE):
            writer.writerow([int(k * HOUR), int(GPUS), int(DURATION_S), flag])
    shutil.copy(PROBE, tmp_path / PROBE.name)
    config: dict[str, Any] = {
        "sites": [{"name": "hall"}],
        "fleet": [{"profile": "h100-sxm-8x", "count": 2, "site": "hall", "mode": "mine"}],
        "market": {"btc_usd": 97_000, "difficulty": 1.1e14, "fees_btc_per_block": 0.1,
                   "subsidy_btc": 3.125, "power_usd_mwh": {"default": 30.0},
                   "gpu_usd_per_gpu_hour": {"H100_80GB_SXM5": 2.0},
                   "hashpower_btc_per_unit_day": {"gpu-hashpower": 0.00001}},
        "demand": {"path": "jobs.csv", "gpu_model": "H100_80GB_SXM5", "load_factor": 1.0,
                   "max_wait_h": MAX_WAIT_H, "offered_usd_per_gpu_hour": OFFERED},
        "policy": {"name": PROBE.name, "params": {"patience_h": PATIENCE_H}},
        "guards": {"max_fleet_switch_share_per_hour": 1.0},
        "backtest": {"start": _iso(START), "end": _iso(START + STEPS * HOUR)},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _trace() -> tuple[np.ndarray, np.ndarray]:
    """Submit times and interruptible flags of the repeated trace (one job an hour)."""
    submits = START + HOUR * np.arange(STEPS + 4)
    return submits, np.resize(np.array(INTERRUPTIBLE, dtype=bool), submits.shape)


def _waiting(now: float) -> dict[str, Any]:
    """The queue while nothing has been served: jobs submitted before `now` that have not
    waited past the limit, oldest first."""
    submits, flags = _trace()
    keep = (submits < now) & (now - submits <= MAX_WAIT_H * HOUR)
    s = submits[keep]
    return {"now": now, "gpus": [GPUS] * s.size, "gpu_model": [0] * s.size,
            "offered": [OFFERED] * s.size, "duration_h": [DURATION_S / HOUR] * s.size,
            "submitted": s.tolist(), "deadline": (s + MAX_WAIT_H * HOUR).tolist(),
            "interruptible": flags[keep].tolist(), "waited": (now - s).tolist()}


def _first_impatient() -> float:
    for k in range(STEPS):
        now = START + k * HOUR
        if max(_waiting(now)["waited"], default=0.0) >= PATIENCE_H * HOUR:
            return now
    raise AssertionError("no job ever waits long enough: the test proves nothing")


def _check_seen(path: Path) -> None:
    seen = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["now"] for s in seen] == (START + HOUR * np.arange(STEPS)).tolist()
    switch = _first_impatient()
    submits, _ = _trace()
    for s in seen:
        if s["now"] <= switch:  # nothing served yet: exactly the queue from the trace
            assert s == _waiting(s["now"]), _iso(s["now"])
        else:  # serving has begun: still trace jobs, with their deadlines and waits
            assert set(s["submitted"]) <= set(submits.tolist())
            assert s["deadline"] == [t + MAX_WAIT_H * HOUR for t in s["submitted"]]
            assert s["waited"] == [s["now"] - t for t in s["submitted"]]
            assert all(0 < d <= DURATION_S / HOUR for d in s["duration_h"])


def test_backtest_shows_the_waiting_jobs(tmp_path: Path) -> None:
    config = _site(tmp_path)
    out = hashpivot("backtest", "-c", str(config), "--no-baselines", "--no-ray",
                    "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _check_seen(tmp_path / "jobs_seen.jsonl")
    switch = _first_impatient()
    with (tmp_path / "report" / "ledger.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == STEPS
    for row in rows:
        t = datetime.fromisoformat(row["time"].replace("Z", "+00:00")).timestamp()
        assert int(row["nodes_ai"]) == (2 if t >= switch else 0), row["time"]


def test_dry_run_shows_the_waiting_jobs(tmp_path: Path) -> None:
    config = _site(tmp_path)
    journal = tmp_path / "journal"
    out = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray",
                    "--metrics-port", "0", "--from", _iso(START),
                    "--to", _iso(START + STEPS * HOUR), "--journal", str(journal),
                    cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _check_seen(tmp_path / "jobs_seen.jsonl")
    changes = [(r.now_s, c) for r in read_journal(journal) for c in r.changes]
    assert [(now, c.target, c.reason_code) for now, c in changes] == (
        [(_first_impatient(), "ai", 130)] * 2)
    # The journal keeps the jobs: a replay decides every cycle the same way.
    replay = hashpivot("backtest", "-c", str(config), "--journal", str(journal), "--no-ray",
                       cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert f"{STEPS} (100%)" in replay.stdout, replay.stdout[-2000:]
    jobs = [j for r in read_journal(journal) for j in r.demand.pending]
    assert jobs and all(j.deadline_at is not None and j.submitted_at is not None
                        and (j.deadline_at - j.submitted_at).total_seconds() == MAX_WAIT_H * HOUR
                        for j in jobs)


def test_policies_check_shows_a_policy_waiting_jobs(tmp_path: Path) -> None:
    """`hashpivot policies check` gives a policy job lists like a real queue's: every GPU
    model and 'any', unknown submission times, deadlines, and totals that match."""
    shutil.copy(PROBE, tmp_path / PROBE.name)
    out = hashpivot("policies", "check", PROBE.name, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    seen = [json.loads(line) for line in (tmp_path / "jobs_seen.jsonl").read_text().splitlines()]
    listed = [s for s in seen if s["gpus"]]
    assert listed and len(listed) < len(seen)  # queues come and go
    models = {m for s in listed for m in s["gpu_model"]}
    assert -1 in models and any(m >= 0 for m in models)
    assert any(t is None for s in listed for t in s["submitted"])
    assert any(d is not None for s in listed for d in s["deadline"])
    for s in listed:
        assert all(0 < g <= 8 for g in s["gpus"])
        assert all(w is None or w >= 0 for w in s["waited"])
