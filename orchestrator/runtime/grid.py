"""Live grid signals in the controller: poll, receive, journal, acknowledge.

Each site whose contract has a `live:` block gets its sources: a watched file and a
polled URL, read at the start of each cycle, and the webhook (`POST /grid/events` on the
controller's HTTP port, bearer token), read when a message arrives. Every message
received is written to `grid_signals.jsonl` in the journal folder before it is used (a
restart folds the same messages in again, in order) and folded into the site's
`LiveBook`; each cycle's decision sees a copy of the books taken at its start, which its
journal record carries (`hashpivot backtest --journal` decides with the same events).
A file or URL publishes the site's current events, so one it stops listing ends when the
message without it arrives; a webhook message changes only the events it names.

After each decision the events in force are compared with the previous cycle's: an
event that started or ended is acknowledged with a log line, a journal line, a metric,
a Kubernetes Event (live, where the controller writes Events) and, with `ack_url`, a
POST. Nothing a source sends can stop a cycle: every failure is one log line and a
metric, and the last known events stay.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.adapters.grid.sources import (
    FileSource,
    GridSignalError,
    UrlSource,
    parse_message,
    post_ack,
)
from orchestrator.engine.contracts import ContractBook, LiveBook
from orchestrator.errors import ConfigError
from orchestrator.models.config import HashpivotConfig, base_dir
from orchestrator.models.contract import GridMessage, LiveSignals
from orchestrator.models.feeds_config import HeaderSecret
from orchestrator.runtime.metrics import ControllerMetrics

log = logging.getLogger("hashpivot.grid")

SIGNALS_FILE = "grid_signals.jsonl"
WEBHOOK_PATH = "/grid/events"


@dataclass
class _Site:
    name: str
    live: LiveSignals
    sources: list[FileSource | UrlSource] = field(default_factory=list)
    #: Last error text per source, so a source that stays broken logs once per change.
    failing: dict[str, str] = field(default_factory=dict)


def read_token(secret: HeaderSecret) -> str | None:
    """The webhook's token as it stands now (None: unset or unreadable)."""
    if secret.env is not None:
        value = os.environ.get(secret.env)
    else:
        assert secret.file is not None
        try:
            value = Path(secret.file).read_text(encoding="utf-8")
        except OSError:
            return None
    value = None if value is None else value.strip()
    return value or None


