"""When each market value was observed reaches a policy (`ctx.observed_s`), through
`hashpivot backtest` and `hashpivot run --mode dry-run`: the same recorded two-site market
as the history test, with the second site's feed silent for six hours. The probe policy
(tests/e2e/policies/age_probe.py) idles a site whose power price is older than 3.5 h; the
test recomputes every observation time from the files and publication rules alone."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np

from orchestrator.runtime.journal import read_journal
from tests.e2e.test_history_columns import (
    BTC_LAG_S,
    DIFFICULTY_LAG_S,
    HOUR,
    NEAR_LAG_S,
    PERIOD_START,
    Data,
    _config,
    _iso,
)
from tests.e2e.test_one_decision_path import dry_run, hashpivot

STEPS = 14
PROBE = Path(__file__).parent / "policies" / "age_probe.py"
MAX_AGE_S = 3.5 * 3600.0
# The second site's rows for 02:00–06:00 are published together at 12:00.
HELD_FROM, HELD_TO, RELEASED = (PERIOD_START + 2 * HOUR, PERIOD_START + 6 * HOUR,
                                PERIOD_START + 12 * HOUR)


def _site(tmp_path: Path) -> tuple[Data, Path]:
    data = Data()
    held = (data.hours >= HELD_FROM) & (data.hours <= HELD_TO)
    data.far_published = np.where(held, RELEASED, data.far_published)
    data.write(tmp_path)
    shutil.copy(PROBE, tmp_path / PROBE.name)
    return data, _config(tmp_path, PROBE.name, STEPS)


def _observed(hours: np.ndarray, published: np.ndarray, now: float) -> float:
    """When the value a decision at `now` uses was published: the row in force at `now`
    if already published, else the newest published row."""
    known = np.flatnonzero(published <= now)[-1]
    in_force = np.flatnonzero(hours <= now)[-1]
    return float(published[min(known, in_force)])


def _expected(data: Data, now: float) -> dict[str, object]:
    btc = _observed(data.hours, data.hours + BTC_LAG_S, now)
    difficulty = _observed(data.hours, data.hours + DIFFICULTY_LAG_S, now)
    # Fees and subsidy are configured constants: observed at the decision's time.
    return {"now": now, "btc": btc, "difficulty": difficulty, "fees": now, "subsidy": now,
            "units": [min(btc, difficulty, now)], "gpus": [],
            "power": [_observed(data.hours, data.hours + NEAR_LAG_S, now),
                      _observed(data.hours, data.far_published, now)]}


def _idle_steps(data: Data) -> list[float]:
    """Decisions at which the second site's price is older than the limit."""
    times = PERIOD_START + HOUR * np.arange(STEPS)
    return [float(t) for t in times
            if t - _observed(data.hours, data.far_published, t) > MAX_AGE_S]


def _check_seen(data: Data, path: Path) -> None:
    seen = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["now"] for s in seen] == (PERIOD_START + HOUR * np.arange(STEPS)).tolist()
    for s in seen:
        assert s == _expected(data, s["now"]), _iso(s["now"])


def test_backtest_gives_each_values_observation_time(tmp_path: Path) -> None:
    data, config = _site(tmp_path)
    out = hashpivot("backtest", "-c", str(config), "--no-baselines", "--no-ray",
                    "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _check_seen(data, tmp_path / "observed_seen.jsonl")
    idle = _idle_steps(data)
    assert idle, "the second site's price is never old: the test proves nothing"
    with (tmp_path / "report" / "ledger.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == STEPS
    for row in rows:
        t = datetime.fromisoformat(row["time"].replace("Z", "+00:00")).timestamp()
        assert int(row["nodes_idle"]) == (2 if t in idle else 0), row["time"]


def test_dry_run_gives_each_values_observation_time(tmp_path: Path) -> None:
    data, config = _site(tmp_path)
    journal, _ = dry_run(config, tmp_path, _iso(PERIOD_START), _iso(PERIOD_START + STEPS * HOUR))
    _check_seen(data, tmp_path / "observed_seen.jsonl")
    idle = _idle_steps(data)
    changes = [(r.now_s, c) for r in read_journal(journal) for c in r.changes]
    # Idled when the price grew too old, mining again at the first fresh one.
    assert [(now, c.target, c.reason_code) for now, c in changes] == (
        [(idle[0], "idle", 121)] * 2 + [(idle[-1] + HOUR, "mine", 122)] * 2)
    assert all("too old to act on" in c.text for _, c in changes[:2])
