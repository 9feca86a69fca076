"""Live grid signals through `hashpivot run --mode dry-run`: a watched file that gains an
event mid-run caps the site from the next cycle; the webhook on the controller's port
takes events with the bearer token and refuses them without; a restarted controller
keeps an event it received before it was killed; a polled URL that is slow or sends
garbage is logged and the run goes on; `hashpivot backtest --journal` decides every
cycle again with the events each one saw."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.test_one_decision_path import EXAMPLES, hashpivot

# No event of the bundled calendar falls in these two days.
START, END = "2024-08-05T00:00:00Z", "2024-08-07T00:00:00Z"
STEP_S = 3600.0
TOKEN = "s3cret-grid-token"
EVENT_KW = 350.0  # below the program's 400 kW: the event's own limit applies


def _example() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())


def _config(tmp_path: Path, live: dict[str, Any]) -> Path:
    config = _example()
    config["sites"][0]["contract"]["live"] = live
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _program() -> dict[str, Any]:
    return _example()["sites"][0]["contract"]["demand_response"]


def _start(config: Path, tmp_path: Path, *extra: str, pace: float = 0.3,
           env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "hashpivot"
    return subprocess.Popen(
        [str(exe), "run", "-c", str(config), "--mode", "dry-run", "--no-ray", "--from",
         START, "--to", END, "--journal", str(tmp_path / "j"), "--pace", str(pace), *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


def _cycles(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "j" / "journal.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if row.get("kind") == "cycle":
            out.append(row)
    return out


def _wait_cycles(proc: subprocess.Popen[str], tmp_path: Path, n: int) -> list[dict[str, Any]]:
    """The journaled cycles once there are at least `n` (the run still going)."""
    while len(cycles := _cycles(tmp_path)) < n:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    return cycles


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _event(eid: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {"id": eid, "start": _iso(start), "end": _iso(end), **extra}


def _knew(cycle: dict[str, Any], eid: str) -> bool:
    books = cycle.get("grid_signals") or {}
    return any(e["id"] == eid for b in books.values() for e in b["events"])


def _signal_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "j" / "grid_signals.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _assert_capped_from_arrival(cycles: list[dict[str, Any]], eid: str, end_s: float,
                                limit_kw: float) -> dict[str, Any]:
    """Cycles before the event arrived keep the site's own cap; from the first cycle that
    knows it until its end the site is capped at `limit_kw` and draws no more."""
    site_cap = _example()["sites"][0]["power_cap_kw"]
    first = next(i for i, c in enumerate(cycles) if _knew(c, eid))
    assert first > 0, "the event must arrive mid-run"
    for c in cycles[:first]:
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(site_cap)
    during = [c for c in cycles[first:] if c["now_s"] < end_s]
    assert during
    for c in during:
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(limit_kw), c["now_s"]
        assert c["plan"]["site_power_kw"][0] <= limit_kw + 1e-6, c["now_s"]
    after = [c for c in cycles[first:] if c["now_s"] >= end_s]
    for c in after:
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(site_cap)
    before = cycles[first - 1]["plan"]
    assert before["site_power_kw"][0] > limit_kw  # the cap changed something
    assert before["modes"]["ai"] > 0
    # No node serving an AI job gives way to the event.
    for c in cycles[first:]:
        cols = c["fleet_columns"]
        busy = {n for n, g in zip(cols["names"], cols["ai_gpus_busy"], strict=True) if g > 0}
        assert not [ch for ch in c["changes"] if ch["node"] in busy], c["now_s"]
    return cycles[first]


def test_file_gains_an_event_mid_run_and_the_next_cycle_caps(tmp_path: Path) -> None:
    signals = tmp_path / "signals.json"
    config = _config(tmp_path, {"file": "signals.json"})
    proc = _start(config, tmp_path)
    try:
        seen = _wait_cycles(proc, tmp_path, 4)
        # Late: it started an hour before the controller hears of it; no called time.
        now = seen[-1]["now_s"]
        end = now + 6 * STEP_S
        signals.write_text(json.dumps({"events": [_event("grid-1", now - STEP_S, end,
                                                         max_draw_kw=EVENT_KW)]}))
        _, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    cycles = _cycles(tmp_path)
    first = _assert_capped_from_arrival(cycles, "grid-1", end, EVENT_KW)
    lines = _signal_lines(tmp_path)
    received = [x for x in lines if x["kind"] == "signal"]
    assert len(received) == 1 and received[0]["received_s"] == first["now_s"]
    acks = [(x["now_s"], c[0]) for x in lines if x["kind"] == "ack" for c in x["changes"]]
    first_after = min(c["now_s"] for c in cycles if c["now_s"] >= end)
    assert acks == [(first["now_s"], "started"), (first_after, "ended")]
    assert "grid event grid-1 started at site west-texas" in err
    assert any(_event_note(c, "grid-1") for c in first["changes"])
    # Every cycle decided again with the events it saw, to the same plan.
    replay = hashpivot("backtest", "-c", str(config), "--journal", str(tmp_path / "j"),
                       "--no-ray", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert f"{len(cycles)} (100%)" in replay.stdout, replay.stdout


def test_file_that_stops_listing_an_event_ends_it_at_the_next_cycle(tmp_path: Path) -> None:
    """The file lists an event from the start; mid-event it is rewritten without it: the
    cycle that reads it lifts the cap, acknowledges the end, and a journal replay
    decides every cycle the same way."""
    signals = tmp_path / "signals.json"
    config = _config(tmp_path, {"file": "signals.json"})
    start_s = datetime.fromisoformat(START).timestamp()
    end = start_s + 40 * STEP_S  # past the run: only the withdrawal ends it
    signals.write_text(json.dumps({"events": [_event("gone-1", start_s, end,
                                                     called_at=_iso(start_s - STEP_S))]}))
    proc = _start(config, tmp_path, pace=0.1)
    try:
        _wait_cycles(proc, tmp_path, 5)
        signals.write_text(json.dumps({"site": "west-texas", "events": []}))
        _, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "gone-1 withdrawn" in err
    cycles = _cycles(tmp_path)
    received = [x for x in _signal_lines(tmp_path) if x["kind"] == "signal"]
    assert len(received) == 2 and all(x["lists"] for x in received)
    dropped_at = received[1]["received_s"]
    cut = next(i for i, c in enumerate(cycles) if c["now_s"] == dropped_at)
    assert cut >= 5
    limit = _program()["max_draw_kw"]
    cap = _example()["sites"][0]["power_cap_kw"]
    for c in cycles[:cut]:
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(limit), c["now_s"]
        assert c["plan"]["site_power_kw"][0] <= limit + 1e-6
    for c in cycles[cut:]:  # from the cycle that read the file without it
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(cap), c["now_s"]
        assert (_book(c, "gone-1") or {}).get("cancelled_s") == dropped_at
    assert max(c["plan"]["site_power_kw"][0] for c in cycles[cut:]) > limit  # lifted
    acks = [(x["now_s"], ch) for x in _signal_lines(tmp_path) if x["kind"] == "ack"
            for ch in x["changes"]]
    assert acks == [(cycles[0]["now_s"], ["started", "gone-1"]),
                    (dropped_at, ["ended", "gone-1"])]
    assert "grid event gone-1 ended at site west-texas" in err
    replay = hashpivot("backtest", "-c", str(config), "--journal", str(tmp_path / "j"),
                       "--no-ray", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert f"{len(cycles)} (100%)" in replay.stdout, replay.stdout


def _event_note(change: dict[str, Any], eid: str) -> bool:
    return eid in change["text"] and _program()["program"] in change["text"]


def test_restart_keeps_an_event_received_before_the_kill(tmp_path: Path) -> None:
    signals = tmp_path / "signals.json"
    config = _config(tmp_path, {"file": "signals.json"})
    proc = _start(config, tmp_path)
    try:
        now = _wait_cycles(proc, tmp_path, 3)[-1]["now_s"]
        end = now + 60 * STEP_S  # past the end of the run
        signals.write_text(json.dumps({"events": [_event(
            "grid-2", now, end, called_at=_iso(now - STEP_S))]}))
        while not any(_knew(c, "grid-2") for c in _cycles(tmp_path)):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    before = _cycles(tmp_path)
    signals.unlink()  # the restarted controller can know the event from its journal only
    again = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray", "--from",
                      START, "--to", END, "--journal", str(tmp_path / "j"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    cycles = _cycles(tmp_path)
    resumed = [c for c in cycles if c["now_s"] > before[-1]["now_s"]]
    assert resumed
    limit = _program()["max_draw_kw"]
    for c in resumed:
        assert _knew(c, "grid-2")
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(limit)
        assert c["plan"]["site_power_kw"][0] <= limit + 1e-6
    # Acknowledged once: the restart does not start the event again.
    starts = [x for x in _signal_lines(tmp_path) if x["kind"] == "ack"
              for ch in x["changes"] if ch == ["started", "grid-2"]]
    assert len(starts) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_takes_events_with_the_token_only(tmp_path: Path) -> None:
    config = _config(tmp_path, {"webhook": {"token": {"env": "GRID_TOKEN"}}})
    port = _free_port()
    proc = _start(config, tmp_path, "--metrics-port", str(port), pace=0.5,
                  env={"GRID_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}/grid/events"
    try:
        now = _wait_cycles(proc, tmp_path, 3)[-1]["now_s"]
        end = now + 5 * STEP_S
        body = {"events": [_event("hook-1", now, end, called_at=_iso(now))]}
        none = httpx.post(url, json=body)
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
        assert none.status_code == wrong.status_code == 401
        assert _signal_lines(tmp_path) == []  # nothing recorded
        auth = {"Authorization": f"Bearer {TOKEN}"}
        garbage = httpx.post(url, content=b"{not json", headers=auth)
        assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]
        typed = httpx.post(url, json={"events": [{"id": 1, "start": "soon"}]}, headers=auth)
        assert typed.status_code == 400 and "events.0" in typed.json()["error"]
        huge = httpx.post(url, content=b"x" * 2_000_000, headers=auth)
        assert huge.status_code == 413
        ok = httpx.post(url, json=body, headers=auth)
        assert ok.status_code == 200, ok.text
        result = ok.json()["results"][0]
        assert result["id"] == "hook-1" and result["outcome"] == "new"
        assert result["end_s"] == end and result["status"] == "active"
        again = httpx.post(url, json=body, headers=auth)
        assert again.json()["results"][0]["outcome"] == "duplicate"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'outcome="unauthorized"' in metrics and 'outcome="error_bad_json"' in metrics
        _, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    received = [x for x in _signal_lines(tmp_path) if x["kind"] == "signal"]
    assert len(received) == 2  # the duplicate is journaled too, and changed nothing
    _assert_capped_from_arrival(_cycles(tmp_path), "hook-1", end, _program()["max_draw_kw"])


@pytest.fixture
def grid_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A local grid operator: answers each GET with `state['body']` after `state['delay']`."""
    state: dict[str, Any] = {"body": b"{}", "delay": 0.0, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["hits"] += 1
            time.sleep(state["delay"])
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(state["body"])))
                self.end_headers()
                self.wfile.write(state["body"])
            except OSError:
                pass  # the client gave up (its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events", state
    server.shutdown()
    server.server_close()


