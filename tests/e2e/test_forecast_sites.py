"""The forecasting built-ins plan each site on its own prices: with the second site's
prices published a day ahead and six hours of spike there, `hashpivot backtest -p
lookahead` (and receding-horizon) stops that site's miners in the spike, and the first
site's miners mine throughout (a forecast from the first site's prices alone would never
stop them)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_history_columns import HOUR, SPIKE_AT, Data, _config
from tests.e2e.test_one_decision_path import hashpivot

STEPS = 16
NEAR_NODES, FAR_NODES = 3, 2
SPIKE_HOURS = 6


@pytest.mark.parametrize("policy", ["lookahead", "receding-horizon"])
def test_each_site_is_planned_on_its_own_prices(tmp_path: Path, policy: str) -> None:
    data = Data()
    data.far_published = data.hours - 24 * HOUR  # a day-ahead market
    spike = (data.hours >= SPIKE_AT) & (data.hours < SPIKE_AT + SPIKE_HOURS * HOUR)
    data.far = np.where(spike, data.far.max(), data.far)
    data.write(tmp_path)
    config = _config(tmp_path, "greedy", STEPS, near_nodes=NEAR_NODES)
    out = hashpivot("backtest", "-c", str(config), "-p", policy, "--no-baselines",
                    "--no-ray", "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    with (tmp_path / "report" / "ledger.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["policy"] == policy]
    assert len(rows) == STEPS
    idle = {datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp():
            int(r["nodes_idle"]) for r in rows}
    # Only the far site's miners ever stop, in the middle of its spike at the latest.
    assert set(idle.values()) == {0, FAR_NODES}, idle
    assert idle[SPIKE_AT + SPIKE_HOURS / 2 * HOUR] == FAR_NODES
    if policy == "lookahead":  # moves only when the move is better in the coming hour
        assert idle[SPIKE_AT - 3 * HOUR] == 0
