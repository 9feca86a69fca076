"""The data-quality layer between the feeds and the controller.

A value reaches a snapshot only through `DataQuality.offer`, which applies the sanity
rules; the last good value of every feed is kept with its original observation time, so
a dead feed leaves the last good value in place (and, past its time-to-live, a stale
market: the controller holds every node, it never idles them). Every rejection is
logged with its reason and counted, and an optional hook sees it (the runtime exports
the counts as Prometheus metrics).
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from orchestrator.economics import (
    DIFFICULTY_ADJUSTMENT_BLOCKS,
    MAX_DIFFICULTY_ADJUSTMENT_FACTOR,
    hashprice_usd_per_ph_day,
)
from orchestrator.errors import FeedError
from orchestrator.models.feeds_config import LiveMarketConfig, PlausibleRange
from orchestrator.models.market import Observed

log = logging.getLogger("hashpivot.feeds")

#: Bitcoin's genesis block (2009-01-03): no market value can be older.
EARLIEST_OBSERVATION_S = 1_231_006_505.0
#: Relative difference two readings of the same difficulty may show (APIs round).
DIFFICULTY_REL_TOL = 1e-6
#: How far the chain tip may step back (a reorg) before the reading is refused.
MAX_REORG_BLOCKS = 6
#: A block height and its time known for certain (the fourth halving, 2024-04-20).
ANCHOR_HEIGHT, ANCHOR_S = 840_000, 1_713_571_767.0
#: What the chain can have made in a span: the smaller of two bounds, each above every
#: span of Coin Metrics' daily block counts from 2016 to September 2025 (the hashrate
#: race since ASICs matured; 2013-15 grew faster). Short spans: one block per 480 s (the
#: target rate ×1.25; the fastest week ran ×1.247, shorter spans reach 28 blocks past it)
#: plus 72 blocks for Poisson bursts and block times up to two hours out of order. Long
#: spans: the target rate ×1.10 plus 720 blocks (the fastest 90 days ran ×1.12, the
#: fastest year ×1.08; 368 blocks of slack cover every span at ×1.10). Counted from the
#: anchor, it reaches the next halving (1,050,000) in December 2027, before the chain
#: can; twice the target rate reached it in April 2026, so a first height from a wrong
#: chain could have halved the subsidy two years early.
FASTEST_MEAN_BLOCK_S = 480.0
HEIGHT_SLACK_BLOCKS = 72
LONG_RUN_RATE_FACTOR = 1.10
LONG_RUN_SLACK_BLOCKS = 720
TARGET_BLOCK_S = 600.0


class Reject(StrEnum):
    """Why a fetch failed or a value was refused (the `reason` label of the metric)."""

    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    HTTP_STATUS = "http_status"
    TRANSPORT = "transport"
    TOO_LARGE = "too_large"
    INSECURE_URL = "insecure_url"
    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    UNITS = "units"
    NOT_FINITE = "not_finite"
    NEGATIVE = "negative"
    ZERO = "zero"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    OUT_OF_ORDER = "out_of_order"
    TOO_OLD = "too_old"
    HEIGHT_REGRESSED = "height_regressed"
    DIFFICULTY_MID_EPOCH = "difficulty_mid_epoch"
    DIFFICULTY_STEP = "difficulty_step"
    JUMP_UNCONFIRMED = "jump_unconfirmed"
    SOURCES_DISAGREE = "sources_disagree"
    #: A header credential could not be read (its variable unset, its file missing).
    CREDENTIALS = "credentials"
    #: A body no reader expected broke a parser: refused like any other bad answer.
    MALFORMED = "malformed"
    #: A first value from one source, waiting for a second source or reading to agree.
    UNCONFIRMED = "unconfirmed"
    #: A value that contradicts the other inputs (implied hashprice out of range).
    IMPLAUSIBLE = "implausible"


#: Rules that compare with the last good value: a second, agreeing source overrides them
#: (otherwise one poisoned first value would lock out every true one).
RELATIVE_RULES = frozenset(
    {
        Reject.DIFFICULTY_MID_EPOCH,
        Reject.DIFFICULTY_STEP,
        Reject.JUMP_UNCONFIRMED,
        Reject.UNCONFIRMED,
    }
)
#: Feeds whose first value must be confirmed (cold start): a unit error in one source (a
#: price in cents, a difficulty ×1000) stays inside the plausible range.
COLD_START_FEEDS = frozenset({"btc_usd", "difficulty"})
#: Block subsidy assumed for a plausibility check made before the height is known.
CURRENT_SUBSIDY_BTC = 3.125


_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_URL_QUERY_VALUE = re.compile(r"(?P<key>[?&][^=&\s#]+=)[^&\s#]+")


def redact(text: str) -> str:
    """Text with URL credentials and query values masked: a feed URL may carry a key, and
    these messages go to logs, the journal and `hashpivot status`."""
    return _URL_QUERY_VALUE.sub(r"\g<key>***", _URL_USERINFO.sub(r"\g<scheme>***@", text))


class FeedRejectError(FeedError):
    """A fetch failed or a value broke a rule. `reason` is the metric label. URLs in the
    source and detail are redacted (`redact`)."""

    def __init__(self, reason: Reject, detail: str, *, source: str = "") -> None:
        self.reason = reason
        self.detail = redact(detail)
        self.source = redact(source)
        super().__init__(
            f"{self.source}: {reason.value}: {self.detail}" if source else self.detail
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A value a feed offers, before the rules have seen it."""

    value: float
    source: str
    observed_s: float
    #: Block height the value belongs to (difficulty, block height).
    height: int | None = None
    #: Independent sources that agree on this value (price median, cross-checked chain).
    confirmations: int = 1
    #: The value agrees with another input its source gave (difficulty against the
    #: network hashrate): enough for a first value, where one source alone is not.
    checked: bool = False
    #: Values the source has already published for intervals that start later, as
    #: (interval start s, value) oldest first: a day-ahead market's coming hours.
    ahead: tuple[tuple[float, float], ...] = ()