def test_polled_url_garbage_and_timeouts_keep_the_last_events(
        tmp_path: Path, grid_server: tuple[str, dict[str, Any]]) -> None:
    url, state = grid_server
    config = _config(tmp_path, {"url": url, "poll_s": 0.01, "http": {
        "timeout_s": 0.2, "retries": 0, "allow_loopback_http": True}})
    start_s = datetime.fromisoformat(START).timestamp()
    end = start_s + 30 * STEP_S
    state["body"] = json.dumps({"events": [_event("url-1", start_s + 4 * STEP_S, end,
                                                  called_at=_iso(start_s))]}).encode()
    proc = _start(config, tmp_path, pace=0.3)
    try:
        _wait_cycles(proc, tmp_path, 6)
        state["body"] = b"\x00garbage"
        _wait_cycles(proc, tmp_path, 9)
        # Slow first: an empty list answered in time would end the event.
        state["delay"] = 1.0
        state["body"] = b"{}"
        _wait_cycles(proc, tmp_path, 12)
        state["body"] = json.dumps({"events": "wrong type"}).encode()
        state["delay"] = 0.0
        _, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "not valid JSON" in err and "timeout" in err and "events:" in err
    assert "last known events kept" in err
    cycles = _cycles(tmp_path)
    limit = _program()["max_draw_kw"]
    due = [c for c in cycles if start_s + 4 * STEP_S < c["now_s"] + STEP_S < end + STEP_S]
    assert len(due) > 10
    for c in due:  # the event stays in force through every failure
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(limit), c["now_s"]


