"""A demand-response event on a hall of miners, run as an operator runs it: `hashpivot
run` (live) against emulated miners on loopback answered by unmodified pyasic, the event
arriving through the contract's watched file.

- the ramp allows: the program's `lead_min` starts the shed early enough that the
  miners, curtailed no faster than the ramp's limit per window, bring the draw to the
  committed level before the event is due; the journal names the program and the event;
- the ramp cannot: an event due a second after it is heard is met as fast as the ramp
  allows and no faster, so the draw reaches the level after the due time.

The draw is read off the emulators: each miner's mining/asleep changes as the firmware
saw them, with the S19 XP nameplate draw per mining miner.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import FeedServer
from tests.contract.fixtures.miners.emulator import EmulatedMiner, MinerLab
from tests.contract.test_asic_pyasic import _can_bind_port_80
from tests.e2e.test_asic_site import FAMILIES, Controller, live_market_config

pytestmark = pytest.mark.skipif(
    not _can_bind_port_80(),
    reason="needs loopback addresses beyond 127.0.0.1 and port 80 (root on Linux)",
)

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "hall demand response"
LIMIT_KW = 6.5  # six miners of ~3 kW: at most two may mine
# The shed starts LEAD_MIN before the event is due and needs two ramp windows plus a
# cycle or two; the lead leaves room for the slow cycles of a loaded machine.
RESPONSE_MIN = 0.75
LEAD_MIN = 0.5
WINDOW_S = 2.0
PER_WINDOW = 2
# Receipt times at the emulators carry the network's jitter: a window this much shorter
# than the ramp's must never hold more than its allowance.
JITTER_S = 0.5


def _nameplate_w() -> float:
    """The S19 XP's draw while mining, W, from the bundled hardware catalog."""
    with (ROOT / "orchestrator" / "data" / "hardware" / "asic_models.csv").open() as f:
        row = next(r for r in csv.reader(f) if r and r[0] == "s19-xp")
    return float(row[4])


class _Timed(EmulatedMiner):
    """An emulated miner that notes when the firmware starts or stops mining."""

    changes: list[tuple[float, bool]]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "mining" and getattr(self, "mining", value) != value:
            self.changes.append((time.time(), bool(value)))
        super().__setattr__(name, value)


def _timed(miner: EmulatedMiner) -> EmulatedMiner:
    object.__setattr__(miner, "changes", [])
    miner.__class__ = _Timed
    return miner


def _config(tmp_path: Path, miners: list[EmulatedMiner], feeds: FeedServer) -> Path:
    (tmp_path / "calendar.csv").write_text("start,end\n")  # every event comes live
    config: dict[str, Any] = {
        "sites": [{"name": "hall", "pool_fee": 0.02, "contract": {
            "demand_response": {
                "program": PROGRAM, "max_draw_kw": LIMIT_KW, "committed_kw": 12.0,
                "response_min": RESPONSE_MIN, "lead_min": LEAD_MIN,
                "events": {"path": "calendar.csv"}},
            "live": {"file": "signals.json"}}}],
        "asic": {
            "ranges": [{"addresses": [m.ip for m in miners], "site": "hall"}],
            "io": {"timeout_s": 2.0, "retries": 1, "read_timeout_s": 20},
            "ramp": {"max_miners_per_window": PER_WINDOW, "window_s": WINDOW_S,
                     "step_s": 0.5},
            "verify_after_s": 30,
            "use_ray": False,
        },
        "live_market": live_market_config(feeds),
        "policy": {"name": "greedy"},
        "guards": {"min_dwell_s": 0, "max_fleet_switch_share_per_hour": 10.0,
                   "max_switches_per_node_per_day": 24},
        "controller": {"mode": "live", "interval_s": 1.0},
    }
    path = tmp_path / "hall.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _signal(path: Path, eid: str | None, called: float, start: float, end: float) -> None:
    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat()

    events = [] if eid is None else [{"id": eid, "start": iso(start), "end": iso(end),
                                      "called_at": iso(called)}]
    path.write_text(json.dumps({"site": "hall", "events": events}))


def _curtailments(miners: list[EmulatedMiner], after: float) -> list[float]:
    return sorted(t for m in miners for t, mining in m.changes  # type: ignore[attr-defined]
                  if not mining and t >= after)


