"""`LiveMarketSource`: the `MarketSource` port backed by live public APIs.

Each poll reads every feed, passes each value through the data-quality rules and keeps
the last good one with its original observation time. A snapshot is built only from
last good values. When a value is older than its feed's time-to-live the snapshot is
refused with `MarketStaleError` (it carries the last good snapshot for the journal):
the controller's safe state is to hold every node as it is, never to idle or
mass-switch them because a feed went quiet. The engine's own stale-data guard
(`guards.stale_after_s`) stays in force behind it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import httpx
import numpy as np

from orchestrator.adapters.market.chain import ChainFeed, ChainReading, chain_feed
from orchestrator.adapters.market.gpu import FixedGpuFeed, GpuFeed, JsonGpuFeed, JsonHashpowerFeed
from orchestrator.adapters.market.http import FeedHttpClient, Sleep
from orchestrator.adapters.market.parse import brief
from orchestrator.adapters.market.power import PowerFeed, power_feed
from orchestrator.adapters.market.price import PriceFeed, price_feed
from orchestrator.adapters.market.quality import (
    DIFFICULTY_REL_TOL,
    RELATIVE_RULES,
    Candidate,
    DataQuality,
    FeedRejectError,
    FeedStatus,
    Quote,
    Reject,
    RejectHook,
    combine_quotes,
)
from orchestrator.economics import (
    DIFFICULTY_ADJUSTMENT_BLOCKS,
    hashprice_usd_per_ph_day,
    subsidy_btc_at_height,
)
from orchestrator.errors import FeedError
from orchestrator.framework.context import MarketHistory
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.models.market import MarketSnapshot, Observed

log = logging.getLogger("hashpivot.feeds")

BTC_USD = "btc_usd"
DIFFICULTY = "difficulty"
BLOCK_HEIGHT = "block_height"
FEES = "fees_btc_per_block"
SUBSIDY = "subsidy_btc"
POWER = "power_usd_mwh"
GPU = "gpu_usd_per_gpu_hour"
HASHPOWER = "hashpower_btc_per_unit_day"
CORE_FEEDS = (BTC_USD, DIFFICULTY, FEES, SUBSIDY)

_T = TypeVar("_T")


class MarketStaleError(FeedError):
    """A value is older than its feed's time-to-live: hold every node as it is.

    `snapshot` is the last good market (for the journal and status), `stale` maps each
    stale feed to its age in seconds.
    """

    def __init__(self, stale: Mapping[str, float], snapshot: MarketSnapshot) -> None:
        self.stale = dict(stale)
        self.snapshot = snapshot
        parts = ", ".join(f"{k} ({v:.0f} s old)" for k, v in sorted(self.stale.items()))
        super().__init__(f"market data past its time-to-live: {parts}; holding all nodes")


@dataclass(slots=True)
class RefreshReport:
    """What one poll changed: feeds with a newly accepted value, and every refusal."""

    now_s: float
    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)


class LiveMarketSource:
    """Live market data behind the `MarketSource` port (see the module docstring)."""

    def __init__(
        self,
        config: LiveMarketConfig,
        *,
        chain: Sequence[ChainFeed],
        prices: Sequence[PriceFeed],
        power: Mapping[str, PowerFeed],
        gpu: Sequence[GpuFeed] = (),
        gpu_fixed: Mapping[str, float] | None = None,
        on_reject: RejectHook | None = None,
        http: FeedHttpClient | None = None,
        hashpower: Sequence[JsonHashpowerFeed] = (),
    ) -> None:
        self.config = config
        self.chain = list(chain)
        self.prices = list(prices)
        self.power = dict(power)
        self.gpu = list(gpu)
        self.gpu_fixed = FixedGpuFeed(
            config.gpu_usd_per_gpu_hour_fixed if gpu_fixed is None else gpu_fixed
        )
        self.hashpower = list(hashpower)
        # Fixed hashpower prices hold now, like fixed GPU prices.
        self.hashpower_fixed = FixedGpuFeed(config.hashpower_btc_per_unit_day_fixed)
        self._live_hashpower: set[str] = set()
        self.quality = DataQuality(config, on_reject=self._count)
        self.quality.source_counts = {BTC_USD: len(self.prices), DIFFICULTY: len(self.chain)}
        self._hook = on_reject
        self._http = http
        self._report: RefreshReport | None = None
        self._last_refresh_s: float | None = None
        self._live_gpu_models: set[str] = set()
        # Per poll: time, hashprice, BTC price, difficulty, each power site's price.
        self._history: deque[tuple[float, float, float, float, tuple[float, ...]]] = deque(
            maxlen=config.history_max_points)
        # Per site: when its feed last published prices for later intervals, and those
        # (interval start, USD/MWh), from its last accepted reading.
        self._ahead: dict[str, tuple[float, tuple[tuple[float, float], ...]]] = {}

    @classmethod
    def from_config(
        cls,
        config: LiveMarketConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        on_reject: RejectHook | None = None,
    ) -> LiveMarketSource:
        """Feeds as configured, sharing one HTTP client (`transport` for tests)."""
        http = FeedHttpClient(config.http, transport=transport, sleep=sleep, rng=rng)
        return cls(
            config,
            chain=[
                chain_feed(s, http, window=config.fees_window_blocks) for s in config.chain_sources
            ],
            prices=[price_feed(s, http) for s in config.price_sources],
            power={site: power_feed(s, http) for site, s in config.power_by_site().items()},
            gpu=[JsonGpuFeed(s, http) for s in config.gpu_sources],
            on_reject=on_reject,
            http=http,
            hashpower=[JsonHashpowerFeed(s, http) for s in config.hashpower_sources],
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    # -- polling ---------------------------------------------------------------------

    def _count(self, feed: str, reason: Reject, detail: str) -> None:
        if self._report is not None:
            self._report.rejected.append((feed, reason.value, detail))
        if self._hook is not None:
            self._hook(feed, reason, detail)

    def _offer(self, feed: str, cand: Candidate, now_s: float) -> Reject | None:
        # A server clock a little ahead (within the allowed skew) cannot make a value
        # newer than the moment it was fetched.
        if cand.observed_s > now_s and math.isfinite(cand.observed_s):
            skew = cand.observed_s - now_s
            if skew <= self.config.max_clock_skew_s:
                cand = replace(cand, observed_s=now_s)
        problem = self.quality.offer(feed, cand, now_s)
        if problem is None and self._report is not None:
            self._report.accepted.append(feed)
        return problem

    def _fail(self, feed: str, exc: FeedRejectError) -> None:
        self.quality.reject(feed, exc.reason, exc.detail, source=exc.source)

    def _read(self, source: str, read: Callable[[float], _T], now_s: float) -> _T:
        """One source's read. Whatever its answer makes a parser raise becomes a refusal
        with a reason (FeedRejectError): nothing a remote server sends may stop a cycle."""
        try:
            return read(now_s)
        except FeedRejectError:
            raise
        except Exception as exc:  # the boundary between a server's answer and a cycle
            log.error("feed %s: unexpected %s reading its answer", source, type(exc).__name__)
            raise FeedRejectError(
                Reject.MALFORMED, f"{type(exc).__name__}: {brief(str(exc))}", source=source
            ) from None

    def refresh(self, now_s: float) -> RefreshReport:
        """Poll every feed once and keep what passes the rules."""
        self._report = report = RefreshReport(now_s)
        try:
            self._refresh_chain(now_s)
            self._refresh_price(now_s)
            waiting = self.quality.awaiting_price()
            if waiting is not None:  # a first difficulty the price can check now
                self._offer(DIFFICULTY, waiting, now_s)
            self._refresh_power(now_s)
            self._refresh_gpu(now_s)
            self._refresh_hashpower(now_s)
            self._record_history(now_s)
        finally:
            self._report = None
            self._last_refresh_s = now_s
        return report

    def _refresh_chain(self, now_s: float) -> None:
        todo = {DIFFICULTY, BLOCK_HEIGHT, FEES}
        refused: Candidate | None = None  # a difficulty a relative rule refused
        for feed in self.chain:
            if not todo:
                break
            try:
                reading = self._read(feed.name, feed.read, now_s)
            except FeedRejectError as exc:
                self._fail("chain", exc)
                continue
            for failure in reading.problems:
                self._fail("chain", failure)
            if (
                BLOCK_HEIGHT in todo
                and reading.height is not None
                and self._offer_height(reading, now_s)
            ):
                todo.discard(BLOCK_HEIGHT)
            if DIFFICULTY in todo and reading.difficulty is not None:
                cand = Candidate(
                    reading.difficulty,
                    reading.source,
                    reading.observed_s,
                    height=reading.height,
                    # The source's own hashrate agreed with it (a unit error would not).
                    checked=reading.hashrate_hs is not None,
                )
                if refused is not None and _same_difficulty(refused, cand):
                    # A second source agrees with the refused value: it is the truth.
                    cand = Candidate(
                        cand.value,
                        f"{refused.source}+{cand.source}",
                        min(refused.observed_s, cand.observed_s),
                        height=cand.height,
                        confirmations=2,
                    )
                problem = self._offer(DIFFICULTY, cand, now_s)
                if problem is None:
                    todo.discard(DIFFICULTY)
                elif problem in RELATIVE_RULES and refused is None:
                    refused = cand
            if FEES in todo and reading.fees_btc_per_block is not None:
                cand = Candidate(
                    reading.fees_btc_per_block,
                    f"{reading.source}:{reading.fees_method}",
                    reading.observed_s,
                )
                if self._offer(FEES, cand, now_s) is None:
                    todo.discard(FEES)

    def _offer_height(self, reading: ChainReading, now_s: float) -> bool:
        assert reading.height is not None
        height = reading.height
        cand = Candidate(float(height), reading.source, reading.observed_s, height=height)
        if self._offer(BLOCK_HEIGHT, cand, now_s) is not None:
            return False
        subsidy = Candidate(
            subsidy_btc_at_height(height),
            f"{reading.source}:height {height}",
            reading.observed_s,
            height=height,
        )
        self._offer(SUBSIDY, subsidy, now_s)
        return True

    def _refresh_price(self, now_s: float) -> None:
        quotes: list[Quote] = []
        ttl = self.quality.ttl_s(BTC_USD)
        for feed in self.prices:
            try:
                quote = self._read(feed.name, feed.quote, now_s)
            except FeedRejectError as exc:
                self._fail(BTC_USD, exc)
                continue
            if now_s - quote.observed_s > ttl:
                # A frozen ticker would drag the median's time (and value) into the past.
                age = now_s - quote.observed_s
                self.quality.reject(
                    BTC_USD, Reject.TOO_OLD, f"quote {age:.0f} s old", source=quote.source
                )
                continue
            quotes.append(quote)
        last = self.quality.last_good(BTC_USD)
        cand, dropped = combine_quotes(
            quotes,
            agreement=self.config.price_agreement,
            last_good=None if last is None else last.value,
        )
        for quote, reason, detail in dropped:
            self.quality.reject(BTC_USD, reason, detail, source=quote.source)
        if cand is not None:
            self._offer(BTC_USD, cand, now_s)

    def _refresh_power(self, now_s: float) -> None:
        for site, feed in self.power.items():
            try:
                cand = self._read(feed.name, feed.read, now_s)
            except FeedRejectError as exc:
                self._fail(f"{POWER}.{site}", exc)
                continue
            if self._offer(f"{POWER}.{site}", cand, now_s) is None:
                # What it publishes ahead goes with the price in force: taken with it, or
                # not at all (the last accepted reading's stand until then).
                ahead = self.quality.plausible_ahead(f"{POWER}.{site}", cand)
                self._ahead[site] = (now_s, ahead)  # known by this reading, at the latest

    def _refresh_gpu(self, now_s: float) -> None:
        live: dict[str, Candidate] = {}
        for feed in self.gpu:
            try:
                for model, cand in self._read(feed.name, feed.read, now_s).items():
                    live.setdefault(model, cand)
            except FeedRejectError as exc:
                self._fail(GPU, exc)
        self._live_gpu_models |= live.keys()
        fixed = {
            m: c
            for m, c in self.gpu_fixed.read(now_s).items()
            # Once a feed has priced a model, its fixed price no longer stands in: a dead
            # feed then shows as stale instead of silently reverting to the tariff.
            if m not in self._live_gpu_models
        }
        for model, cand in {**fixed, **live}.items():
            self._offer(f"{GPU}.{model}", cand, now_s)

    def _refresh_hashpower(self, now_s: float) -> None:
        live: dict[str, Candidate] = {}
        for feed in self.hashpower:
            try:
                for alg, cand in self._read(feed.name, feed.read, now_s).items():
                    live.setdefault(alg, cand)
            except FeedRejectError as exc:
                self._fail(HASHPOWER, exc)
        self._live_hashpower |= live.keys()
        # As for GPU prices: once priced live, a dead feed shows as stale, not as the
        # fixed price again.
        fixed = {
            a: c
            for a, c in self.hashpower_fixed.read(now_s).items()
            if a not in self._live_hashpower
        }
        for alg, cand in {**fixed, **live}.items():
            self._offer(f"{HASHPOWER}.{alg}", cand, now_s)

    def hashpower_algorithms(self) -> list[str]:
        """Algorithms a snapshot must price: fixed, mapped by a feed, or priced live."""
        algs = set(self.hashpower_fixed.prices) | self._live_hashpower
        for feed in self.hashpower:
            algs |= set(feed.source.algorithms.values())
        return sorted(algs)

    def _record_history(self, now_s: float) -> None:
        values = {f: self.quality.last_good(f) for f in (*CORE_FEEDS, self._history_power())}
        if any(v is None for v in values.values()):
            return
        v = {k: o.value for k, o in values.items() if o is not None}
        hp = float(hashprice_usd_per_ph_day(v[DIFFICULTY], v[BTC_USD], v[SUBSIDY], v[FEES]))
        if self._history and self._history[-1][0] >= now_s:
            return
        # A site without a good price yet is NaN in this row, not a reason to skip it.
        power = []
        for site in self.power_sites():
            last = self.quality.last_good(f"{POWER}.{site}")
            power.append(math.nan if last is None else last.value)
        self._history.append((now_s, hp, v[BTC_USD], v[DIFFICULTY], tuple(power)))

    def _history_power(self) -> str:
        sites = self.power_sites()
        site = "default" if "default" in sites else (sites[0] if sites else "default")
        return f"{POWER}.{site}"

    # -- the MarketSource port -------------------------------------------------------

    def power_sites(self) -> list[str]:
        return sorted(self.power)

    def gpu_models(self) -> list[str]:
        """Models a snapshot must price: fixed, mapped by a feed, or ever priced live."""
        models = set(self.gpu_fixed.prices) | self._live_gpu_models
        for feed in self.gpu:
            if isinstance(feed, JsonGpuFeed):
                models |= set(feed.source.models.values())
        return sorted(models)

    def required_feeds(self) -> list[str]:
        """Every value a snapshot must carry."""
        return [
            *CORE_FEEDS,
            *(f"{POWER}.{s}" for s in self.power_sites()),
            *(f"{GPU}.{m}" for m in self.gpu_models()),
            *(f"{HASHPOWER}.{a}" for a in self.hashpower_algorithms()),
        ]

    def last_good_snapshot(self) -> MarketSnapshot:
        """The last good value of every feed, however old. FeedError if one never came."""
        if not self.power:
            raise FeedError(
                "no power price source: set live_market.power_usd_mwh_fixed or "
                "live_market.power_sources"
            )
        good: dict[str, Observed] = {}
        missing = []
        for feed in self.required_feeds():
            value = self.quality.last_good(feed)
            if value is None:
                missing.append(feed)
            else:
                good[feed] = value
        if missing:
            problems = {f: self.quality.state(f).last_problem or "no answer yet" for f in missing}
            raise FeedError(f"no good market value yet for: {problems}")
        return MarketSnapshot(
            btc_usd=good[BTC_USD],
            difficulty=good[DIFFICULTY],
            fees_btc_per_block=good[FEES],
            subsidy_btc=good[SUBSIDY],
            power_usd_mwh={s: good[f"{POWER}.{s}"] for s in self.power_sites()},
            gpu_usd_per_gpu_hour={m: good[f"{GPU}.{m}"] for m in self.gpu_models()},
            hashpower_btc_per_unit_day={
                a: good[f"{HASHPOWER}.{a}"] for a in self.hashpower_algorithms()
            },
        )

    def snapshot(self, now_s: float) -> MarketSnapshot:
        """The last good values, polling first when the last poll is older than
        `poll_interval_s`. Raises FeedError when a value never came, and
        `MarketStaleError` when one is past its time-to-live."""
        if self._last_refresh_s is None or now_s - self._last_refresh_s >= (
            self.config.poll_interval_s
        ):
            self.refresh(now_s)
        snap = self.last_good_snapshot()
        stale = self.quality.stale(self.required_feeds(), now_s)
        if stale:
            raise MarketStaleError(stale, snap)
        return snap

    def history(self, now_s: float) -> MarketHistory:
        """One row per poll at or before `now_s`: what the poll held, all known then;
        then one row per later interval a power feed had published by then (a day-ahead
        market's coming hours), the other values carried from the last poll."""
        points = [p for p in self._history if p[0] <= now_s]
        if not points:
            return MarketHistory.empty()
        sites = tuple(self.power_sites())
        width = len(sites)
        rows = [(p[0], *p[1:4], p[4] if len(p[4]) == width else (math.nan,) * width, p[0])
                for p in points]
        rows += self._ahead_rows(now_s, sites, points[-1])
        arr = np.array([r[:4] for r in rows], dtype=np.float64)
        power = np.array([r[4] for r in rows], dtype=np.float64).reshape(len(rows), width)
        first = sites.index(self._history_power().removeprefix(f"{POWER}."))
        return MarketHistory(
            times_s=arr[:, 0].copy(),
            hashprice_usd_ph_day=arr[:, 1].copy(),
            power_usd_mwh=power[:, first].copy(),
            site_power_usd_mwh=power,
            btc_usd=arr[:, 2].copy(),
            difficulty=arr[:, 3].copy(),
            known_at_s=np.array([r[5] for r in rows], dtype=np.float64),
            site_names=sites,
        )

    def _ahead_rows(
        self, now_s: float, sites: tuple[str, ...],
        last: tuple[float, float, float, float, tuple[float, ...]],
    ) -> list[tuple[float, float, float, float, tuple[float, ...], float]]:
        """Rows for intervals after `now_s` whose prices some site's feed had published
        by `now_s` (NaN for sites that did not publish that interval)."""
        published = {site: (at_s, dict(rows)) for site, (at_s, rows) in self._ahead.items()
                     if at_s <= now_s}
        starts = sorted({t for _, rows in published.values() for t in rows if t > now_s})
        out = []
        for start in starts:
            prices = tuple(published[site][1].get(start, math.nan) if site in published
                           else math.nan for site in sites)
            at_s = max(at for at, rows in published.values() if start in rows)
            out.append((start, last[1], last[2], last[3], prices, at_s))
        return out

    def status(self, now_s: float) -> dict[str, FeedStatus]:
        """Per value: its age, staleness and counts (for `hashpivot status`). Failed
        fetches of whole sources are in `rejection_counts` ('chain', …)."""
        return self.quality.status(now_s, [*self.required_feeds(), BLOCK_HEIGHT])

    def rejection_counts(self) -> dict[str, dict[str, int]]:
        return self.quality.rejection_counts()


def _same_difficulty(a: Candidate, b: Candidate) -> bool:
    if (
        a.height is not None
        and b.height is not None
        and (a.height // DIFFICULTY_ADJUSTMENT_BLOCKS != b.height // DIFFICULTY_ADJUSTMENT_BLOCKS)
    ):
        return False
    return abs(a.value - b.value) <= DIFFICULTY_REL_TOL * max(abs(a.value), 1.0)