def _wait_known(proc: subprocess.Popen[str], tmp_path: Path, check: Any) -> float:
    """The time of the first cycle for which `check(cycle)` holds (the run still going)."""
    while True:
        hit = [c for c in _cycles(tmp_path) if check(c)]
        if hit:
            return float(hit[0]["now_s"])
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)


def _book(cycle: dict[str, Any], eid: str) -> dict[str, Any] | None:
    for b in (cycle.get("grid_signals") or {}).values():
        for e in b["events"]:
            if e["id"] == eid:
                return dict(e)
    return None


def test_contradictory_versions_and_a_live_alert_through_a_file(tmp_path: Path) -> None:
    """One event, three versions: the end moved earlier (sent later), then an older
    version moving it later again (stale: ignored); then a peak alert for one hour stops
    the miners in that hour only."""
    signals = tmp_path / "signals.json"
    config = _config(tmp_path, {"file": "signals.json"})
    start_s = datetime.fromisoformat(START).timestamp()
    sent = start_s - 86_400.0

    def write(end: float, sent_at: float, alerts: list[dict[str, Any]] | None = None) -> None:
        signals.write_text(json.dumps({"sent_at": _iso(sent_at), "alerts": alerts or [],
                                       "events": [_event("c-1", start_s + 2 * STEP_S, end,
                                                         called_at=_iso(start_s))]}))

    write(start_s + 20 * STEP_S, sent)
    proc = _start(config, tmp_path)
    try:
        _wait_known(proc, tmp_path, lambda c: _book(c, "c-1") is not None)
        moved = start_s + 8 * STEP_S
        write(moved, sent + 60)
        _wait_known(proc, tmp_path, lambda c: (_book(c, "c-1") or {}).get("end_s") == moved)
        write(start_s + 30 * STEP_S, sent + 30)  # older than the version known: stale
        n = len(_cycles(tmp_path))
        last = _wait_cycles(proc, tmp_path, n + 2)[-1]["now_s"]
        alert_at = last + 3 * STEP_S  # ahead of the run, inside the season
        write(start_s + 30 * STEP_S, sent + 30,
              alerts=[{"time": _iso(alert_at), "probability": 1.0}])
        _, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "c-1 stale" in err and "c-1 updated" in err
    cycles = _cycles(tmp_path)
    limit = _program()["max_draw_kw"]
    cap = _example()["sites"][0]["power_cap_kw"]
    for c in cycles:
        t = c["now_s"]
        in_force = start_s + 2 * STEP_S < t + STEP_S and t < _book(c, "c-1")["end_s"]
        assert c["plan"]["site_cap_kw"][0] == pytest.approx(limit if in_force else cap), t
    assert all(_book(c, "c-1")["end_s"] <= start_s + 20 * STEP_S for c in cycles)
    final = _book(cycles[-1], "c-1")
    assert final["end_s"] == moved  # the stale version never applied
    # The alerted hour: the miners stop then, and mine the hours around it.
    by_t = {c["now_s"]: c for c in cycles}
    assert by_t[alert_at]["plan"]["modes"].get("mine", 0) == 0
    assert by_t[alert_at - STEP_S]["plan"]["modes"].get("mine", 0) > 0
    assert any("coincident-peak alert p=1.00" in ch["text"]
               for ch in by_t[alert_at]["changes"])


def test_unreadable_webhook_token_is_one_line_naming_the_field(tmp_path: Path) -> None:
    config = _config(tmp_path, {"webhook": {"token": {"file": str(tmp_path / "missing")}}})
    done = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray", "--from",
                     START, "--to", END, "--journal", str(tmp_path / "j"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    for part in ("sites.west-texas.contract.live.webhook.token", str(tmp_path / "missing")):
        assert part in done.stderr, done.stderr


def test_bad_live_block_names_field_and_file(tmp_path: Path) -> None:
    config = _config(tmp_path, {"url": "https://grid.example/e", "poll_s": -1})
    done = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray", "--from",
                     START, "--to", END, "--journal", str(tmp_path / "j"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "poll_s" in done.stderr and "site.yaml" in done.stderr, done.stderr