def _level_reached(miners: list[EmulatedMiner], after: float, watts: float) -> float:
    """When the draw the emulators saw first fell to the limit after `after`."""
    moments = sorted({t for m in miners for t, _ in m.changes  # type: ignore[attr-defined]
                      if t >= after})
    for t in moments:
        mining = 0
        for m in miners:
            state = True  # every miner mines before its first change
            for when, value in m.changes:  # type: ignore[attr-defined]
                if when <= t:
                    state = value
            mining += state
        if mining * watts <= LIMIT_KW * 1000.0:
            return t
    raise AssertionError("the draw never reached the limit")


def _assert_ramp(times: list[float]) -> None:
    """No window (less the jitter) held more curtailments than the ramp allows."""
    for i in range(len(times) - PER_WINDOW):
        assert times[i + PER_WINDOW] - times[i] >= WINDOW_S - JITTER_S, times


def test_event_on_a_miners_only_hall_sheds_at_the_ramps_pace(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    miners = [_timed(lab.add(f)) for f in FAMILIES for _ in range(2)]
    watts = _nameplate_w()
    signals = tmp_path / "signals.json"
    run = Controller(_config(tmp_path, miners, feeds), tmp_path / "journal", "live", tmp_path)
    try:
        run.wait_cycles(3)
        assert all(m.mining for m in miners), "calm power: every miner keeps hashing"
        # 1. Called now, due RESPONSE_MIN later: the lead leaves the ramp time to shed.
        called_a = time.time()
        due_a = called_a + RESPONSE_MIN * 60.0
        _signal(signals, "ramp-a", called_a, called_a, called_a + 3600.0)
        run.wait_cycles(10_000, until=lambda: sum(m.mining for m in miners) <= 2)
        run.wait_cycles(2)
        # The event ends (the file no longer lists it): the miners come back.
        _signal(signals, None, 0, 0, 0)
        run.wait_cycles(10_000, until=lambda: all(m.mining for m in miners))
        run.wait_cycles(int(WINDOW_S) + 3)  # the ramp's window rolls past the resumes
        # 2. Heard a second before it is due: the ramp cannot shed four miners in time.
        heard_b = time.time()
        due_b = heard_b + 1.0
        called_b = due_b - RESPONSE_MIN * 60.0
        _signal(signals, "ramp-b", called_b, called_b, heard_b + 3600.0)
        run.wait_cycles(10_000, until=lambda: sum(m.mining for m in miners) <= 2)
        run.wait_cycles(2)
    finally:
        run.stop()
    records = list(read_journal(tmp_path / "journal"))

    # Both events: four miners curtailed, no faster than two per window.
    cut_a = [t for t in _curtailments(miners, called_a) if t < due_a + 60.0][:4]
    cut_b = _curtailments(miners, heard_b)
    assert len(cut_a) == 4 and len(cut_b) == 4, (cut_a, cut_b)
    _assert_ramp(cut_a)
    _assert_ramp(cut_b)
    # The ramp allowed: the committed level was reached before the event was due, the
    # shed having started no earlier than the lead time before it (one interval more).
    reached_a = _level_reached(miners, called_a, watts)
    assert reached_a <= due_a, (reached_a - called_a, due_a - called_a)
    assert cut_a[0] >= due_a - (LEAD_MIN * 60.0 + 1.0) - JITTER_S
    # The ramp could not: the level came with the second window's curtailments, after
    # the due time; the ramp limit was kept all the same.
    reached_b = _level_reached(miners, heard_b, watts)
    assert reached_b > due_b
    assert reached_b >= cut_b[PER_WINDOW]

    # The journal: the plans kept the site at the event's level and name the program.
    capped = [r for r in records if r.plan.get("site_cap_kw", [None])[0] == pytest.approx(LIMIT_KW)]
    assert capped
    for eid in ("ramp-a", "ramp-b"):
        texts = [c.text for r in capped for c in r.changes if c.target == "idle"]
        assert any(eid in t and PROGRAM in t for t in texts), eid
    for r in capped:
        assert r.plan["site_power_kw"][0] <= LIMIT_KW + 1e-6
    first_a = min(r.now_s for r in capped if r.now_s < heard_b)
    assert due_a - (LEAD_MIN * 60.0 + 1.0) <= first_a + 1e-6 < due_a