RejectHook = Callable[[str, Reject, str], None]
_ANY_NONNEG = PlausibleRange(min=0.0, max=1e300)


@dataclass(slots=True)
class FeedState:
    last_good: Observed | None = None
    last_good_s: float = -math.inf
    height: int | None = None
    #: A single-source jump waiting for a second reading to confirm it.
    pending: Candidate | None = None
    last_problem: str | None = None
    accepted: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What `hashpivot status` and the metrics show per feed."""

    value: float | None
    source: str | None
    observed_at: datetime | None
    age_s: float | None
    ttl_s: float
    stale: bool
    accepted: int
    rejected: int
    last_problem: str | None


def feed_kind(feed: str) -> str:
    """'power_usd_mwh.west' → 'power_usd_mwh': the kind decides TTL, range and rules."""
    return feed.split(".", 1)[0]


def basic_check(
    value: float,
    observed_s: float,
    now_s: float,
    *,
    allowed: PlausibleRange,
    sign: str,
    max_skew_s: float,
) -> tuple[Reject, str] | None:
    """The rules every value obeys on its own. `sign`: 'positive', 'nonneg' or 'any'."""
    if not math.isfinite(value):
        return Reject.NOT_FINITE, f"value {value!r}"
    if not math.isfinite(observed_s) or observed_s < EARLIEST_OBSERVATION_S:
        return Reject.BAD_TIMESTAMP, f"observed at {observed_s!r} s"
    if observed_s > now_s + max_skew_s:
        return Reject.FUTURE_TIMESTAMP, f"observed {observed_s - now_s:.0f} s in the future"
    if sign in ("positive", "nonneg") and value < 0:
        return Reject.NEGATIVE, f"value {value!r}"
    if sign == "positive" and value == 0:
        return Reject.ZERO, "value 0"
    if not allowed.min <= value <= allowed.max:
        return Reject.OUT_OF_RANGE, f"value {value!r} outside [{allowed.min}, {allowed.max}]"
    return None


def height_check(
    height: int, observed_s: float, last_height: int | None, last_s: float
) -> tuple[Reject, str] | None:
    """A block height the chain cannot have reached by `observed_s`, from a known height
    (the last accepted one, else `ANCHOR_HEIGHT`): taken, it would end the subsidy and
    refuse every true height after it as a step back."""
    base, since = (
        (last_height, last_s) if last_height is not None and math.isfinite(last_s)
        else (ANCHOR_HEIGHT, ANCHOR_S)
    )
    most = base + most_blocks(max(0.0, observed_s - since))
    if height <= most:
        return None
    return (
        Reject.IMPLAUSIBLE,
        f"height {height} is past the {most:.0f} the chain can have reached from height "
        f"{base} in {max(0.0, observed_s - since):.0f} s",
    )


def most_blocks(span_s: float) -> float:
    """The most blocks the chain can have made in `span_s` (see `FASTEST_MEAN_BLOCK_S`)."""
    short = span_s / FASTEST_MEAN_BLOCK_S + HEIGHT_SLACK_BLOCKS
    long = span_s * LONG_RUN_RATE_FACTOR / TARGET_BLOCK_S + LONG_RUN_SLACK_BLOCKS
    return min(short, long)


def difficulty_check(
    last: float, last_height: int | None, new: float, new_height: int | None
) -> tuple[Reject, str] | None:
    """Difficulty changes only at a 2016-block boundary, by at most ×4 or ÷4 per step."""
    ratio = new / last
    same = abs(ratio - 1.0) <= DIFFICULTY_REL_TOL
    if last_height is not None and new_height is not None:
        epochs = new_height // DIFFICULTY_ADJUSTMENT_BLOCKS - last_height // (
            DIFFICULTY_ADJUSTMENT_BLOCKS
        )
        if epochs <= 0:
            if same:
                return None
            return (
                Reject.DIFFICULTY_MID_EPOCH,
                f"{last:.6g} → {new:.6g} within one adjustment period "
                f"(heights {last_height} → {new_height})",
            )
    else:
        epochs = 1
    bound = MAX_DIFFICULTY_ADJUSTMENT_FACTOR ** min(epochs, 16)
    if not 1.0 / bound <= ratio <= bound:
        return (
            Reject.DIFFICULTY_STEP,
            f"{last:.6g} → {new:.6g} is beyond ×{bound:g} over {epochs} adjustment(s)",
        )
    return None


def _to_micros(seconds: float) -> float:
    """`seconds` as a snapshot carries it (datetime keeps microseconds)."""
    return datetime.fromtimestamp(seconds, UTC).timestamp()


def relative_change(last: float, new: float) -> float:
    return abs(new - last) / max(abs(last), 1e-12)


@dataclass(frozen=True, slots=True)
class Quote:
    """One source's reading of a multi-source value (BTC/USD)."""

    value: float
    source: str
    observed_s: float


