"""Market history beyond hashprice and the first site: every site's power price, the BTC
price and difficulty reach a policy through `hashpivot backtest` and `hashpivot run
--mode dry-run`, each value only once it was published.

Two sites price their power from recorded files: the first site's rows are published an
hour after their interval, the second site's five hours after (its own publication
column), with a spike. The probe policy (tests/e2e/policies/history_probe.py) writes what
it was shown and idles a site once its history shows a spike; the test recomputes every
value from the files and publication rules alone."""

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
from tests.e2e.test_one_decision_path import dry_run, hashpivot

HOUR = 3600.0
DATA_START = datetime(2024, 12, 30, tzinfo=UTC).timestamp()
ROWS = 5 * 24
NEAR_LAG_S, FAR_LAG_S, BTC_LAG_S, DIFFICULTY_LAG_S = HOUR, 5 * HOUR, 2 * HOUR, 3 * HOUR
PERIOD_START = datetime(2025, 1, 2, tzinfo=UTC).timestamp()
STEPS = 12
SPIKE_AT = PERIOD_START + 3 * HOUR
SPIKE_USD_MWH = 2_000.0
FEES, SUBSIDY = 0.1, 3.125
PROBE = Path(__file__).parent / "policies" / "history_probe.py"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Data:
    """The recorded series, written as CSV files, and the publication rules."""

    def __init__(self) -> None:
        self.hours = DATA_START + HOUR * np.arange(ROWS)
        k = np.arange(ROWS)
        self.near = 30.0 + (k % 7)
        self.far = np.where(self.hours == SPIKE_AT, SPIKE_USD_MWH, 40.0 + (k % 5))
        self.btc = 90_000.0 + 10.0 * k
        self.difficulty = 1.0e14 + 1.0e11 * k
        #: When each of the second site's rows is published.
        self.far_published = self.hours + FAR_LAG_S

    def write(self, root: Path) -> None:
        def table(name: str, header: list[str], rows: list[list[object]]) -> None:
            with (root / name).open("w", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(header)
                writer.writerows(rows)

        stamps = [_iso(t) for t in self.hours]
        table("near.csv", ["time", "usd_per_mwh"],
              [[s, v] for s, v in zip(stamps, self.near, strict=True)])
        table("far.csv", ["time", "usd_per_mwh", "published"],
              [[s, v, _iso(t)]
               for s, v, t in zip(stamps, self.far, self.far_published, strict=True)])
        table("btc.csv", ["time", "close"], [[s, v] for s, v in zip(stamps, self.btc, strict=True)])
        table("difficulty.csv", ["time", "difficulty"],
              [[s, v] for s, v in zip(stamps, self.difficulty, strict=True)])

    def newest(self, values: np.ndarray, lag_s: float, at_s: float) -> float | None:
        """The newest value of an hourly series whose rows are published `lag_s` after
        their hour, as known at `at_s` (None: none yet)."""
        known = np.flatnonzero(self.hours + lag_s <= at_s)
        return float(values[known[-1]]) if known.size else None


def _config(root: Path, policy: str = "history_probe.py", steps: int = STEPS,
            near_nodes: int = 2) -> Path:
    config: dict[str, Any] = {
        "sites": [{"name": "near"}, {"name": "far"}],
        "fleet": [{"profile": "s21", "count": near_nodes, "site": "near", "mode": "mine"},
                  {"profile": "s21", "count": 2, "site": "far", "mode": "mine"}],
        "market": {
            "btc_usd": {"path": "btc.csv", "value_column": "close", "unit": "usd",
                        "observed_lag_s": BTC_LAG_S},
            "difficulty": {"path": "difficulty.csv", "value_column": "difficulty",
                           "observed_lag_s": DIFFICULTY_LAG_S},
            "fees_btc_per_block": FEES,
            "subsidy_btc": SUBSIDY,
            "power_usd_mwh": {
                "near": {"path": "near.csv", "value_column": "usd_per_mwh",
                         "unit": "usd_per_mwh", "observed_lag_s": NEAR_LAG_S},
                "far": {"path": "far.csv", "value_column": "usd_per_mwh",
                        "unit": "usd_per_mwh", "observed_column": "published"},
            },
        },
        "policy": {"name": policy},
        # The stale-data guard allows prices up to 12 h old: a policy may be stricter.
        "guards": {"max_fleet_switch_share_per_hour": 1.0, "stale_after_s": 12 * HOUR},
        "backtest": {"start": _iso(PERIOD_START), "end": _iso(PERIOD_START + steps * HOUR)},
    }
    path = root / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _site(tmp_path: Path) -> tuple[Data, Path]:
    data = Data()
    data.write(tmp_path)
    shutil.copy(PROBE, tmp_path / PROBE.name)
    return data, _config(tmp_path)


def _hashprice(btc: float, difficulty: float) -> float:
    """USD per PH/s per day (design §1), from the test's own inputs."""
    return 1e15 * 86_400 * (SUBSIDY + FEES) * btc / (difficulty * 2**32)


def _check_seen(data: Data, seen_file: Path) -> list[float]:
    """Every value shown at every decision is the one the files had published by then,
    and nothing published later; returns the decision times."""
    seen = [json.loads(line) for line in seen_file.read_text().splitlines()]
    assert len(seen) == STEPS
    hidden = 0
    for s in seen:
        now = s["now"]
        # Rows: the first site's intervals published by now (an hour after each).
        want_times = data.hours[data.hours + NEAR_LAG_S <= now]
        assert s["times"] == want_times.tolist(), _iso(now)
        assert s["known_at"] == (want_times + NEAR_LAG_S).tolist()
        assert s["first_site"] == data.near[: want_times.size].tolist()
        assert s["sites"][0] == s["first_site"]
        for j, t in enumerate(want_times):
            known_at = t + NEAR_LAG_S
            btc = data.newest(data.btc, BTC_LAG_S, known_at)
            difficulty = data.newest(data.difficulty, DIFFICULTY_LAG_S, known_at)
            assert s["btc"][j] == btc, (_iso(now), _iso(t))
            assert s["difficulty"][j] == difficulty, (_iso(now), _iso(t))
            if btc is None or difficulty is None:
                assert s["hashprice"][j] is None
            else:
                assert np.isclose(s["hashprice"][j], _hashprice(btc, difficulty), rtol=1e-12)
            far_published = t + FAR_LAG_S <= now
            hidden += not far_published
            assert s["sites"][1][j] == (data.far[j] if far_published else None), (
                _iso(now), _iso(t))
    assert hidden > 0, "no second-site value was ever unpublished: the test proves nothing"
    return [s["now"] for s in seen]


def test_backtest_shows_every_column_once_published(tmp_path: Path) -> None:
    data, config = _site(tmp_path)
    out = hashpivot("backtest", "-c", str(config), "--no-baselines", "--no-ray",
                    "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    times = _check_seen(data, tmp_path / "history_seen.jsonl")
    assert times == (PERIOD_START + HOUR * np.arange(STEPS)).tolist()
    # The far site's nodes idle at the first decision after the spike was published, and
    # not before: the ledger shows the policy saw it then.
    with (tmp_path / "report" / "ledger.csv").open() as f:
        rows = list(csv.DictReader(f))
    first_seen = SPIKE_AT + FAR_LAG_S
    for row in rows:
        t = datetime.fromisoformat(row["time"].replace("Z", "+00:00")).timestamp()
        assert int(row["nodes_idle"]) == (2 if t >= first_seen else 0), row["time"]


def test_dry_run_shows_every_column_once_published(tmp_path: Path) -> None:
    data, config = _site(tmp_path)
    journal, _ = dry_run(config, tmp_path, _iso(PERIOD_START), _iso(PERIOD_START + STEPS * HOUR))
    _check_seen(data, tmp_path / "history_seen.jsonl")
    changes = [(r.now_s, c) for r in read_journal(journal) for c in r.changes]
    assert [now for now, _ in changes] == [SPIKE_AT + FAR_LAG_S] * 2
    assert all(c.target == "idle" and c.reason_code == 120 for _, c in changes)
    assert all("power spike at this site" in c.text for _, c in changes)
