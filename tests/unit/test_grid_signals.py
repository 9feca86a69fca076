"""The controller's live grid signals (runtime.grid): what a watched file, the webhook
and a failing source do to the site's known events, the signal journal a restart folds
in again, and the acknowledgements of an event's start and end."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.backtest.contracts import contract_book
from orchestrator.engine.contracts import ContractBook
from orchestrator.models.config import HashpivotConfig, load_config
from orchestrator.runtime.grid import SIGNALS_FILE, GridSignals
from orchestrator.runtime.metrics import ControllerMetrics
from tests.e2e.test_one_decision_path import EXAMPLES

T0 = datetime(2024, 8, 5, 12, tzinfo=UTC).timestamp()
H = 3600.0
TOKEN = "tok-123"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _config(tmp_path: Path, live: dict[str, Any], sites: int = 1) -> HashpivotConfig:
    import yaml

    config = yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())
    site = config["sites"][0]
    site["contract"]["live"] = live
    config["sites"] = [site] + [{**site, "name": f"other-{i}"} for i in range(1, sites)]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _grid(tmp_path: Path, config: HashpivotConfig, clock: Clock | None = None,
          ) -> tuple[GridSignals, ContractBook, ControllerMetrics]:
    book = contract_book(config)
    assert book is not None
    metrics = ControllerMetrics(sites=[s.name for s in config.sites])
    (tmp_path / "j").mkdir(exist_ok=True)
    return GridSignals(config, book, tmp_path / "j", metrics, clock or Clock()), book, metrics


def _cap_kw(book: ContractBook, now: float) -> float | None:
    cap, _ = book.event_caps(now, H, np.array([3.2e6] * len(book.sites)))
    return None if cap is None else float(cap[0]) / 1000.0


def _count(metrics: ControllerMetrics, outcome: str, source: str = "file") -> float:
    value = metrics.registry.get_sample_value(
        "hashpivot_grid_signals_total",
        {"site": "west-texas", "source": source, "outcome": outcome})
    return value or 0.0


def _event(eid: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {"id": eid, "start": _iso(start), "end": _iso(end), **extra}


def test_file_changes_fold_in_and_bad_bodies_keep_the_last_events(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    signals = tmp_path / "signals.json"
    grid, book, metrics = _grid(tmp_path, _config(tmp_path, {"file": str(signals)}))
    grid.poll(T0)  # no file yet: nothing, no error
    assert _cap_kw(book, T0) is None
    signals.write_text(json.dumps({"events": [_event("a", T0, T0 + 4 * H,
                                                     called_at=_iso(T0 - H))]}))
    grid.poll(T0)
    assert _cap_kw(book, T0) == 400.0
    assert _count(metrics, "new") == 1
    caplog.set_level(logging.WARNING, "hashpivot.grid")
    for body, reason in ((b"{oops", "bad_json"), (b"[1, 2]", "schema"),
                         (json.dumps({"events": [{"id": "b", "start": 5}]}).encode(), "schema"),
                         (b" " * 2_000_000, "too_large"),
                         (json.dumps({"site": "elsewhere"}).encode(), "wrong_site")):
        signals.write_bytes(body)
        grid.poll(T0 + H)
        assert _count(metrics, f"error_{reason}") >= 1, reason
        assert _cap_kw(book, T0 + H) == 400.0, reason  # the last known event stays
    assert "last known events kept" in caplog.text
    # The same content again (a touched file) is not a new message.
    signals.write_text(json.dumps({"events": [_event("a", T0, T0 + 2 * H,
                                                     called_at=_iso(T0 - H))]}))
    grid.poll(T0 + H)
    signals.write_text(signals.read_text())
    grid.poll(T0 + H)
    received = [x for x in _lines(tmp_path) if x["kind"] == "signal"]
    assert len(received) == 2  # only what parsed is journaled, once per change
    assert _count(metrics, "updated") == 1
    assert _cap_kw(book, T0 + 2 * H) is None  # the end moved earlier


def _lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "j" / SIGNALS_FILE
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_contradictory_messages_latest_sent_at_wins_in_any_arrival_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GT", TOKEN)
    grid, book, _ = _grid(tmp_path, _config(tmp_path, {"webhook": {"token": {"env": "GT"}}}))
    auth = f"Bearer {TOKEN}"
    short = {"sent_at": _iso(T0 + 60), "events": [_event("c", T0, T0 + H,
                                                          called_at=_iso(T0 - H))]}
    long = {"sent_at": _iso(T0), "events": [_event("c", T0, T0 + 5 * H,
                                                   called_at=_iso(T0 - H))]}
    assert grid.webhook(auth, json.dumps(short).encode())[0] == 200
    status, answer = grid.webhook(auth, json.dumps(long).encode())
    assert status == 200 and answer["results"][0]["outcome"] == "stale"
    assert answer["results"][0]["end_s"] == T0 + H  # the state the controller holds
    grid.poll(T0)
    assert _cap_kw(book, T0) == 400.0
    assert _cap_kw(book, T0 + H) is None


def test_unauthenticated_webhook_records_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # a mounted Secret ends in a newline
    grid, _, metrics = _grid(tmp_path, _config(
        tmp_path, {"webhook": {"token": {"file": str(token_file)}}}))
    body = json.dumps({"events": [_event("w", T0, T0 + H)]}).encode()
    for header in (None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"bearer {TOKEN}"):
        assert grid.webhook(header, body)[0] == 401, header
    assert _lines(tmp_path) == []
    assert _count(metrics, "unauthorized", "webhook") == 0  # counted under site "-"
    assert metrics.registry.get_sample_value("hashpivot_grid_signals_total", {
        "site": "-", "source": "webhook", "outcome": "unauthorized"}) == 6
    status, answer = grid.webhook(f"Bearer {TOKEN}", body)
    assert status == 200 and answer["results"][0]["outcome"] == "new"
    # A rotated Secret is read at the next request.
    token_file.write_text("rotated")
    assert grid.webhook(f"Bearer {TOKEN}", body)[0] == 401
    assert grid.webhook("Bearer rotated", body)[0] == 200


def test_webhook_needs_a_site_when_several_take_messages(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GT", TOKEN)
    grid, _, _ = _grid(tmp_path, _config(tmp_path, {"webhook": {"token": {"env": "GT"}}},
                                         sites=2))
    body = {"events": [_event("w", T0, T0 + H)]}
    status, answer = grid.webhook(f"Bearer {TOKEN}", json.dumps(body).encode())
    assert status == 400 and "site: needed" in answer["error"]
    status, answer = grid.webhook(f"Bearer {TOKEN}", json.dumps(
        {**body, "site": "other-1"}).encode())
    assert status == 200 and answer["site"] == "other-1"


def test_unreadable_token_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _grid(tmp_path, _config(tmp_path, {"webhook": {"token": {"env": "UNSET_GT_VAR"}}}))
    assert "contract.live.webhook.token" in str(info.value)
    assert "UNSET_GT_VAR" in str(info.value)


def test_restart_folds_the_journaled_messages_in_again(tmp_path: Path) -> None:
    signals = tmp_path / "signals.json"
    config = _config(tmp_path, {"file": str(signals)})
    grid, book, _ = _grid(tmp_path, config)
    signals.write_text(json.dumps({"events": [_event("r", T0, T0 + 3 * H)]}))
    grid.poll(T0 + 600)  # late: called when it arrived
    signals.write_text(json.dumps({"events": [_event("r", T0, T0 + 5 * H)]}))
    grid.poll(T0 + H)
    book.event_caps(T0 + H, H, np.array([3.2e6]))
    grid.acknowledge("d1", T0 + H)
    signals.unlink()
    again, book2, _ = _grid(tmp_path, config)
    assert again.books["west-texas"].events == grid.books["west-texas"].events
    for t in np.arange(T0 - H, T0 + 6 * H, 900.0):
        assert _cap_kw(book2, float(t)) == _cap_kw(book, float(t))
    assert again.in_force == {"west-texas": ("r",)}  # acknowledged already: not again


def test_acknowledgements_of_start_and_end(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    signals = tmp_path / "signals.json"
    grid, book, metrics = _grid(tmp_path, _config(tmp_path, {"file": str(signals)}))
    written: list[tuple[str, str]] = []
    grid.event_sink = lambda reason, note: written.append((reason, note))
    signals.write_text(json.dumps({"events": [_event("k", T0 + H, T0 + 3 * H,
                                                     called_at=_iso(T0))]}))
    caplog.set_level(logging.INFO, "hashpivot.grid")
    states = []
    for i, t in enumerate(np.arange(T0, T0 + 5 * H, H)):
        grid.poll(float(t))
        book.event_caps(float(t), H, np.array([3.2e6]))
        grid.acknowledge(f"d{i}", float(t))
        states.append(book.in_force.get("west-texas", ()))
    # In force at each decision already past the call whose interval [t, t + H) reaches
    # into the window [start, end) (due at the start: the response time has passed).
    start, end, called = T0 + H, T0 + 3 * H, T0
    expected = [("k",) if called <= t and t < end and start < t + H else ()
                for t in np.arange(T0, T0 + 5 * H, H)]
    assert states == expected and ("k",) in states
    assert [r for r, _ in written] == ["GridEventStarted", "GridEventEnded"]
    assert "grid event k started at site west-texas (decision d1)" in caplog.text
    assert "grid event k ended at site west-texas (decision d3)" in caplog.text
    for state in ("started", "ended"):
        assert metrics.registry.get_sample_value(
            "hashpivot_grid_event_acks_total", {"site": "west-texas", "state": state}) == 1


def test_a_failing_event_sink_or_ack_url_does_not_stop_the_cycle(tmp_path: Path) -> None:
    signals = tmp_path / "signals.json"
    grid, book, metrics = _grid(tmp_path, _config(tmp_path, {
        "file": str(signals), "ack_url": "http://127.0.0.1:9/ack",
        "http": {"timeout_s": 0.2, "retries": 0, "allow_loopback_http": True}}))

    def broken(reason: str, note: str) -> None:
        raise RuntimeError("apiserver down")

    grid.event_sink = broken
    signals.write_text(json.dumps({"events": [_event("z", T0, T0 + H,
                                                     called_at=_iso(T0))]}))
    grid.poll(T0)
    book.event_caps(T0, H, np.array([3.2e6]))
    grid.acknowledge("d0", T0)
    assert grid.in_force == {"west-texas": ("z",)}
    assert metrics.registry.get_sample_value("hashpivot_grid_signals_total", {
        "site": "west-texas", "source": "ack", "outcome": "error_transport"}) == 1


def test_unwritable_signal_journal_uses_nothing(tmp_path: Path) -> None:
    signals = tmp_path / "signals.json"
    grid, book, _ = _grid(tmp_path, _config(tmp_path, {"file": str(signals)}))
    grid.path = tmp_path / "missing-dir" / SIGNALS_FILE
    signals.write_text(json.dumps({"events": [_event("u", T0, T0 + H,
                                                     called_at=_iso(T0))]}))
    grid.poll(T0)
    assert _cap_kw(book, T0) is None
    grid.path = tmp_path / "j" / SIGNALS_FILE  # writable again: the file is read again
    grid.poll(T0)
    assert _cap_kw(book, T0) == 400.0


def test_plain_http_poll_is_refused_at_start_naming_the_field(tmp_path: Path) -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _grid(tmp_path, _config(tmp_path, {"url": "http://grid.example/events"}))
    assert "contract.live.url" in str(info.value)


def test_webhook_answers_503_when_the_signal_journal_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GT", TOKEN)
    grid, book, _ = _grid(tmp_path, _config(tmp_path, {"webhook": {"token": {"env": "GT"}}}))
    grid.path = tmp_path / "missing-dir" / SIGNALS_FILE
    body = json.dumps({"events": [_event("n", T0, T0 + H, called_at=_iso(T0))]}).encode()
    assert grid.webhook(f"Bearer {TOKEN}", body)[0] == 503
    grid.poll(T0)
    assert _cap_kw(book, T0) is None


def test_a_source_that_stays_broken_is_logged_once_per_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    signals = tmp_path / "signals.json"
    grid, _, metrics = _grid(tmp_path, _config(tmp_path, {"file": str(signals)}))
    caplog.set_level(logging.WARNING, "hashpivot.grid")
    for body in (b"{a", b"{b", b"[]"):
        signals.write_bytes(body)
        grid.poll(T0)
    warnings = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    # The two bodies that are not JSON fail alike: one line for both.
    assert len(warnings) == 2
    assert "bad_json" in warnings[0] and "expected a JSON object" in warnings[1]
    assert str(signals) in warnings[0] and warnings[0].count(str(signals)) == 1
    signals.write_bytes(b"[]")
    for src in grid.sites["west-texas"].sources:
        src.forget()  # type: ignore[union-attr]
    grid.poll(T0)  # the same error again: counted, not logged again
    assert len([r for r in caplog.records if "not used" in r.getMessage()]) == 2
    assert _count(metrics, "error_schema") == 2 and _count(metrics, "error_bad_json") == 2


def test_webhook_route_needs_a_content_length(tmp_path: Path) -> None:
    import http.client

    from orchestrator.runtime.metrics import Health, MetricsServer

    seen: list[bytes] = []

    def handler(auth: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        seen.append(body)
        return 200, {"ok": True}

    server = MetricsServer(ControllerMetrics(), Health(60.0), 0, host="127.0.0.1").start()
    server.routes["/grid/events"] = (handler, 100)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.putrequest("POST", "/grid/events")
        conn.endheaders()
        assert conn.getresponse().status == 411
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("POST", "/grid/events", body=b"x" * 101)
        assert conn.getresponse().status == 413
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("POST", "/grid/events", body=b"{}")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"ok": True}
        conn.close()
    finally:
        server.stop()
    assert seen == [b"{}"]


def test_ack_url_gets_each_start_and_end(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posted: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        signals = tmp_path / "signals.json"
        grid, book, _ = _grid(tmp_path, _config(tmp_path, {
            "file": str(signals), "ack_url": f"http://127.0.0.1:{server.server_address[1]}/a",
            "http": {"timeout_s": 5, "retries": 0, "allow_loopback_http": True}}))
        signals.write_text(json.dumps({"events": [_event("p", T0, T0 + H,
                                                         called_at=_iso(T0))]}))
        for i, t in enumerate((T0, T0 + H)):
            grid.poll(t)
            book.event_caps(t, H, np.array([3.2e6]))
            grid.acknowledge(f"d{i}", t)
    finally:
        server.shutdown()
        server.server_close()
    assert posted == [
        {"site": "west-texas", "event": "p", "state": "started", "decision_id": "d0",
         "at_s": T0},
        {"site": "west-texas", "event": "p", "state": "ended", "decision_id": "d1",
         "at_s": T0 + H}]


def test_a_file_that_drops_an_event_ends_it_journaled_and_restored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The file lists two events, then one: the missing one ends at that poll, is
    acknowledged as ended, and a restarted controller folds the same end in again. A
    file that turns to garbage or an unreadable URL ends nothing."""
    signals = tmp_path / "signals.json"
    config = _config(tmp_path, {"file": str(signals)})
    grid, book, metrics = _grid(tmp_path, config)
    both = [_event("keep", T0 + 8 * H, T0 + 10 * H, called_at=_iso(T0 - H)),
            _event("drop", T0, T0 + 6 * H, called_at=_iso(T0 - H), max_draw_kw=300)]
    signals.write_text(json.dumps({"events": both}))
    caplog.set_level(logging.INFO, "hashpivot.grid")
    grid.poll(T0)
    book.event_caps(T0, H, np.array([3.2e6]))
    grid.acknowledge("d0", T0)
    assert _cap_kw(book, T0) == 300.0
    signals.write_bytes(b"{garbage")
    grid.poll(T0 + H)
    assert _cap_kw(book, T0 + H) == 300.0  # nothing parsed: nothing ends
    signals.unlink()
    grid.poll(T0 + H)
    assert _cap_kw(book, T0 + H) == 300.0  # a deleted file is no message either
    signals.write_text(json.dumps({"events": both[:1]}))
    grid.poll(T0 + 2 * H)
    book.event_caps(T0 + 2 * H, H, np.array([3.2e6]))
    grid.acknowledge("d2", T0 + 2 * H)
    assert _cap_kw(book, T0 + 2 * H) is None
    assert _cap_kw(book, T0 + 8 * H) == 400.0  # "keep" still listed, still due
    dropped = grid.books["west-texas"].events["drop"]
    assert dropped.until_s == T0 + 2 * H
    assert _count(metrics, "withdrawn") == 1
    assert "drop withdrawn" in caplog.text
    assert "grid event drop ended at site west-texas (decision d2)" in caplog.text
    lines = _lines(tmp_path)
    signals_in = [x for x in lines if x["kind"] == "signal"]
    assert [x["source"] for x in signals_in] == ["file", "file"]
    assert all(x["lists"] is True for x in signals_in)
    acks = [(x["decision_id"], c) for x in lines if x["kind"] == "ack" for c in x["changes"]]
    assert ("d2", ["ended", "drop"]) in acks
    signals.unlink()
    again, book2, _ = _grid(tmp_path, config)
    assert again.books["west-texas"].events == grid.books["west-texas"].events
    for t in np.arange(T0 - H, T0 + 11 * H, 900.0):
        assert _cap_kw(book2, float(t)) == _cap_kw(book, float(t))
    assert again.in_force == {"west-texas": ()}  # the end is not acknowledged again