def combine_quotes(
    quotes: Sequence[Quote], *, agreement: float, last_good: float | None
) -> tuple[Candidate | None, list[tuple[Quote, Reject, str]]]:
    """The median of the quotes that agree, with how many sources agree.

    Quotes further than `agreement` (a share) from the median of all are dropped as
    outliers when a majority agrees. Without a majority, the group around the quote
    nearest the last good value stands (a jump rule then judges it); with no last good
    value either, nothing is trusted.
    """
    dropped: list[tuple[Quote, Reject, str]] = []
    usable = []
    for q in quotes:
        if not math.isfinite(q.value):
            dropped.append((q, Reject.NOT_FINITE, f"quote {q.value!r}"))
        elif q.value <= 0:
            reason = Reject.ZERO if q.value == 0 else Reject.NEGATIVE
            dropped.append((q, reason, f"quote {q.value!r}"))
        else:
            usable.append(q)
    quotes = usable
    if not quotes:
        return None, dropped
    mid = statistics.median(q.value for q in quotes)
    keep = [relative_change(mid, q.value) <= agreement for q in quotes]
    if sum(keep) * 2 <= len(quotes):
        if last_good is None:
            values = [q.value for q in quotes]
            dropped += [(q, Reject.SOURCES_DISAGREE, f"quotes {values}") for q in quotes]
            return None, dropped
        anchor = min(quotes, key=lambda q: relative_change(last_good, q.value)).value
        keep = [relative_change(anchor, q.value) <= agreement for q in quotes]
        mid = anchor
    kept = [q for q, k in zip(quotes, keep, strict=True) if k]
    for q, k in zip(quotes, keep, strict=True):
        if not k:
            dropped.append(
                (q, Reject.SOURCES_DISAGREE, f"{q.value!r} vs {mid!r} of {len(quotes)} quotes")
            )
    names = sorted({q.source for q in kept})
    return (
        Candidate(
            value=statistics.median(q.value for q in kept),
            source=f"median({','.join(names)})" if len(kept) > 1 else kept[0].source,
            # The oldest contributing quote: the value is no fresher than that.
            observed_s=min(q.observed_s for q in kept),
            confirmations=len(names),
        ),
        dropped,
    )


