"""Live demand-response events and peak alerts: how messages fold into a site's book
(duplicates, later versions, stale versions, cancellations, late events) and how the
book caps the site in the decision."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.engine.contracts import ContractBook, LiveBook
from orchestrator.models.contract import GridMessage, PowerContract
from orchestrator.models.site import Site

T0 = datetime(2024, 8, 20, 17, 0, tzinfo=UTC).timestamp()
H = 3600.0
RESPONSE_MIN = 10.0
PROGRAM_KW = 400.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _msg(*events: dict, sent: float | None = None, alerts: list | None = None) -> GridMessage:
    body: dict = {"events": list(events), "alerts": alerts or []}
    if sent is not None:
        body["sent_at"] = _iso(sent)
    return GridMessage.model_validate(body)


def _event(eid: str, start: float, end: float, **extra: object) -> dict:
    out: dict = {"id": eid, "start": _iso(start), "end": _iso(end)}
    for key, value in extra.items():
        out[key] = _iso(value) if key in {"called_at", "sent_at"} else value
    return out


def _site(cap_kw: float = 3200.0, over_leases: bool = False) -> Site:
    contract = PowerContract.model_validate({
        "demand_response": {"max_draw_kw": PROGRAM_KW, "committed_kw": 2800,
                            "response_min": RESPONSE_MIN, "over_leases": over_leases,
                            "events": {"path": "unused.csv"}},
        "coincident_peak": {"months": [8], "usd_per_kw": 60.0, "alerts": 0.0},
        "live": {"file": "signals.json"},
    })
    return Site(name="west", power_cap_kw=cap_kw, contract=contract)


def _book_caps(book: LiveBook, now_s: float, interval_s: float = H) -> float | None:
    site = _site()
    contracts = ContractBook([site], {}, {}, True, {site.name: book})
    cap, _ = contracts.event_caps(now_s, interval_s, np.array([site.power_cap_kw * 1000.0]))
    return None if cap is None else float(cap[0]) / 1000.0


def test_new_then_duplicate_is_ignored() -> None:
    book = LiveBook()
    m = _msg(_event("e1", T0 + H, T0 + 3 * H, called_at=T0))
    assert book.apply(m, T0) == [("e1", "new")]
    version = book.version
    assert book.apply(m, T0 + 60) == [("e1", "duplicate")]
    assert book.version == version
    assert book.events["e1"].received_s == T0  # the first arrival stays


def test_later_version_moves_the_end_and_stale_one_is_ignored() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0 + H, T0 + 3 * H, called_at=T0), sent=T0), T0)
    later = _msg(_event("e1", T0 + H, T0 + 5 * H, called_at=T0), sent=T0 + 600)
    assert book.apply(later, T0 + 700) == [("e1", "updated")]
    assert book.events["e1"].until_s == T0 + 5 * H
    # An older version arriving afterwards (sent before the one known) changes nothing.
    older = _msg(_event("e1", T0 + H, T0 + 2 * H, called_at=T0), sent=T0 + 300)
    assert book.apply(older, T0 + 800) == [("e1", "stale")]
    assert book.events["e1"].until_s == T0 + 5 * H


def test_contradictory_versions_without_sent_at_latest_arrival_wins() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0 + H, T0 + 3 * H, max_draw_kw=300.0)), T0)
    book.apply(_msg(_event("e1", T0 + H, T0 + 3 * H, max_draw_kw=250.0)), T0 + 60)
    assert book.events["e1"].max_draw_kw == 250.0


def test_cancelled_event_ends_when_cancelled() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0, T0 + 4 * H, called_at=T0 - H)), T0 - H)
    cancel_at = T0 + H
    out = book.apply(_msg(_event("e1", T0, T0 + 4 * H, called_at=T0 - H, status="cancelled"),
                          sent=cancel_at), cancel_at + 30)
    assert out == [("e1", "cancelled")]
    assert book.events["e1"].until_s == cancel_at
    assert _book_caps(book, T0 + 0.5 * H) == PROGRAM_KW
    assert _book_caps(book, cancel_at + 60) is None


def test_event_cancelled_before_it_is_due_never_caps() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0 + 2 * H, T0 + 4 * H, called_at=T0)), T0)
    book.apply(_msg(_event("e1", T0 + 2 * H, T0 + 4 * H, status="cancelled"), sent=T0 + 60),
               T0 + 60)
    for t in (T0 + 60, T0 + 2 * H, T0 + 3 * H):
        assert _book_caps(book, t) is None, t


def test_late_event_applies_from_when_it_is_known() -> None:
    """Started an hour before anyone heard of it, without a called time: called when it
    arrived, due a response time later, so the first decision after it arrives caps."""
    book = LiveBook()
    arrival = T0 + H
    book.apply(_msg(_event("late", T0, T0 + 4 * H)), arrival)
    e = book.events["late"]
    assert e.called_s == arrival
    calendar = book.calendar(RESPONSE_MIN * 60.0)
    assert calendar.due_s[0] == arrival + RESPONSE_MIN * 60.0
    assert _book_caps(book, arrival - 1) is None  # a decision before it arrived
    assert _book_caps(book, arrival) == PROGRAM_KW


def test_event_limit_replaces_the_programs_and_cap_stays_the_lowest() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0, T0 + 2 * H, called_at=T0 - H, max_draw_kw=150.0)), T0 - H)
    assert _book_caps(book, T0) == 150.0
    book.apply(_msg(_event("e2", T0 + 3 * H, T0 + 4 * H, called_at=T0 - H,
                           max_draw_kw=900.0)), T0 - H)
    assert _book_caps(book, T0 + 3 * H) == 900.0


def test_cap_note_names_program_and_event() -> None:
    site = _site()
    book = LiveBook()
    book.apply(_msg(_event("grid-42", T0, T0 + 2 * H, called_at=T0 - H)), T0 - H)
    contracts = ContractBook([site], {}, {}, True, {site.name: book})
    _, notes = contracts.event_caps(T0, H, np.array([3.2e6]))
    assert "grid-42" in notes[0] and "demand response" in notes[0]
    assert contracts.in_force == {"west": ("grid-42",)}


def test_live_alert_overrides_recorded_for_its_interval() -> None:
    book = LiveBook()
    alerts = [{"time": _iso(T0), "probability": 0.75}]
    assert book.apply(_msg(alerts=alerts), T0 - H) == [(f"alert {_utc(T0)}", "new")]
    assert book.apply(_msg(alerts=alerts), T0 - H + 5) == [(f"alert {_utc(T0)}", "duplicate")]
    assert book.alert_at(T0 + 0.5 * H, 1.0) == 0.75
    assert book.alert_at(T0 + H, 1.0) is None
    assert book.alert_at(T0 - 1, 1.0) is None
    site = _site()
    contracts = ContractBook([site], {}, {}, True, {site.name: book})
    from orchestrator.economics import coincident_peak_expected_usd_mwh
    price = contracts._site_price(0, site.contract, datetime.fromtimestamp(T0, site.zone),
                                  50.0, 1000.0, T0)[0]
    expected = 50.0 + float(coincident_peak_expected_usd_mwh(0.75, 60.0, 4, 1.0))
    assert price == pytest.approx(expected)


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def test_snapshot_round_trip_keeps_every_decision() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0, T0 + 2 * H, called_at=T0 - H, max_draw_kw=200.0),
                    alerts=[{"time": _iso(T0), "probability": 1.0}]), T0 - H)
    book.apply(_msg(_event("e2", T0 + 3 * H, T0 + 5 * H)), T0 + H)
    back = LiveBook.from_snapshot(book.snapshot())
    assert back.events == book.events and back.alerts == book.alerts
    for t in np.arange(T0 - 2 * H, T0 + 6 * H, 900.0):
        assert _book_caps(back, float(t)) == _book_caps(book, float(t))


@pytest.mark.parametrize("body, field", [
    ({"events": [{"id": "x", "start": "2024-08-20T10:00:00Z"}]}, "end"),
    ({"events": [{"id": "x", "start": "2024-08-20T10:00:00", "end": "2024-08-20T11:00:00Z"}]},
     "start"),
    ({"events": [{"id": "x", "start": "2024-08-20T12:00:00Z", "end": "2024-08-20T11:00:00Z"}]},
     "must be after start"),
    ({"events": [{"id": "x", "start": "2024-08-20T10:00:00Z", "end": "2024-08-20T11:00:00Z",
                  "max_draw_kw": "lots"}]}, "max_draw_kw"),
    ({"alerts": [{"time": "2024-08-20T10:00:00Z", "probability": 1.5}]}, "probability"),
    ({"events": "nope"}, "events"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_messages_are_refused_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        GridMessage.model_validate(body)
    assert field in str(info.value)


def test_live_needs_a_program() -> None:
    with pytest.raises(ValidationError, match="live signals need"):
        PowerContract.model_validate({"live": {"file": "x.json"}})
    with pytest.raises(ValidationError, match="at least one of url, file or webhook"):
        PowerContract.model_validate({
            "coincident_peak": {"months": [8], "usd_per_kw": 1.0, "alerts": 0.0},
            "live": {}})


def test_over_leases_flags_the_site_only_while_an_event_is_in_force() -> None:
    site = _site(over_leases=True)
    book = LiveBook()
    book.apply(_msg(_event("e1", T0, T0 + H, called_at=T0 - H)), T0 - H)
    contracts = ContractBook([site], {}, {}, True, {site.name: book})
    _, notes = contracts.event_caps(T0, H, np.array([3.2e6]))
    assert contracts.lease_shed is not None and contracts.lease_shed.tolist() == [True]
    assert notes[0].endswith("before AI leases")
    contracts.event_caps(T0 + H, H, np.array([3.2e6]))  # the event has ended
    assert contracts.lease_shed is None
    contracts = ContractBook([_site()], {}, {}, True, {site.name: book})
    _, notes = contracts.event_caps(T0, H, np.array([3.2e6]))
    assert contracts.lease_shed is None and "before AI leases" not in notes[0]


def test_a_polled_source_that_stops_listing_an_event_withdraws_it() -> None:
    """A file or URL lists the site's current events: an event it listed and leaves out
    of its next message ends when that message arrives, like a cancellation."""
    book = LiveBook()
    listed = _msg(_event("e1", T0, T0 + 4 * H, called_at=T0 - H),
                  _event("e2", T0 + 6 * H, T0 + 8 * H, called_at=T0 - H))
    assert book.apply(listed, T0 - H, lists="file") == [("e1", "new"), ("e2", "new")]
    dropped_at = T0 + 1.5 * H
    out = book.apply(_msg(), dropped_at, lists="file")
    assert out == [("e1", "withdrawn"), ("e2", "withdrawn")]
    assert book.events["e1"].until_s == dropped_at
    assert book.events["e1"].cancelled_s == dropped_at
    assert _book_caps(book, T0 + H) == PROGRAM_KW  # before the message: still capped
    assert _book_caps(book, dropped_at) is None
    for t in (T0 + 6 * H, T0 + 7 * H):  # withdrawn before it was due: never caps
        assert _book_caps(book, t) is None, t
    # The same empty message again ends nothing more.
    version = book.version
    assert book.apply(_msg(), dropped_at + H, lists="file") == []
    assert book.version == version


def test_listed_again_after_a_withdrawal_applies_again() -> None:
    book = LiveBook()
    e1 = _event("e1", T0, T0 + 4 * H, called_at=T0 - H)
    book.apply(_msg(e1), T0 - H, lists="url")
    book.apply(_msg(), T0 + H, lists="url")
    assert _book_caps(book, T0 + H) is None
    assert book.apply(_msg(e1), T0 + 2 * H, lists="url") == [("e1", "updated")]
    assert book.events["e1"].cancelled_s is None
    assert _book_caps(book, T0 + 2 * H) == PROGRAM_KW


def test_webhook_deltas_and_other_sources_never_withdraw() -> None:
    """A message without `lists` (a webhook's) leaves unnamed events alone; a source
    withdraws only what it listed itself; an event that has ended stays as it ended."""
    book = LiveBook()
    book.apply(_msg(_event("hook", T0, T0 + 4 * H, called_at=T0 - H)), T0 - H)
    book.apply(_msg(_event("f", T0, T0 + 4 * H, called_at=T0 - H)), T0 - H, lists="file")
    book.apply(_msg(_event("short", T0 - 3 * H, T0 - 2 * H, called_at=T0 - 4 * H)),
               T0 - 4 * H, lists="url")
    assert book.apply(_msg(), T0 + H) == []  # a delta naming nothing
    assert book.apply(_msg(), T0 + H, lists="url") == []  # "short" ended already
    assert book.events["short"].until_s == T0 - 2 * H
    assert book.apply(_msg(), T0 + H, lists="file") == [("f", "withdrawn")]
    assert book.events["hook"].cancelled_s is None
    assert _book_caps(book, T0 + H) == PROGRAM_KW  # "hook" still holds the site


def test_a_withdrawal_older_than_the_version_known_is_stale() -> None:
    """A newer version of the event (sent later, e.g. by the webhook) outranks the
    file's silence written before it."""
    book = LiveBook()
    book.apply(_msg(_event("e1", T0, T0 + 4 * H, called_at=T0 - H), sent=T0 - H), T0 - H,
               lists="file")
    book.apply(_msg(_event("e1", T0, T0 + 5 * H, called_at=T0 - H), sent=T0 + 2 * H),
               T0 + 2 * H)
    assert book.apply(_msg(sent=T0 + H), T0 + 2 * H + 60, lists="file") == [("e1", "stale")]
    assert book.events["e1"].until_s == T0 + 5 * H


def test_withdrawn_events_survive_the_snapshot_round_trip() -> None:
    book = LiveBook()
    book.apply(_msg(_event("e1", T0, T0 + 4 * H, called_at=T0 - H)), T0 - H, lists="file")
    book.apply(_msg(), T0 + H, lists="file")
    back = LiveBook.from_snapshot(book.snapshot())
    assert back.events == book.events
    for t in np.arange(T0 - 2 * H, T0 + 6 * H, 900.0):
        assert _book_caps(back, float(t)) == _book_caps(book, float(t))


@pytest.mark.parametrize("lead_min", [0.0, 25.0, 150.0])
def test_lead_time_sheds_earlier_but_never_before_the_call(lead_min: float) -> None:
    """A decision holds the site at the event's level once the due time is within the
    interval plus `lead_min`, and never before the event is called."""
    contract = _site().contract
    assert contract is not None and contract.demand_response is not None
    dr = contract.demand_response.model_copy(update={"lead_min": lead_min})
    site = _site().model_copy(update={"contract": contract.model_copy(
        update={"demand_response": dr})})
    called, due = T0, T0 + 2 * H  # start at T0 + 2 h: due then (the response is shorter)
    book = LiveBook()
    book.apply(_msg(_event("e1", due, due + H, called_at=called)), called)
    contracts = ContractBook([site], {}, {}, True, {site.name: book})
    interval = 600.0
    for now in np.arange(T0 - H, due + 2 * H, 60.0):
        cap, _ = contracts.event_caps(float(now), interval, np.array([3.2e6]))
        expected = called <= now < due + H and due < now + interval + lead_min * 60.0
        assert (cap is not None) == expected, (now - T0) / 60.0


def test_an_event_listed_again_with_its_own_sent_at_applies_again() -> None:
    """A withdrawal keeps the event's version: the source listing it again as it was
    (its own `sent_at`, older than the message that dropped it) brings it back."""
    book = LiveBook()
    e1 = _event("e1", T0, T0 + 4 * H, called_at=T0 - 2 * H, sent_at=T0 - 2 * H)
    book.apply(_msg(e1), T0 - 2 * H, lists="file")
    assert book.apply(_msg(sent=T0 - H), T0 - H, lists="file") == [("e1", "withdrawn")]
    assert book.apply(_msg(e1, sent=T0 - 0.5 * H), T0 - 0.5 * H,
                      lists="file") == [("e1", "updated")]
    assert _book_caps(book, T0) == PROGRAM_KW


def test_one_source_dropping_an_event_another_still_lists_does_not_end_it() -> None:
    book = LiveBook()
    e1 = _event("e1", T0, T0 + 4 * H, called_at=T0 - 2 * H)
    sent = T0 - 2 * H
    book.apply(_msg(e1, sent=sent), T0 - 2 * H, lists="file")
    book.apply(_msg(e1, sent=sent), T0 - 2 * H + 60, lists="url")
    assert book.apply(_msg(sent=T0 - H), T0 - H, lists="file") == [("e1", "withdrawn")]
    # The URL keeps listing the same message: the event is back in force.
    assert book.apply(_msg(e1, sent=sent), T0 - H + 60, lists="url") == [("e1", "updated")]
    assert _book_caps(book, T0) == PROGRAM_KW


def test_a_stricter_event_due_within_the_lead_binds_while_a_looser_one_is_in_force() -> None:
    """Two events in the window a decision covers: the lower limit caps the site."""
    book = LiveBook()
    loose = _event("loose", T0 - H, T0 + 55 * 60, called_at=T0 - 2 * H, max_draw_kw=2500.0)
    strict = _event("strict", T0 + 65 * 60, T0 + 3 * H, called_at=T0 - 2 * H,
                    max_draw_kw=300.0)
    book.apply(_msg(loose, strict), T0 - 2 * H)
    # Deciding at T0 for the next hour plus a 30-minute lead: both are in the window.
    assert _book_caps(book, T0, interval_s=1.5 * H) == 300.0
    # Without the lead the strict one is not yet due before the next decision.
    assert _book_caps(book, T0, interval_s=H) == 2500.0