class GridSignals:
    """The live signals of every site with a `live:` block. Thread-safe: the webhook
    arrives on the HTTP server's threads, polls and decisions on the cycle's."""

    def __init__(self, config: HashpivotConfig, contracts: ContractBook, folder: Path,
                 metrics: ControllerMetrics | None, now_s: Callable[[], float]):
        self.contracts = contracts
        self.path = Path(folder) / SIGNALS_FILE
        self.metrics = metrics
        self.now_s = now_s
        self._lock = threading.Lock()
        self.books: dict[str, LiveBook] = {}
        self.sites: dict[str, _Site] = {}
        #: Per site, the event labels in force at the last decision (for acknowledgements).
        self.in_force: dict[str, tuple[str, ...]] = {}
        #: Kubernetes Events for acknowledgements: (reason, note) → None (live only).
        self.event_sink: Callable[[str, str], None] | None = None
        root = base_dir(config)
        for site in config.sites:
            live = None if site.contract is None else site.contract.live
            if live is None:
                continue
            entry = _Site(site.name, live)
            if live.file is not None:
                path = Path(live.file)
                entry.sources.append(FileSource(path if path.is_absolute() else root / path,
                                                live.max_bytes))
            if live.url is not None:
                try:
                    live.http.check_url(live.url, where="live")
                except ValueError as exc:
                    raise ConfigError(str(exc), field=f"sites.{site.name}.contract.live.url"
                                      ) from None
                entry.sources.append(UrlSource(live))
            if live.webhook is not None and read_token(live.webhook.token) is None:
                secret = live.webhook.token
                where = (f"environment variable {secret.env}" if secret.env
                         else f"file {secret.file}")
                raise ConfigError(f"the webhook token cannot be read ({where} is unset, "
                                  "empty or unreadable)",
                                  field=f"sites.{site.name}.contract.live.webhook.token")
            self.sites[site.name] = entry
            self.books[site.name] = LiveBook()
        self._restore()
        self._install()

    @property
    def webhook_sites(self) -> list[str]:
        return [name for name, s in self.sites.items() if s.live.webhook is not None]

    # --- journal -------------------------------------------------------------------------
    def _write(self, payload: Mapping[str, Any]) -> None:
        line = json.dumps(payload, separators=(",", ":"), default=str) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _restore(self) -> None:
        """Fold in every message journaled before a restart, and the acknowledged state."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
        for i, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                kind = row.get("kind")
                if kind == "signal" and row.get("site") in self.books:
                    message = GridMessage.model_validate(row["message"])
                    lists = str(row["source"]) if row.get("lists") else None
                    self.books[row["site"]].apply(message, float(row["received_s"]), lists)
                elif kind == "ack" and row.get("site") in self.books:
                    self.in_force[row["site"]] = tuple(row.get("in_force", ()))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                log.warning("%s line %d: unreadable (%s); skipped", self.path, i,
                            type(exc).__name__)
        known = sum(len(b.events) for b in self.books.values())
        if known:
            log.info("grid signals: %d live event(s) restored from %s", known, self.path)

    # --- receiving -----------------------------------------------------------------------
    def _receive(self, site: str, source: str, message: GridMessage,
                 received_s: float, lists: bool = False) -> list[tuple[str, str]]:
        """Journal, then fold in (the caller holds the lock). `lists`: the message comes
        from a polled source and lists every event it stands by (one it listed before
        and no longer does is withdrawn). OSError: not journaled, not used."""
        self._write({"kind": "signal", "site": site, "source": source,
                     "received_s": received_s, "message": message.model_dump(mode="json"),
                     **({"lists": True} if lists else {})})
        outcomes = self.books[site].apply(message, received_s, source if lists else None)
        for what, outcome in outcomes:
            self._count(site, source, outcome)
            if outcome != "duplicate":
                log.info("grid signal for %s from %s: %s %s", site, source, what, outcome)
        return outcomes

    def _fail(self, entry: _Site, source: str, exc: GridSignalError) -> None:
        self._count(entry.name, source, f"error_{exc.reason}")
        if entry.failing.get(source) != str(exc):
            log.warning("grid signal for %s not used, last known events kept: %s",
                        entry.name, exc)
            entry.failing[source] = str(exc)

    def _count(self, site: str, source: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.grid_signals.labels(site, source, outcome).inc()

    def poll(self, now_s: float) -> None:
        """Read every file and due URL, fold in what changed, and hand the decision a
        copy of the books. Never raises for what a source sent or failed to send."""
        for entry in self.sites.values():
            for src in entry.sources:
                kind = src.name.split(" ")[0]
                try:
                    body = src.poll()
                    if body is None:
                        continue
                    message = parse_message(body, source=src.name,
                                            max_bytes=entry.live.max_bytes)
                    self._check_site(message, entry.name, src.name)
                except GridSignalError as exc:
                    self._fail(entry, kind, exc)
                    continue
                except Exception as exc:  # a source must never stop a cycle
                    self._fail(entry, kind, GridSignalError(
                        "malformed", f"{src.name}: {type(exc).__name__}: {exc}"))
                    continue
                entry.failing.pop(kind, None)
                with self._lock:
                    try:
                        self._receive(entry.name, kind, message, now_s, lists=True)
                    except OSError as exc:
                        log.error("grid signal for %s from %s not journaled, not used: %s",
                                  entry.name, src.name, exc.strerror)
                        if isinstance(src, FileSource):
                            src.forget()  # read it again next cycle
        self._install()

    @staticmethod
    def _check_site(message: GridMessage, site: str, source: str) -> None:
        if message.site is not None and message.site != site:
            raise GridSignalError("wrong_site", f"{source}: the message is for site "
                                                f"{message.site!r}, the source is {site!r}'s")

    def _install(self) -> None:
        """Hand the decision a copy of each book that changed since the last install."""
        with self._lock:
            live = dict(self.contracts.live)
            for name, book in self.books.items():
                seen = live.get(name)
                if seen is None or seen.version != book.version:
                    live[name] = book.copy()
            self.contracts.live = live

    def snapshot(self) -> dict[str, Any]:
        """The books the last decision saw (journaled with its cycle)."""
        return {k: b.snapshot() for k, b in self.contracts.live.items()}

    # --- the webhook ---------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header carries a webhook's token (any site's)."""
        if not header or not header.startswith("Bearer "):
            return False
        given = header[len("Bearer "):].strip().encode()
        ok = False
        for name in self.webhook_sites:
            hook = self.sites[name].live.webhook
            assert hook is not None
            token = read_token(hook.token)
            if token is not None and hmac.compare_digest(given, token.encode()):
                ok = True
        return ok

    @property
    def max_bytes(self) -> int:
        return max((self.sites[n].live.max_bytes for n in self.webhook_sites), default=0)

    def webhook(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """Handle one POST: (HTTP status, JSON answer). 401 and nothing recorded without
        the token; 400 for a body that is not a usable message; 200 with each event's
        outcome and state once it is journaled and known."""
        if not self.authorized(authorization):
            self._count("-", "webhook", "unauthorized")
            log.warning("grid webhook: call without a valid bearer token refused")
            return 401, {"error": "a valid bearer token is required"}
        sites = self.webhook_sites
        try:
            message = parse_message(body, source="webhook", max_bytes=self.max_bytes)
            site = message.site or (sites[0] if len(sites) == 1 else None)
            if site is None or site not in sites:
                raise GridSignalError("wrong_site", "webhook: site: "
                                      + ("needed (several sites take webhook messages)"
                                         if site is None else f"{site!r} takes no webhook "
                                         "messages"))
            hook = self.sites[site].live.webhook
            assert hook is not None
            token = read_token(hook.token) or ""
            given = (authorization or "")[len("Bearer "):].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                self._count(site, "webhook", "unauthorized")
                return 401, {"error": f"the bearer token is not site {site!r}'s"}
        except GridSignalError as exc:
            self._count("-", "webhook", f"error_{exc.reason}")
            log.warning("grid webhook: message refused: %s", exc)
            return 400, {"error": str(exc)}
        with self._lock:
            received = self.now_s()
            try:
                outcomes = self._receive(site, "webhook", message, received)
            except OSError as exc:
                log.error("grid webhook message for %s not journaled, not used: %s", site,
                          exc.strerror)
                return 503, {"error": "not journaled; send again"}
            book = self.books[site]
            events = []
            for what, outcome in outcomes:
                e = book.events.get(what)
                state: dict[str, Any] = {"id": what, "outcome": outcome}
                if e is not None:
                    state.update(start_s=e.start_s, end_s=e.until_s, called_s=e.called_s,
                                 max_draw_kw=e.max_draw_kw,
                                 status="cancelled" if e.cancelled_s is not None else "active")
                events.append(state)
        return 200, {"site": site, "received_s": received, "results": events}

    # --- acknowledgements ----------------------------------------------------------------
    def acknowledge(self, decision_id: str, now_s: float) -> None:
        """Acknowledge the events that started or ended with this decision."""
        current = dict(self.contracts.in_force)
        for site in sorted(set(current) | set(self.in_force)):
            before, after = set(self.in_force.get(site, ())), set(current.get(site, ()))
            changes = [("started", x) for x in sorted(after - before)]
            changes += [("ended", x) for x in sorted(before - after)]
            if not changes:
                continue
            for what, label in changes:
                text = f"grid event {label} {what} at site {site} (decision {decision_id})"
                log.info(text)
                if self.metrics is not None:
                    self.metrics.grid_acks.labels(site, what).inc()
                if self.event_sink is not None:
                    try:
                        self.event_sink("GridEvent" + what.capitalize(), text)
                    except Exception as exc:  # Events are for people; a cycle goes on
                        log.warning("grid event acknowledgement not written: %s", exc)
                self._post_ack(site, {"site": site, "event": label, "state": what,
                                      "decision_id": decision_id, "at_s": now_s})
            try:
                self._write({"kind": "ack", "site": site, "decision_id": decision_id,
                             "now_s": now_s, "changes": changes,
                             "in_force": sorted(after)})
            except OSError as exc:
                log.error("grid acknowledgement not journaled: %s", exc.strerror)
        self.in_force = current

    def _post_ack(self, site: str, payload: Mapping[str, Any]) -> None:
        entry = self.sites.get(site)
        if entry is None or entry.live.ack_url is None:
            return
        try:
            post_ack(entry.live, payload)
        except GridSignalError as exc:
            self._count(site, "ack", f"error_{exc.reason}")
            log.warning("grid acknowledgement POST failed: %s", exc)

    def close(self) -> None:
        for entry in self.sites.values():
            for src in entry.sources:
                if isinstance(src, UrlSource):
                    src.close()