@dataclass(slots=True)
class DataQuality:
    """Sanity rules, last-good values, staleness and rejection counts for every feed."""

    config: LiveMarketConfig
    on_reject: RejectHook | None = None
    states: dict[str, FeedState] = field(default_factory=dict)
    #: (feed, reason) → count, for metrics.
    rejections: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Sources actually polled per cold-start feed kind (the source sets them); absent:
    #: as many as the config lists.
    source_counts: dict[str, int] = field(default_factory=dict)

    def state(self, feed: str) -> FeedState:
        return self.states.setdefault(feed, FeedState())

    def ttl_s(self, feed: str) -> float:
        ttl = self.config.ttl
        return {
            "btc_usd": ttl.btc_usd_s,
            "difficulty": ttl.difficulty_s,
            "block_height": ttl.difficulty_s,
            "subsidy_btc": ttl.difficulty_s,
            "fees_btc_per_block": ttl.fees_s,
            "power_usd_mwh": ttl.power_s,
            "gpu_usd_per_gpu_hour": ttl.gpu_s,
            "hashpower_btc_per_unit_day": ttl.hashpower_s,
        }.get(feed_kind(feed), ttl.btc_usd_s)

    def _rules(self, feed: str) -> tuple[PlausibleRange, str, float | None, bool]:
        """(range, sign, jump band, repeat confirms) for a feed."""
        r, c = self.config.ranges, self.config
        kind = feed_kind(feed)
        if kind == "btc_usd":
            return r.btc_usd, "positive", c.price_jump_band, False
        if kind == "difficulty":
            return r.difficulty, "positive", None, False
        if kind == "fees_btc_per_block":
            return r.fees_btc_per_block, "positive", None, False
        if kind == "power_usd_mwh":
            return r.power_usd_mwh, "any", c.power_jump_band, True
        if kind == "gpu_usd_per_gpu_hour":
            return r.gpu_usd_per_gpu_hour, "positive", c.gpu_jump_band, True
        if kind == "hashpower_btc_per_unit_day":
            return r.hashpower_btc_per_unit_day, "positive", c.gpu_jump_band, True
        # block_height, subsidy_btc: derived or integral, only sign and time rules.
        return _ANY_NONNEG, "nonneg", None, False

    def plausible_ahead(self, feed: str, cand: Candidate) -> tuple[tuple[float, float], ...]:
        """The values `cand` publishes ahead that each pass the feed's own-value rules
        (finite, sign, range); one refusal is counted for any left out."""
        allowed, sign, _, _ = self._rules(feed)
        kept: list[tuple[float, float]] = []
        first: tuple[float, tuple[Reject, str]] | None = None
        left_out = 0
        for start_s, value in cand.ahead:
            problem = basic_check(value, cand.observed_s, cand.observed_s, allowed=allowed,
                                  sign=sign, max_skew_s=0.0)
            if problem is None:
                kept.append((start_s, value))
                continue
            left_out += 1
            first = first or (start_s, problem)
        if first is not None:
            when = datetime.fromtimestamp(first[0], UTC).isoformat().replace("+00:00", "Z")
            self.reject(feed, first[1][0], f"{left_out} value(s) published ahead left out, "
                        f"the first for {when}: {first[1][1]}", source=cand.source)
        return tuple(kept)

    def reject(self, feed: str, reason: Reject, detail: str, *, source: str = "") -> None:
        """Count and log one refused value or failed fetch."""
        st = self.state(feed)
        st.rejected += 1
        st.last_problem = f"{reason.value}: {detail}"
        self.rejections[(feed, reason.value)] += 1
        log.warning("feed %s rejected (%s) from %s: %s", feed, reason.value, source or "?", detail)
        if self.on_reject is not None:
            self.on_reject(feed, reason, detail)

    def check(self, feed: str, cand: Candidate, now_s: float) -> tuple[Reject, str] | None:
        """The first rule `cand` breaks, or None. Does not change any state."""
        allowed, sign, band, _ = self._rules(feed)
        problem = basic_check(
            cand.value,
            cand.observed_s,
            now_s,
            allowed=allowed,
            sign=sign,
            max_skew_s=self.config.max_clock_skew_s,
        )
        if problem is not None:
            return problem
        st = self.state(feed)
        if cand.height is not None and feed_kind(feed) in ("block_height", "difficulty"):
            problem = height_check(cand.height, cand.observed_s, st.height, st.last_good_s)
            if problem is not None:
                return problem
        if st.last_good is None:
            return self._cold_start(feed, st, cand)
        if _to_micros(cand.observed_s) < st.last_good_s and not self._same_or_later_block(
            st, cand
        ):
            return Reject.OUT_OF_ORDER, "observed before the last good value"
        if feed_kind(feed) in ("block_height", "difficulty") and (
            cand.height is not None
            and st.height is not None
            and cand.height < st.height - MAX_REORG_BLOCKS
        ):
            return Reject.HEIGHT_REGRESSED, f"height {st.height} → {cand.height}"
        if cand.confirmations >= 2:
            return None
        if feed_kind(feed) == "difficulty":
            return difficulty_check(st.last_good.value, st.height, cand.value, cand.height)
        if band is not None:
            change = relative_change(st.last_good.value, cand.value)
            if change > band:
                return (
                    Reject.JUMP_UNCONFIRMED,
                    f"{st.last_good.value:.6g} → {cand.value:.6g} ({change:.1%} > {band:.1%}) "
                    "needs a second source",
                )
        return None

    def _single_source(self, feed: str) -> bool:
        """Only one source is configured for `feed`: no second one can ever confirm."""
        kind = feed_kind(feed)
        configured = (
            len(self.config.price_sources) if kind == "btc_usd" else len(self.config.chain_sources)
        )
        return self.source_counts.get(kind, configured) < 2

    def _agrees(self, feed: str, a: Candidate, b: Candidate) -> bool:
        if feed_kind(feed) == "difficulty":
            return relative_change(a.value, b.value) <= DIFFICULTY_REL_TOL
        return relative_change(a.value, b.value) <= self.config.price_agreement

    def _cold_start(self, feed: str, st: FeedState, cand: Candidate) -> tuple[Reject, str] | None:
        """A first value from one source must agree with something: a second source
        (now or at a later poll), or another input of its own source (`checked`). Where
        only one source is configured, nothing else can confirm it: it must then imply,
        with the other inputs, a hashprice inside the plausible range. A difficulty its
        own hashrate did not check waits for a BTC price to check it against (the chain
        is polled first: without the wait, a difficulty ×1000 whose hashrate endpoint
        did not answer was taken on the first poll); a first price is checked against
        the difficulty known or waiting."""
        kind = feed_kind(feed)
        if kind not in COLD_START_FEEDS or cand.confirmations >= 2 or cand.checked:
            return None
        if self._single_source(feed):
            return self._implied_hashprice(kind, cand.value)
        pending = st.pending
        if (
            pending is not None
            and cand.observed_s > pending.observed_s
            and pending.source != cand.source
            and self._agrees(feed, pending, cand)
        ):
            return None
        return (
            Reject.UNCONFIRMED,
            f"first value {cand.value:.6g} from {cand.source} alone; waiting for a second "
            "source to agree",
        )

    def _implied_hashprice(self, kind: str, value: float) -> tuple[Reject, str] | None:
        other_kind = "difficulty" if kind == "btc_usd" else "btc_usd"
        good = self.last_good(other_kind)
        waiting = self.state(other_kind).pending
        other = good.value if good is not None else (
            waiting.value if waiting is not None and kind == "btc_usd" else None)
        if other is None:
            if kind == "difficulty":
                return (
                    Reject.UNCONFIRMED,
                    f"first difficulty {value:.6g} unchecked by a hashrate; waiting for a "
                    "BTC price to check the hashprice it implies",
                )
            return None
        difficulty, price = (other, value) if kind == "btc_usd" else (value, other)
        subsidy = self.last_good("subsidy_btc")
        fees = self.last_good("fees_btc_per_block")
        hp = float(
            hashprice_usd_per_ph_day(
                difficulty,
                price,
                CURRENT_SUBSIDY_BTC if subsidy is None else subsidy.value,
                0.0 if fees is None else fees.value,
            )
        )
        band = self.config.ranges.hashprice_usd_per_ph_day
        if band.min <= hp <= band.max:
            return None
        return (
            Reject.IMPLAUSIBLE,
            f"first {kind} {value:.6g} implies a hashprice of {hp:.4g} USD/PH/day with "
            f"{'difficulty' if kind == 'btc_usd' else 'BTC/USD'} {other:.6g}, outside "
            f"[{band.min:g}, {band.max:g}]",
        )

    def awaiting_price(self) -> Candidate | None:
        """A first difficulty waiting for a BTC price that has since come (one source
        configured): offer it again, so a cold start needs one poll, not two. It stops
        waiting: refused again, it waits for the next reading."""
        st = self.state("difficulty")
        if st.last_good is None and st.pending is not None and self._single_source(
            "difficulty"
        ) and self.last_good("btc_usd") is not None:
            waiting, st.pending = st.pending, None
            return waiting
        return None

    @staticmethod
    def _same_or_later_block(st: FeedState, cand: Candidate) -> bool:
        """Chain values are ordered by height: sources stamp the same tip differently (its
        block time, the time their statistics were made), so a reading of the same or a
        later block is not out of order for being stamped earlier. It is then taken as
        observed at the last good time, never as older."""
        return cand.height is not None and st.height is not None and cand.height >= st.height

    def offer(self, feed: str, cand: Candidate, now_s: float) -> Reject | None:
        """Accept `cand` as the feed's last good value unless a rule refuses it.

        Returns the reason of a refusal (already counted and logged), or None.
        """
        st = self.state(feed)
        problem = self.check(feed, cand, now_s)
        repeat_confirms = self._rules(feed)[3]
        if problem is not None and problem[0] == Reject.UNCONFIRMED:
            st.pending = cand
        if problem is not None and problem[0] == Reject.JUMP_UNCONFIRMED and repeat_confirms:
            # One source, a big move: a later reading at the same level confirms it.
            pending = st.pending
            if (
                pending is not None
                and cand.observed_s > pending.observed_s
                and relative_change(pending.value, cand.value) <= self.config.price_agreement
            ):
                problem = None
            else:
                st.pending = cand
        if problem is not None:
            self.reject(feed, problem[0], problem[1], source=cand.source)
            return problem[0]
        st.pending = None
        # A value is never newer than the moment it was read (a server clock a little ahead,
        # within the allowed skew), nor older than the block reading it follows.
        observed_at = datetime.fromtimestamp(
            max(min(cand.observed_s, now_s), st.last_good_s), UTC
        )
        st.last_good = Observed(value=cand.value, source=cand.source, observed_at=observed_at)
        # The stored time is the one the snapshot carries (rounded to the microsecond), so
        # age, order and staleness all read the same clock.
        st.last_good_s = observed_at.timestamp()
        if cand.height is not None:
            st.height = cand.height if st.height is None else max(st.height, cand.height)
        st.accepted += 1
        st.last_problem = None
        return None

    def last_good(self, feed: str) -> Observed | None:
        st = self.states.get(feed)
        return None if st is None else st.last_good

    def age_s(self, feed: str, now_s: float) -> float | None:
        st = self.states.get(feed)
        if st is None or st.last_good is None:
            return None
        return now_s - st.last_good_s

    def is_stale(self, feed: str, now_s: float) -> bool:
        """No good value yet, or the last one is older than the feed's time-to-live."""
        age = self.age_s(feed, now_s)
        return age is None or age > self.ttl_s(feed)

    def stale(self, feeds: Sequence[str], now_s: float) -> dict[str, float]:
        """Feeds among `feeds` past their time-to-live → age in s (inf: never good)."""
        out: dict[str, float] = {}
        for f in feeds:
            if self.is_stale(f, now_s):
                age = self.age_s(f, now_s)
                out[f] = math.inf if age is None else age
        return out

    def status(self, now_s: float, feeds: Sequence[str] | None = None) -> dict[str, FeedStatus]:
        """Per value feed (default: every feed seen, fetch-failure groups included)."""
        out: dict[str, FeedStatus] = {}
        for feed in sorted(self.states) if feeds is None else feeds:
            st = self.states.get(feed, FeedState())
            good = st.last_good
            out[feed] = FeedStatus(
                value=None if good is None else good.value,
                source=None if good is None else good.source,
                observed_at=None if good is None else good.observed_at,
                age_s=self.age_s(feed, now_s),
                ttl_s=self.ttl_s(feed),
                stale=self.is_stale(feed, now_s),
                accepted=st.accepted,
                rejected=st.rejected,
                last_problem=st.last_problem,
            )
        return out

    def rejection_counts(self) -> dict[str, dict[str, int]]:
        """feed → reason → count (plain data for metrics exporters and reports)."""
        out: dict[str, dict[str, int]] = {}
        for (feed, reason), n in sorted(self.rejections.items()):
            out.setdefault(feed, {})[reason] = n
        return out
