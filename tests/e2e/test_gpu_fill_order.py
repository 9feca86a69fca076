"""A job that takes any GPU model runs on the GPU that nets the site the most, whichever
order the fleet is written in the config (`hashpivot backtest`).

The site has one H100 node and one H200 node, both in AI, priced at 2.0 and 3.0 USD per
GPU-hour. The trace is one 8-GPU, one-hour job an hour: one node's worth of work, so the
other node stays empty. Every job served must be paid at the H200's rate with the H100
written first in the fleet or last, and every policy's run is the same either way."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_one_decision_path import hashpivot

HOUR = 3600.0
START = datetime(2025, 1, 2, tzinfo=UTC).timestamp()
STEPS = 12
JOB_GPUS, JOB_S = 8, 3600
PRICES = {"H100_80GB_SXM5": 2.0, "H200_141GB": 3.0}
PLATFORM_FEE = 0.1
H100 = {"profile": "h100-sxm-8x", "count": 1, "site": "hall", "mode": "ai"}
H200 = {"profile": "h200-sxm-8x", "count": 1, "site": "hall", "mode": "ai"}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _site(folder: Path, fleet: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    with (folder / "jobs.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["submit_offset_s", "gpus", "duration_s", "interruptible"])
        for k in range(STEPS + 2):
            writer.writerow([int(k * HOUR), JOB_GPUS, JOB_S, 0])
    config: dict[str, Any] = {
        "sites": [{"name": "hall", "ai_platform_fee": PLATFORM_FEE}],
        "fleet": fleet,
        "market": {"btc_usd": 97_000, "difficulty": 1.1e14, "fees_btc_per_block": 0.1,
                   "subsidy_btc": 3.125, "power_usd_mwh": {"default": 30.0},
                   "gpu_usd_per_gpu_hour": PRICES,
                   "hashpower_btc_per_unit_day": {"gpu-hashpower": 0.00001}},
        # Half the site's 16 GPUs: the trace as written, one job an hour.
        "demand": {"path": "jobs.csv", "load_factor": 0.5, "max_wait_h": 6.0},
        "policy": {"name": "greedy"},
        "guards": {"max_fleet_switch_share_per_hour": 1.0},
        "backtest": {"start": _iso(START), "end": _iso(START + STEPS * HOUR)},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _backtest(folder: Path, fleet: list[dict[str, Any]]) -> dict[str, Any]:
    config = _site(folder, fleet)
    report = folder / "report"
    out = hashpivot("backtest", "-c", str(config), "-p", "greedy", "-p", "lookahead",
                    "-p", "hysteresis", "--no-ray", "--report", str(report), cwd=folder)
    assert out.returncode == 0, out.stderr[-3000:]
    policies: dict[str, Any] = json.loads((report / "summary.json").read_text())["policies"]
    return policies


def test_any_model_jobs_run_on_the_best_paid_gpu_whatever_the_fleet_order(
    tmp_path: Path,
) -> None:
    h100_first = _backtest(tmp_path / "h100-first", [H100, H200])
    h200_first = _backtest(tmp_path / "h200-first", [H200, H100])
    # With both nodes in AI all along, a job starts at a step's start and ends with it,
    # so each pays for its whole length on the H200.
    per_job_h200 = JOB_GPUS * JOB_S / HOUR * PRICES["H200_141GB"] * (1 - PLATFORM_FEE)
    for run in (h100_first, h200_first):
        row = run["always-ai-else-idle"]
        assert row["jobs_served"] >= STEPS - 2  # the test is about served work
        assert row["ai_revenue_usd"] == pytest.approx(row["jobs_served"] * per_job_h200,
                                                      rel=1e-9)
    # A policy sees the same site either way: it values the H200 as the node the next
    # job lands on, and the simulated cluster puts it there.
    for name in ("greedy", "lookahead", "hysteresis"):
        for key in ("net_usd", "ai_revenue_usd", "mine_revenue_usd", "switches"):
            assert h100_first[name][key] == pytest.approx(h200_first[name][key],
                                                          rel=1e-9), (name, key)
