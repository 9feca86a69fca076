"""The report's risk figures against sums worked out by hand, and the report itself
through `hashpivot backtest`: per-step CSV, per-month net, guard interventions,
switches per node, modes for every policy."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from orchestrator.backtest.analysis import analyse, max_drawdown

SITE = str(Path(__file__).parents[2] / "examples" / "west-texas" / "site.yaml")
HASHPIVOT = str(Path(sys.executable).parent / "hashpivot")


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def test_drawdown_is_the_largest_fall_from_a_peak() -> None:
    # Cumulative 0, 5, 2, -2, 8, 6: the fall from 5 to -2 is the largest.
    assert max_drawdown(np.array([5.0, -3.0, -4.0, 10.0, -2.0])) == 7.0
    assert max_drawdown(np.array([-1.0, -1.0])) == 2.0  # from the start
    assert max_drawdown(np.array([1.0, 2.0])) == 0.0


def test_months_days_spikes_and_idle_hours() -> None:
    times = np.array([_t("2024-01-31T22:00:00"), _t("2024-01-31T23:00:00"),
                      _t("2024-02-01T00:00:00"), _t("2024-02-01T01:00:00")])
    net = np.array([10.0, -30.0, 5.0, 1.0])
    power_cost = np.array([1.0, 40.0, 2.0, 3.0])
    modes = np.array([[2, 8, 0], [10, 0, 0], [0, 10, 0], [1, 9, 0]])
    price = np.array([30.0, 900.0, 35.0, 40.0])
    a = analyse(times, net, power_cost, modes, price, 3600.0)
    assert a.net_by_month == {"2024-01": -20.0, "2024-02": 6.0}
    assert (a.worst_day, a.worst_day_usd) == ("2024-01-31", -20.0)
    # The 99th percentile of four prices lies between 40 and 900: only 900 is a spike.
    assert a.spike_steps == 1
    assert a.spike_power_cost_usd == 40.0 and a.spike_net_usd == -30.0
    assert a.idle_node_hours == 13.0


@pytest.mark.slow
def test_backtest_report_shows_risk_months_holds_and_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [HASHPIVOT, "backtest", "-c", SITE, "--from", "2023-07-30T00:00:00Z",
         "--to", "2023-08-02T00:00:00Z", "--no-ray", "--report", str(tmp_path),
         "-p", "greedy", "-p", "hysteresis"],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    with (tmp_path / "ledger.csv").open() as f:
        rows = list(csv.DictReader(f))
    for name, entry in summary["policies"].items():
        mine = [r for r in rows if r["policy"] == name]
        assert len(mine) == summary["period"]["steps"] == 72
        total = sum(float(r["net_usd"]) for r in mine)
        assert total == pytest.approx(entry["net_usd"], abs=0.01 * len(mine))
        by_month: dict[str, float] = {}
        for r in mine:
            by_month[r["time"][:7]] = by_month.get(r["time"][:7], 0.0) + float(r["net_usd"])
        for month, usd in entry["analysis"]["net_by_month_usd"].items():
            assert usd == pytest.approx(by_month[month], abs=0.01 * len(mine))
        switches = sum(int(r["switches"]) for r in mine)
        assert switches == entry["switches"]
        nodes = {int(r["nodes_idle"]) + int(r["nodes_mine"]) + int(r["nodes_ai"]) for r in mine}
        assert nodes == {1024}
    assert summary["policies"]["greedy"]["guard_holds"]  # the 3.2 MW cap binds here
    page = (tmp_path / "report.html").read_text()
    assert "Net USD per month" in page and "guard interventions" in page
    assert (tmp_path / "switches_per_node.png").is_file()
    assert (tmp_path / "modes_over_time_2.png").is_file()  # the second policy's modes
