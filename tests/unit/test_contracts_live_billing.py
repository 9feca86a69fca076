"""The ledger's demand-response lines for live events (backtest.contracts): each step
bills the events its decision saw, an event heard of late from the step that hears it,
and a live window overlapping a recorded one once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from orchestrator.backtest.contracts import ContractAccounts, contract_book
from orchestrator.backtest.sim import Ledger
from orchestrator.engine.contracts import EventCalendar, LiveBook
from orchestrator.models.config import load_config
from orchestrator.models.contract import GridMessage
from tests.e2e.test_one_decision_path import EXAMPLES

T0 = datetime(2024, 8, 5, 12, tzinfo=UTC).timestamp()
H = 3600.0
DRAW_KW = 2000.0  # every step, above the program's 400 kW


def _accounts(tmp_path: Path) -> tuple[ContractAccounts, dict[str, Any]]:
    config = yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())
    config["sites"][0]["contract"]["live"] = {"file": "signals.json"}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    book = contract_book(load_config(path))
    assert book is not None
    return ContractAccounts(book), config["sites"][0]["contract"]["demand_response"]


def _book(*events: dict[str, Any], received_s: float) -> dict[str, Any]:
    book = LiveBook()
    book.apply(GridMessage.model_validate({"events": list(events)}), received_s)
    return {"west-texas": book.snapshot()}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _run(accounts: ContractAccounts, books: list[dict[str, Any] | None]) -> Ledger:
    times = T0 + H * np.arange(len(books))
    ledger = Ledger.zeros(times, 1)
    for k, heard in enumerate(books):
        accounts.hear(heard)
        accounts.record(ledger, k, float(times[k]), H, np.array([DRAW_KW * 1000.0]),
                        np.array([30.0]))
    return ledger


def test_an_event_heard_late_is_billed_from_the_step_that_hears_it(tmp_path: Path) -> None:
    """Called before the run and due at step 1, but heard only at step 2: step 1 books
    nothing, steps 2 and 3 book the shortfall above the event's own limit."""
    accounts, dr = _accounts(tmp_path)
    event = {"id": "e", "start": _iso(T0 + H), "end": _iso(T0 + 4 * H),
             "called_at": _iso(T0 - H), "max_draw_kw": 300}
    heard = _book(event, received_s=T0 + 2 * H)
    ledger = _run(accounts, [None, None, heard, heard, heard])
    lines = ledger.programs
    assert lines is not None
    per_step = dr["shortfall_usd_mwh"] * (DRAW_KW - 300) / 1000.0
    assert lines.shortfall.tolist() == pytest.approx([0, 0, per_step, per_step, 0])
    # The baseline hour before the call holds no step of the run: no energy payment.
    assert lines.energy.tolist() == [0.0] * 5


def test_a_cancellation_heard_late_stops_billing_from_the_step_that_hears_it(
        tmp_path: Path) -> None:
    accounts, dr = _accounts(tmp_path)
    event = {"id": "e", "start": _iso(T0), "end": _iso(T0 + 4 * H), "called_at": _iso(T0 - H)}
    active = _book(event, received_s=T0 - H)
    cancelled = LiveBook.from_snapshot(active["west-texas"])
    cancelled.apply(GridMessage.model_validate({
        "sent_at": _iso(T0 + H), "events": [{**event, "status": "cancelled"}]}), T0 + 2 * H)
    ledger = _run(accounts, [active, active, {"west-texas": cancelled.snapshot()}, None])
    lines = ledger.programs
    assert lines is not None
    per_step = dr["shortfall_usd_mwh"] * (DRAW_KW - dr["max_draw_kw"]) / 1000.0
    assert lines.shortfall.tolist() == pytest.approx([per_step, per_step, 0, 0])


def test_live_window_overlapping_a_recorded_one_is_billed_once(tmp_path: Path) -> None:
    accounts, dr = _accounts(tmp_path)
    accounts.book.events = {"west-texas": EventCalendar.of(
        np.array([T0]), np.array([T0 + 2 * H]), np.array([T0 - H]), dr["response_min"] * 60.0)}
    heard = _book({"id": "e", "start": _iso(T0 + H), "end": _iso(T0 + 3 * H),
                   "called_at": _iso(T0 - H)}, received_s=T0 - H)
    ledger = _run(accounts, [heard, heard, heard, heard])
    lines = ledger.programs
    assert lines is not None
    per_step = dr["shortfall_usd_mwh"] * (DRAW_KW - dr["max_draw_kw"]) / 1000.0
    assert lines.shortfall.tolist() == pytest.approx([per_step, per_step, per_step, 0])
