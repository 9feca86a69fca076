"""Power contracts in the score table: the USD/MWh a site's marginal energy costs now.

The score pass prices every node's draw at one USD/MWh per site (plus the node's tariff
adder). For a site with a contract (`Site.contract`), that price is worked out here,
before the compiled pass, so every policy sees the contract through the power-cost term:

- the energy price: spot; a fixed price; spot again for a fixed block resold at spot
  (using a MWh forgoes selling it); or the time-of-use price of the local hour;
- plus the demand charge spread over the month's hours while the site draws at (or
  within `demand_near_peak_share` of) its month-to-date peak;
- plus the expected coincident-peak charge of the interval (alert probability ×
  usd_per_kw / peak_intervals per kWh of the interval).

The month-to-date peak is the highest site draw seen at a decision this month (local
time); `observe` keeps it.

A demand-response commitment enters the guards instead: while a called event's window
reaches into the coming interval, the site's power cap in the decision is the lower of
its own cap and the program's `max_draw_kw` (`ContractBook.event_caps`), so the cap
allocation sheds the least value per watt first and never a protected AI lease.

Pure: the alert series and event calendars arrive as arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.models.contract import (
    WEEKDAYS,
    CurtailmentCredit,
    DemandResponse,
    FixedPrice,
    GridEvent,
    GridMessage,
    PowerContract,
    TimeOfUsePrice,
    stamp,
)
from orchestrator.models.fleet import FleetTable
from orchestrator.models.site import Site

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AlertSeries:
    """Peak-alert probabilities (0-1) from `times_s` on, each for `interval_h` hours."""

    times_s: F64
    values: F64
    interval_h: float = 1.0

    def at(self, t_s: float) -> float:
        """The probability in force at `t_s` (0 before the first row)."""
        i = int(np.searchsorted(self.times_s, t_s, side="right")) - 1
        return float(self.values[i]) if i >= 0 else 0.0

    @staticmethod
    def constant(value: float) -> AlertSeries:
        return AlertSeries(np.array([-np.inf]), np.array([float(value)]))


@dataclass(frozen=True, slots=True)
class EventCalendar:
    """Demand-response events, merged and ordered: each was called at `called_s` and
    holds the site at its committed draw over [`due_s`, `end_s`). `limit_kw`: the draw
    an event allows, kW (NaN: the program's `max_draw_kw`); `labels`: what names each
    event in explanations and acknowledgements."""

    called_s: F64
    due_s: F64
    end_s: F64
    limit_kw: F64 | None = None
    labels: tuple[str, ...] = ()

    @staticmethod
    def of(start_s: F64, end_s: F64, called_s: F64, response_s: float,
           limit_kw: F64 | None = None, labels: Sequence[str] = ()) -> EventCalendar:
        """The windows of recorded events: each is due at the later of its start and its
        call plus the response time, until its end. Events whose windows overlap or
        touch become one (called at the earlier call, due at the earlier time, ending at
        the later end, allowing the lower of their limits): a repeated or extended call
        is one event."""
        due = np.maximum(np.asarray(start_s, dtype=np.float64),
                         np.asarray(called_s, dtype=np.float64) + response_s)
        end = np.asarray(end_s, dtype=np.float64)
        called = np.asarray(called_s, dtype=np.float64)
        limit = (np.full(due.shape, np.nan) if limit_kw is None
                 else np.asarray(limit_kw, dtype=np.float64))
        names = list(labels) if labels else [""] * int(due.shape[0])
        order = np.argsort(due, kind="stable")
        out_c: list[float] = []
        out_d: list[float] = []
        out_e: list[float] = []
        out_l: list[float] = []
        out_n: list[str] = []
        for i in order.tolist():
            if end[i] <= due[i]:
                continue  # ended (or cancelled) before it was due: no window
            if out_e and due[i] <= out_e[-1]:
                out_c[-1] = min(out_c[-1], float(called[i]))
                out_e[-1] = max(out_e[-1], float(end[i]))
                out_l[-1] = float(np.fmin(out_l[-1], limit[i]))
                out_n[-1] = "+".join(x for x in (out_n[-1], names[i]) if x)
                continue
            out_c.append(float(called[i]))
            out_d.append(float(due[i]))
            out_e.append(float(end[i]))
            out_l.append(float(limit[i]))
            out_n.append(names[i])
        return EventCalendar(np.array(out_c), np.array(out_d), np.array(out_e),
                             np.array(out_l), tuple(out_n))

    def __len__(self) -> int:
        return int(self.due_s.shape[0])

    def in_force(self, now_s: float, interval_s: float) -> int:
        """The first event `all_in_force` lists (-1: none)."""
        hit = self.all_in_force(now_s, interval_s)
        return int(hit[0]) if hit.size else -1

    def all_in_force(self, now_s: float, interval_s: float) -> npt.NDArray[np.intp]:
        """The events a decision at `now_s` must keep the site under: those already
        called whose window reaches into [now_s, now_s + interval_s) (the next decision
        comes only then; callers add the program's lead time)."""
        ahead = now_s + max(interval_s, 0.0)
        return np.flatnonzero((self.called_s <= now_s) & (self.end_s > now_s)
                              & ((self.due_s < ahead) | (self.due_s <= now_s)))

    def limit(self, e: int, default_kw: float) -> float:
        """The draw event `e` allows, kW."""
        if self.limit_kw is None or e >= self.limit_kw.shape[0]:
            return default_kw
        value = float(self.limit_kw[e])
        return default_kw if np.isnan(value) else value

    def label(self, e: int) -> str:
        return self.labels[e] if e < len(self.labels) else ""

    def overlap_h(self, t0_s: float, t1_s: float) -> float:
        """Hours of [t0_s, t1_s) inside an event window."""
        lo = np.maximum(self.due_s, t0_s)
        hi = np.minimum(self.end_s, t1_s)
        return float(np.clip(hi - lo, 0.0, None).sum()) / 3600.0


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A demand-response event as the live sources last described it."""

    id: str
    start_s: float
    end_s: float
    called_s: float
    max_draw_kw: float | None
    #: Which version this is: its `sent_at` (else when it arrived), then its arrival.
    sent_s: float
    received_s: float
    #: When a cancellation took effect (None: not cancelled).
    cancelled_s: float | None = None
    #: What the message said (start, end, called_at, max_draw_kw, status): a message
    #: saying the same again is a duplicate.
    content: tuple[float, float, float | None, float | None, str] = (0.0, 0.0, None, None, "")

    @property
    def until_s(self) -> float:
        """When the event ends: its end, or its cancellation if earlier."""
        return self.end_s if self.cancelled_s is None else min(self.end_s, self.cancelled_s)


@dataclass
class LiveBook:
    """A site's events and alerts from live sources, keyed by event id and alert time.

    - a message repeating what is known (same id and content) is a duplicate: ignored;
    - a later version of an event (a later `sent_at`; with equal or no `sent_at`, the
      later arrival) replaces it: its end may move, its limit change, it may be
      cancelled (it ends when the cancellation was sent, else received);
    - an older version than the one known is stale: ignored;
    - an event without `called_at` counts as called when it first arrived, so a late
      event (called after its start) applies from when it is known;
    - a polled source (a file, a URL) publishes the site's current events: an event it
      listed that is missing from its next message is withdrawn, i.e. cancelled when
      that message arrived (`apply(..., lists=SOURCE)`). Webhook messages are deltas.
    """

    events: dict[str, LiveEvent] = field(default_factory=dict)
    #: alert time (s) → (probability, sent_s, received_s)
    alerts: dict[float, tuple[float, float, float]] = field(default_factory=dict)
    #: Bumped on every change (callers cache what they derive from the book).
    version: int = 0
    #: Per polled source, the ids of the events its last message listed.
    listed: dict[str, frozenset[str]] = field(default_factory=dict)

    def apply(self, message: GridMessage, received_s: float,
              lists: str | None = None) -> list[tuple[str, str]]:
        """Fold one message in; per event and alert, (what, outcome): outcome is one of
        `new`, `updated`, `cancelled`, `duplicate`, `stale`, `withdrawn`. `lists`: the
        polled source the message came from, whose message lists every event it still
        stands by (None: a delta, as a webhook's)."""
        out: list[tuple[str, str]] = []
        default_sent = stamp(message.sent_at)
        for event in message.events:
            out.append((event.id, self._event(event, default_sent, received_s)))
        if lists is not None:
            out += self._withdraw(lists, message, default_sent, received_s)
        for alert in message.alerts:
            t = alert.time.timestamp()
            key = (default_sent if default_sent is not None else received_s, received_s)
            known = self.alerts.get(t)
            if known is not None and known[0] == alert.probability:
                outcome = "duplicate"
            elif known is not None and key < known[1:]:
                outcome = "stale"
            else:
                outcome = "updated" if known is not None else "new"
                self.alerts[t] = (float(alert.probability), *key)
                self.version += 1
            out.append((f"alert {_utc(t)}", outcome))
        return out

    def _event(self, event: GridEvent, default_sent: float | None, received_s: float) -> str:
        sent = stamp(event.sent_at)
        sent = sent if sent is not None else default_sent
        key = (sent if sent is not None else received_s, received_s)
        content = (event.start.timestamp(), event.end.timestamp(), stamp(event.called_at),
                   event.max_draw_kw, event.status)
        known = self.events.get(event.id)
        if known is not None and known.content == content:
            return "duplicate"
        if known is not None and key < (known.sent_s, known.received_s):
            return "stale"
        called = content[2]
        if called is None:
            called = known.called_s if known is not None else received_s
        cancelled = key[0] if event.status == "cancelled" else None
        self.events[event.id] = LiveEvent(
            event.id, content[0], content[1], called, event.max_draw_kw, key[0], key[1],
            cancelled, content)
        self.version += 1
        if cancelled is not None:
            return "cancelled"
        return "updated" if known is not None else "new"

    def _withdraw(self, source: str, message: GridMessage, default_sent: float | None,
                  received_s: float) -> list[tuple[str, str]]:
        """End, as of `received_s`, each event `source` listed before and lists no more
        (one that has already ended stays as it is)."""
        ids = frozenset(e.id for e in message.events)
        dropped = sorted(self.listed.get(source, frozenset()) - ids)
        self.listed[source] = ids
        key = (default_sent if default_sent is not None else received_s, received_s)
        out: list[tuple[str, str]] = []
        for eid in dropped:
            known = self.events.get(eid)
            if known is None or known.until_s <= received_s:
                continue
            if key < (known.sent_s, known.received_s):
                # A newer version came from elsewhere: this silence is older news.
                out.append((eid, "stale"))
                continue
            c = known.content
            # The event keeps its version: listed again as it was (by this source or
            # another), it applies again.
            self.events[eid] = replace(known, cancelled_s=received_s,
                                       content=(c[0], c[1], c[2], c[3], "withdrawn"))
            self.version += 1
            out.append((eid, "withdrawn"))
        return out

    def calendar(self, response_s: float) -> EventCalendar:
        """The events' windows, as a recorded calendar's (cancelled ones end then)."""
        events = list(self.events.values())
        return EventCalendar.of(
            np.array([e.start_s for e in events]), np.array([e.until_s for e in events]),
            np.array([e.called_s for e in events]), response_s,
            np.array([np.nan if e.max_draw_kw is None else e.max_draw_kw for e in events]),
            [e.id for e in events])

    def alert_at(self, t_s: float, interval_h: float) -> float | None:
        """The live alert probability for the interval holding `t_s` (None: no live
        alert covers it, the recorded series applies)."""
        best: float | None = None
        for t in self.alerts:
            if t <= t_s < t + interval_h * 3600.0 and (best is None or t > best):
                best = t
        return None if best is None else self.alerts[best][0]

    def copy(self) -> LiveBook:
        """An independent copy (events are immutable: the maps are copied, not them)."""
        return LiveBook(dict(self.events), dict(self.alerts), self.version,
                        dict(self.listed))

    def snapshot(self) -> dict[str, Any]:
        """The book as JSON-ready data (journaled with each cycle)."""
        return {
            "events": [
                {"id": e.id, "start_s": e.start_s, "end_s": e.end_s, "called_s": e.called_s,
                 "max_draw_kw": e.max_draw_kw, "sent_s": e.sent_s, "received_s": e.received_s,
                 "cancelled_s": e.cancelled_s, "content": list(e.content)}
                for e in self.events.values()],
            "alerts": [[t, *v] for t, v in self.alerts.items()],
        }

    @staticmethod
    def from_snapshot(data: Mapping[str, Any]) -> LiveBook:
        """The book a `snapshot` describes."""
        book = LiveBook()
        for e in data.get("events", []):
            c = e["content"]
            book.events[str(e["id"])] = LiveEvent(
                str(e["id"]), float(e["start_s"]), float(e["end_s"]), float(e["called_s"]),
                None if e["max_draw_kw"] is None else float(e["max_draw_kw"]),
                float(e["sent_s"]), float(e["received_s"]),
                None if e["cancelled_s"] is None else float(e["cancelled_s"]),
                (float(c[0]), float(c[1]), None if c[2] is None else float(c[2]),
                 None if c[3] is None else float(c[3]), str(c[4])))
        for row in data.get("alerts", []):
            book.alerts[float(row[0])] = (float(row[1]), float(row[2]), float(row[3]))
        book.version = 1
        return book


def credit_hours(credit: CurtailmentCredit) -> npt.NDArray[np.bool_]:
    """The credit's hours as a (7, 24) table, Monday first: True where it is paid."""
    table = np.zeros((7, 24), dtype=bool)
    for hours in credit.hours:
        for day in hours.days:
            table[WEEKDAYS.index(day), hours.start_hour:hours.end_hour] = True
    return table


def tou_schedule(price: TimeOfUsePrice) -> F64:
    """The weekly schedule as a (7, 24) table of USD/MWh, Monday first."""
    table = np.full((7, 24), float(price.default_usd_mwh))
    for period in price.periods:  # later periods override earlier ones
        for day in period.days:
            table[WEEKDAYS.index(day), period.start_hour:period.end_hour] = period.usd_mwh
    return table


def hours_in_month(local: datetime) -> float:
    """Hours of the local calendar month `local` falls in."""
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return (nxt - first).total_seconds() / 3600.0


@dataclass
class ContractBook:
    """Each site's contract and what it remembers (the month-to-date peak)."""

    sites: Sequence[Site]
    alerts: Mapping[str, AlertSeries] = field(default_factory=dict)
    #: Each site's demand-response events, by site name.
    events: Mapping[str, EventCalendar] = field(default_factory=dict)
    #: False: the decision sees the contract's price but none of its programs (demand
    #: charge, coincident peak, demand-response events), which are still billed: the
    #: backtest's "programs ignored" comparison.
    programs: bool = True
    #: Each site's events and alerts from live sources, by site name (the runtime
    #: installs a copy before each decision; a journal replay, the one journaled).
    live: dict[str, LiveBook] = field(default_factory=dict)
    #: Per site, the labels of the events the last `event_caps` found in force.
    in_force: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Per site, whether the last `event_caps` lets the cap shed protected AI leases (an
    #: event in force under `over_leases`); None: at no site.
    lease_shed: npt.NDArray[np.bool_] | None = None
    _live_cache: dict[str, tuple[LiveBook, int, EventCalendar]] = field(
        default_factory=dict, repr=False)
    _peak_kw: F64 = field(init=False, repr=False)
    _peak_month: list[tuple[int, int]] = field(init=False, repr=False)
    _tou: dict[int, F64] = field(init=False, repr=False)
    _credit: dict[int, npt.NDArray[np.bool_]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._peak_kw = np.zeros(len(self.sites))
        self._peak_month = [(0, 0)] * len(self.sites)
        self._tou = {
            j: tou_schedule(s.contract.price)
            for j, s in enumerate(self.sites)
            if s.contract is not None and isinstance(s.contract.price, TimeOfUsePrice)
        }
        self._credit = {
            j: credit_hours(s.contract.curtailment_credit)
            for j, s in enumerate(self.sites)
            if s.contract is not None and s.contract.curtailment_credit is not None
        }

    def credit_hour(self, j: int, local: datetime) -> bool:
        """Whether site `j`'s curtailment credit is paid in the local hour `local`."""
        table = self._credit.get(j)
        return table is not None and bool(table[local.weekday(), local.hour])

    @staticmethod
    def for_sites(sites: Sequence[Site], alerts: Mapping[str, AlertSeries],
                  events: Mapping[str, EventCalendar] | None = None,
                  programs: bool = True) -> ContractBook | None:
        """A book for `sites`, or None when no site's contract changes anything (the
        score pass then runs exactly as without contracts)."""
        if all(s.contract is None or s.contract.is_plain_spot for s in sites):
            return None
        return ContractBook(sites, alerts, events or {}, programs, {
            s.name: LiveBook() for s in sites if s.contract is not None and s.contract.live})

    def live_calendar(self, site: Site) -> EventCalendar | None:
        """Site's live events as a calendar (None: no live events)."""
        book = self.live.get(site.name)
        dr = _demand_response(site)
        if book is None or not book.events or dr is None:
            return None
        cached = self._live_cache.get(site.name)
        if cached is None or cached[0] is not book or cached[1] != book.version:
            cached = (book, book.version, book.calendar(dr.response_min * 60.0))
            self._live_cache[site.name] = cached
        return cached[2]

    def event_caps(self, now_s: float, interval_s: float,
                   cap_w: F64) -> tuple[F64 | None, tuple[str, ...]]:
        """Per site, the power cap (W) of a decision at `now_s` with the demand-response
        events in force, recorded or live (None: no event is), and a note naming the
        program where one caps the site ('' elsewhere)."""
        self.in_force = {}
        self.lease_shed = None
        if not self.programs or not (self.events or self.live):
            return None, ()
        out: F64 | None = None
        notes = [""] * len(self.sites)
        for j, site in enumerate(self.sites):
            dr = _demand_response(site)
            if dr is None:
                continue
            found = []
            # Shed `lead_min` earlier than the next decision would be too late: the
            # time the site's actuation (a ramp) needs to reach the level by the due time.
            ahead_s = max(interval_s, 0.0) + dr.lead_min * 60.0
            for calendar in (self.events.get(site.name), self.live_calendar(site)):
                if calendar is None:
                    continue
                # Every event the window reaches: a stricter one due soon binds
                # even while a looser one is in force.
                for e in calendar.all_in_force(now_s, ahead_s).tolist():
                    found.append((calendar.limit(e, dr.max_draw_kw), calendar, e))
            if not found:
                continue
            limit_kw, calendar, e = min(found, key=lambda x: x[0])
            if out is None:
                out = np.array(np.broadcast_to(cap_w, (len(self.sites),)), dtype=np.float64)
            out[j] = min(float(out[j]), limit_kw * 1000.0)
            if dr.over_leases:
                if self.lease_shed is None:
                    self.lease_shed = np.zeros(len(self.sites), dtype=np.bool_)
                self.lease_shed[j] = True
            self.in_force[site.name] = tuple(
                c.label(k) or f"calendar {_utc(c.due_s[k])}" for _, c, k in found)
            label = calendar.label(e)
            notes[j] = (f"{dr.program} event {label + ' ' if label else ''}called "
                        f"{_utc(calendar.called_s[e])}, due "
                        f"{_utc(calendar.due_s[e])} until {_utc(calendar.end_s[e])}: site "
                        f"capped at {limit_kw:,.0f} kW"
                        + (", before AI leases" if dr.over_leases else ""))
        return out, tuple(notes)

    def peaks_kw(self, now_s: float) -> list[float]:
        """Each site's month-to-date peak as it stands for a decision at `now_s` (0 for a
        site whose remembered peak is of another month), kW."""
        out = []
        for j, site in enumerate(self.sites):
            local = datetime.fromtimestamp(now_s, site.zone)
            same = self._peak_month[j] == (local.year, local.month)
            out.append(float(self._peak_kw[j]) if same else 0.0)
        return out

    def restore_peaks(self, now_s: float, peaks_kw: Sequence[float]) -> None:
        """Continue from the peaks `peaks_kw` (one per site) of `now_s`'s month: after a
        restart, or to decide a journaled cycle again."""
        if len(peaks_kw) != len(self.sites):
            return  # journaled for another set of sites: start afresh
        for j, site in enumerate(self.sites):
            local = datetime.fromtimestamp(now_s, site.zone)
            self._peak_month[j] = (local.year, local.month)
            self._peak_kw[j] = float(peaks_kw[j])

    def energy_usd_mwh(self, j: int, local: datetime, spot: float) -> float:
        """What site `j` pays per MWh it draws at `local` (before adders and charges)."""
        contract = self.sites[j].contract
        price = "spot" if contract is None else contract.price
        if isinstance(price, FixedPrice):
            return price.usd_mwh
        if isinstance(price, TimeOfUsePrice):
            return float(self._tou[j][local.weekday(), local.hour])
        return spot

    def score_prices(
        self, now_s: float, spot_usd_mwh: F64, fleet: FleetTable
    ) -> tuple[F64, tuple[str, ...]]:
        """Per site: the USD/MWh the score table prices a node's draw at, and a note
        naming each program that added to it ('' where none did). Updates the
        month-to-date peak with the site's draw now."""
        site_kw = site_draw_kw(fleet)
        out = np.array(spot_usd_mwh, dtype=np.float64, copy=True)
        notes: list[str] = []
        for j, site in enumerate(self.sites):
            contract = site.contract
            if contract is None or contract.is_plain_spot:
                notes.append("")
                continue
            local = datetime.fromtimestamp(now_s, site.zone)
            kw = float(site_kw[j]) if j < site_kw.shape[0] else 0.0
            self._observe(j, local, kw)
            price, note = self._site_price(j, contract, local, float(spot_usd_mwh[j]), kw, now_s)
            out[j] = price
            notes.append(note)
        return out, tuple(notes)

    def _observe(self, j: int, local: datetime, kw: float) -> None:
        month = (local.year, local.month)
        if self._peak_month[j] != month:
            self._peak_month[j], self._peak_kw[j] = month, 0.0
        self._peak_kw[j] = max(self._peak_kw[j], kw)

    def _site_price(self, j: int, contract: PowerContract, local: datetime, spot: float,
                    kw: float, now_s: float) -> tuple[float, str]:
        parts = []
        price = contract.price
        if isinstance(price, FixedPrice) and price.resale_at_spot:
            energy = spot
            parts.append(f"fixed {price.usd_mwh:g} USD/MWh resold at spot {spot:.2f}: "
                         f"using a MWh forgoes its resale")
        elif isinstance(price, FixedPrice):
            energy = price.usd_mwh
            parts.append(f"fixed contract {energy:g} USD/MWh")
        elif isinstance(price, TimeOfUsePrice):
            energy = self.energy_usd_mwh(j, local, spot)
            parts.append(f"time-of-use {energy:g} USD/MWh ({WEEKDAYS[local.weekday()]} "
                         f"{local.hour:02d}:00 local)")
        else:
            energy = spot
        total = energy
        rate = contract.demand_charge_usd_per_kw_month if self.programs else 0.0
        peak = float(self._peak_kw[j])
        if rate > 0 and peak > 0 and kw >= (1.0 - contract.demand_near_peak_share) * peak:
            add = econ.demand_charge_marginal_usd_mwh(rate, hours_in_month(local))
            total += add
            parts.append(f"demand charge at the month-to-date peak {peak:,.0f} kW "
                         f"(+{add:.2f} USD/MWh)")
        if not self.programs:  # priced as if the site had no programs (still billed)
            note = "power cost includes " + "; ".join(parts) if parts else ""
            return total, note
        credit = contract.curtailment_credit
        if credit is not None and credit.usd_mwh > 0 and self.credit_hour(j, local):
            total += credit.usd_mwh
            parts.append(f"curtailment credit {credit.usd_mwh:g} USD/MWh forgone by drawing "
                         f"({WEEKDAYS[local.weekday()]} {local.hour:02d}:00 local)")
        cp = contract.coincident_peak
        if cp is not None and local.month in cp.months:
            series = self.alerts.get(self.sites[j].name)
            book = self.live.get(self.sites[j].name)
            live_p = None if book is None else book.alert_at(now_s, cp.alert_interval_h)
            p = live_p if live_p is not None else (
                series.at(now_s) if series is not None else 0.0)
            if p > 0:
                interval_h = (series.interval_h if series is not None and live_p is None
                              else cp.alert_interval_h)
                add = float(econ.coincident_peak_expected_usd_mwh(
                    p, cp.usd_per_kw, cp.peak_intervals, interval_h))
                total += add
                parts.append(f"coincident-peak alert p={p:.2f} (+{add:,.0f} USD/MWh, "
                             f"{add * kw / 1000.0:,.0f} USD/h at {kw:,.0f} kW)")
        note = "power cost includes " + "; ".join(parts) if parts else ""
        return total, note


def site_draw_kw(fleet: FleetTable) -> F64:
    """Each site's draw now, kW: every node at its current mode's watts."""
    watts = fleet.statics.watts_by_mode
    node_w = np.take_along_axis(watts, fleet.mode.astype(np.intp)[None, :], axis=0)[0]
    kw: F64 = np.bincount(fleet.site.astype(np.intp), weights=node_w,
                          minlength=len(fleet.sites)) / 1000.0
    return kw


def _demand_response(site: Site) -> DemandResponse | None:
    return None if site.contract is None else site.contract.demand_response


def _utc(t_s: float) -> str:
    return datetime.fromtimestamp(float(t_s), UTC).strftime("%Y-%m-%d %H:%M UTC")


def join_notes(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    """Two per-site note lists as one ('' where neither has a note)."""
    if not b:
        return tuple(a)
    if not a:
        return tuple(b)
    return tuple("; ".join(x for x in pair if x) for pair in zip(a, b, strict=True))
