"""`scoring.power_nowcast: typical-change` prices the hour being decided before the
market publishes it, through `hashpivot backtest`, a dry-run and its journal replay.

The recorded power price is 20 USD/MWh every hour but 17:00–18:00 UTC, which costs 200,
and each hour's price is published an hour late. Miners earn about 0.33 USD/h and draw
3.01 kW: they pay at 20 and lose at 200. Deciding on the last published price, they mine
through 17:00 (the 16:00 price is 20) and stay curtailed at 18:00 (the 17:00 price is
200). The nowcast adds the change seen between the same two hours on the past days: it
curtails at 17:00 and mines at 18:00. Baselines decide on the published price."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from orchestrator.runtime.journal import read_journal
from tests.e2e.test_one_decision_path import hashpivot

HOUR, DAY = 3600.0, 86_400.0
START = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
DAYS = 3
CHEAP, SPIKE, SPIKE_HOUR = 20.0, 200.0, 17
MINERS = 4


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _price(t: float) -> float:
    return SPIKE if int(t // HOUR) % 24 == SPIKE_HOUR else CHEAP


def _site(folder: Path, nowcast: str) -> Path:
    folder.mkdir()
    with (folder / "power.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["time", "usd_per_mwh"])
        for t in np.arange(START - 20 * DAY, START + (DAYS + 1) * DAY, HOUR):
            writer.writerow([_iso(t), _price(t)])
    config: dict[str, Any] = {
        "sites": [{"name": "hall"}],
        "fleet": [{"profile": "s19-xp", "count": MINERS, "site": "hall", "mode": "mine"}],
        "market": {"btc_usd": 97_000, "difficulty": 1.1e14, "fees_btc_per_block": 0.1,
                   "subsidy_btc": 3.125,
                   "power_usd_mwh": {"default": {"path": "power.csv", "time_column": "time",
                                                 "value_column": "usd_per_mwh",
                                                 "unit": "usd_per_mwh",
                                                 "observed_lag_s": 3600}}},
        "scoring": {"power_nowcast": nowcast},
        "policy": {"name": "greedy"},
        "guards": {"min_dwell_s": 0, "max_switches_per_node_per_day": 48,
                   "max_fleet_switch_share_per_hour": 1.0},
        "backtest": {"start": _iso(START), "end": _iso(START + DAYS * DAY)},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _mining_by_hour(report: Path) -> dict[str, dict[int, set[int]]]:
    """Per run, the miners mining at each hour of the day, over every day of the run."""
    seen: dict[str, dict[int, set[int]]] = {}
    with (report / "ledger.csv").open() as f:
        for row in csv.DictReader(f):
            t = datetime.fromisoformat(row["time"].replace("Z", "+00:00")).timestamp()
            hours = seen.setdefault(row["policy"], {})
            hours.setdefault(int(t // HOUR) % 24, set()).add(int(row["nodes_mine"]))
    return seen


def _backtest(folder: Path) -> dict[str, dict[int, set[int]]]:
    report = folder / "report"
    out = hashpivot("backtest", "-c", str(folder / "site.yaml"), "--no-ray",
                    "--report", str(report), cwd=folder)
    assert out.returncode == 0, out.stderr[-3000:]
    return _mining_by_hour(report)


def test_the_nowcast_curtails_into_the_spike_and_mines_after_it(tmp_path: Path) -> None:
    _site(tmp_path / "published", "last-published")
    _site(tmp_path / "nowcast", "typical-change")
    published = _backtest(tmp_path / "published")
    nowcast = _backtest(tmp_path / "nowcast")
    # On the last published price: mining through the spike, curtailed the hour after.
    for run in (published["greedy"], nowcast["naive-switching"]):
        assert run[SPIKE_HOUR] == {MINERS}
        assert run[SPIKE_HOUR + 1] == {0}
    # With the nowcast: curtailed through the spike, mining the hour after and all day.
    greedy = nowcast["greedy"]
    assert greedy[SPIKE_HOUR] == {0}
    assert all(greedy[h] == {MINERS} for h in range(24) if h != SPIKE_HOUR)


def test_a_dry_run_journals_the_nowcast_and_its_replay_decides_the_same(tmp_path: Path) -> None:
    config = _site(tmp_path / "site", "typical-change")
    journal = tmp_path / "journal"
    end = START + 20 * HOUR
    out = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray",
                    "--metrics-port", "0", "--from", _iso(START), "--to", _iso(end),
                    "--journal", str(journal), cwd=config.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    records = list(read_journal(journal))
    assert len(records) == 20
    for r in records:
        assert r.decision_inputs is not None
        nowcast = r.decision_inputs.power_nowcast_usd_mwh
        # Published an hour late: the price the cycle was given is the last hour's, and
        # the journal keeps what the hour was priced at instead.
        assert r.market is not None
        (published,) = r.market.power_usd_mwh.values()
        assert published.value == _price(r.now_s - HOUR)
        assert nowcast == [_price(r.now_s)], _iso(r.now_s)
    out = hashpivot("backtest", "-c", str(config), "--journal", str(journal),
                    cwd=config.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{len(records):,} ({100}%)" in out.stdout, out.stdout
