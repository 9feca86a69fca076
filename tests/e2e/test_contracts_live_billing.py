"""Live demand-response events are billed: a dry-run whose watched file calls two events
books their energy payments and shortfall penalties in its ledger exactly as for
recorded ones (recomputed here from the event times, the example's YAML and the
ledger's own per-step `site_kw` column), and a journal replay of that dry-run bills the
same ledger, line for line."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.e2e.test_one_decision_path import EXAMPLES, hashpivot

# No event of the bundled calendar falls in these two days: every event is live.
START, END = "2024-08-05T00:00:00Z", "2024-08-07T00:00:00Z"
STEP_S = 3600.0
H = 3600.0
T0 = datetime.fromisoformat(START).timestamp()
# Called 20 min into a step, starting 30 min in: the decision hears of the call only at
# the next step, so the half hour before is drawn uncapped (a shortfall), with its own
# limit below the program's.
LATE = {"id": "late", "start": T0 + 10.5 * H, "end": T0 + 13 * H,
        "called": T0 + 10 * H + 1200.0, "max_draw_kw": 350.0}
# Called an hour ahead: met from its start, paid for the reduction below the baseline.
AHEAD = {"id": "ahead", "start": T0 + 20 * H, "end": T0 + 22 * H, "called": T0 + 19 * H,
         "max_draw_kw": None}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _example() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())
    return config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _hours_in_month(t: float, zone: ZoneInfo) -> float:
    local = datetime.fromtimestamp(t, zone)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return (nxt - first).total_seconds() / 3600.0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("bill")
    config = _example()
    config["sites"][0]["contract"]["live"] = {"file": "signals.json"}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    events = []
    for e in (LATE, AHEAD):
        body = {"id": e["id"], "start": _iso(e["start"]), "end": _iso(e["end"]),
                "called_at": _iso(e["called"])}
        if e["max_draw_kw"] is not None:
            body["max_draw_kw"] = e["max_draw_kw"]
        events.append(body)
    (tmp / "signals.json").write_text(json.dumps({"events": events}))
    done = hashpivot("run", "-c", str(path), "--mode", "dry-run", "--no-ray", "--from",
                     START, "--to", END, "--journal", str(tmp / "j"), cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return path, tmp


def test_live_events_are_billed_like_recorded_ones(dry_run: tuple[Path, Path]) -> None:
    """Per step: availability = committed kW × USD/kW-month ÷ hours of the local month;
    energy = USD/MWh × (baseline − draw) × hours inside the window, the baseline being the
    average draw over `baseline_h` before the call; shortfall = USD/MWh × (draw − the
    event's limit) × hours inside. A window runs from max(start, called + response)."""
    _, tmp = dry_run
    site = _example()["sites"][0]
    dr = site["contract"]["demand_response"]
    zone = ZoneInfo(site["timezone"])
    rows = _rows(tmp / "j" / "ledger.csv")
    assert len(rows) == int(48 * H / STEP_S)
    times = [datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
             for r in rows]
    kw = [float(r[f"site_kw:{site['name']}"]) for r in rows]

    def baseline(called: float) -> float:
        lo = called - dr["baseline_h"] * H
        w = [max(min(t + STEP_S, called) - max(t, lo), 0.0) for t in times]
        return sum(x * k for x, k in zip(w, kw, strict=True)) / sum(w)

    totals = {"energy": 0.0, "short": 0.0}
    for t, k, r in zip(times, kw, rows, strict=True):
        avail = dr["committed_kw"] * dr["availability_usd_per_kw_month"] / _hours_in_month(t, zone)
        energy = short = 0.0
        for e in (LATE, AHEAD):
            due = max(e["start"], e["called"] + dr["response_min"] * 60.0)
            inside_h = max(min(e["end"], t + STEP_S) - max(due, t), 0.0) / H
            limit = e["max_draw_kw"] if e["max_draw_kw"] is not None else dr["max_draw_kw"]
            energy += dr["energy_usd_mwh"] * max(baseline(e["called"]) - k, 0.0) * inside_h / 1e3
            short += dr["shortfall_usd_mwh"] * max(k - limit, 0.0) * inside_h / 1e3
        # ledger.csv writes 4 decimals, the kW read back too.
        assert float(r["dr_availability_payment_usd"]) == pytest.approx(avail, abs=2e-4)
        assert float(r["dr_energy_payment_usd"]) == pytest.approx(energy, abs=1e-3), r["time"]
        assert float(r["dr_shortfall_penalty_usd"]) == pytest.approx(short, abs=1e-2), r["time"]
        totals["energy"] += energy
        totals["short"] += short
    # Both lines are at stake: the late call's first half hour is drawn uncapped, and
    # every capped step is paid for its reduction.
    assert totals["short"] > 0 and totals["energy"] > 0, totals
    late_step = rows[times.index(T0 + 10 * H)]
    assert float(late_step["dr_shortfall_penalty_usd"]) > 0


def test_a_replay_of_the_dry_run_bills_the_same_ledger(dry_run: tuple[Path, Path]) -> None:
    path, tmp = dry_run
    out = hashpivot("backtest", "-c", str(path), "--journal", str(tmp / "j"), "--no-ray",
                    "--report", str(tmp / "replay"), cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    dry = _rows(tmp / "j" / "ledger.csv")
    assert f"{len(dry)} (100%)" in out.stdout, out.stdout
    again = _rows(tmp / "replay" / "ledger.csv")
    assert again == dry
    assert sum(float(r["dr_shortfall_penalty_usd"]) for r in again) > 0
