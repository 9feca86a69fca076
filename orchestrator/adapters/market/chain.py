"""Chain data: block height, difficulty, network hashrate and fees per block.

Readers for a mempool.space-compatible API (the primary source), the Blockchain.com
stats API and a Blockstream Esplora API (fallbacks). Fees are the Luxor-style average
of the last `fees_window_blocks` blocks where the API gives per-block fees, else the
last day's fee total divided by its block count, else (mempool) the recommended fee
rate times a full block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.parse import field as get_field
from orchestrator.adapters.market.parse import integer, number
from orchestrator.adapters.market.quality import FeedRejectError, Reject
from orchestrator.economics import DIFFICULTY_ADJUSTMENT_BLOCKS, TARGET_BLOCK_SECONDS, TWO_POW_32
from orchestrator.models.feeds_config import ChainSource, url_host

SATS_PER_BTC = 1e8
#: Blocks per page of mempool's /v1/blocks.
MEMPOOL_PAGE_BLOCKS = 15
#: A source's hashrate is an estimate: its difficulty × 2^32 over the mean block interval
#: it measured. So difficulty × 2^32 / hashrate is that interval, and outside this band
#: one of the two is in the wrong unit. Over every day from 2016 to September 2025 the
#: mean interval ran between 432 s and 1,490 s (Coin Metrics' daily block counts; the
#: slowest in the 2021 mining ban); a unit error (×10 and beyond) lands far outside.
MEAN_BLOCK_INTERVAL_BAND_S = (400.0, 1800.0)
#: The interval a hashrate implies (over about a day) and the mean block time of the
#: difficulty period so far differ by at most this factor: 1/1.43…1.91 over every day
#: and period-so-far from 2016 to 2025.
BLOCK_TIME_AGREEMENT = 2.5
#: mempool's difficulty-adjustment gives `timeAvg` in milliseconds; a figure under this
#: is taken as seconds (no block interval is 36 ms; none is 10 hours either).
MS_IF_AT_LEAST = 36_000.0
#: A full block's virtual size, vB (4,000,000 weight units / 4).
FULL_BLOCK_VBYTES = 1_000_000.0
#: Recommended fee rates, sat/vB, in the order they stand in for what blocks pay: the
#: rate to confirm within an hour is near the lowest rate recent blocks took.
RECOMMENDED_FEE_FIELDS = ("hourFee", "halfHourFee", "economyFee", "fastestFee")


@dataclass(slots=True)
class ChainReading:
    """What one chain source said in one poll. None: it did not say (see `problems`)."""

    source: str
    observed_s: float
    height: int | None = None
    difficulty: float | None = None
    hashrate_hs: float | None = None
    fees_btc_per_block: float | None = None
    #: 'per_block' (average of per-block fees) or 'daily_total' (total / block count).
    fees_method: str | None = None
    #: Mean block time of the current difficulty period so far, s (mempool's
    #: difficulty-adjustment `timeAvg`).
    mean_block_s: float | None = None
    problems: list[FeedRejectError] = field(default_factory=list)


#: One block of a page: height, hash, difficulty, fees (sat) or None, timestamp (s).
_Block = tuple[int, str, float, float | None, float]


def block_observed_s(block_time_s: float, now_s: float) -> float:
    """When chain data read at a tip was true: the tip block's own time, so a mirror stuck
    on old blocks ages (and goes stale) instead of reading as fresh at every fetch.
    Consensus lets a block's time run up to two hours ahead of the clock: such a tip is
    taken as observed now, never in the future."""
    return min(block_time_s, now_s)


class ChainFeed(Protocol):
    name: str

    def read(self, now_s: float) -> ChainReading: ...


def _guard(reading: ChainReading, fn: Callable[[], None]) -> None:
    """Run one part of a reading; a failure is noted, the other parts still count."""
    try:
        fn()
    except FeedRejectError as exc:
        reading.problems.append(exc)


def implied_block_interval_s(difficulty: float, hashrate_hs: float) -> float:
    """The mean block interval a difficulty and a network hashrate imply, s."""
    return difficulty * TWO_POW_32 / hashrate_hs


def check_hashrate_units(reading: ChainReading) -> None:
    """Refuse a difficulty the reported hashrate contradicts (a unit error in one of
    them): the block interval they imply must be one the chain runs at
    (`MEAN_BLOCK_INTERVAL_BAND_S`) and, where the source gives its block times, agree
    with them (`BLOCK_TIME_AGREEMENT`). A difficulty left standing with its hashrate is
    checked: enough for a first value."""
    low, high = MEAN_BLOCK_INTERVAL_BAND_S
    if reading.mean_block_s is not None and not low <= reading.mean_block_s <= high:
        _units(reading, f"mean block time {reading.mean_block_s:.6g} s outside "
                        f"[{low:g}, {high:g}] s")
        reading.mean_block_s = None
    if reading.difficulty is None or reading.hashrate_hs is None:
        return
    if reading.hashrate_hs <= 0:
        reading.hashrate_hs = None
        return
    interval = implied_block_interval_s(reading.difficulty, reading.hashrate_hs)
    problem = None
    if not low <= interval <= high:
        problem = f"outside [{low:g}, {high:g}] s"
    elif reading.mean_block_s is not None:
        ratio = interval / reading.mean_block_s
        if not 1 / BLOCK_TIME_AGREEMENT <= ratio <= BLOCK_TIME_AGREEMENT:
            problem = (f"against a mean block time of {reading.mean_block_s:.6g} s "
                       f"(more than ×{BLOCK_TIME_AGREEMENT:g} apart)")
    if problem is not None:
        expected = reading.hashrate_hs * TARGET_BLOCK_SECONDS / TWO_POW_32
        _units(reading, f"difficulty {reading.difficulty:.6g} and hashrate "
                        f"{reading.hashrate_hs:.6g} H/s imply a block every {interval:.6g} s, "
                        f"{problem} (the hashrate implies a difficulty near {expected:.6g})")
        reading.difficulty = None
        reading.hashrate_hs = None


def _units(reading: ChainReading, detail: str) -> None:
    reading.problems.append(FeedRejectError(Reject.UNITS, detail, source=reading.source))


class MempoolChain:
    """A mempool.space-compatible REST API (`base_url` ends in `/api`).

    - `GET /v1/blocks[/{height}]`: up to 15 blocks from the tip (or `height`) down, each
      with `height`, `difficulty` and `extras.totalFees` (sat). Height and difficulty come
      from the same block, so they never straddle an adjustment.
    - `GET /v1/mining/reward-stats/{n}`: fee total of the last n blocks (the fallback).
    - `GET /v1/mining/hashrate/3d`: `currentHashrate` (H/s), a cross-check of units.
    - `GET /v1/difficulty-adjustment`: `timeAvg`, the mean block time of the difficulty
      period so far (ms; seconds accepted), a second cross-check of the difficulty and
      hashrate; `nextRetargetHeight`, when given, must be a period boundary.
    - `GET /v1/fees/recommended`: fee rates (sat/vB) to confirm soon; the last fee
      fallback: `hourFee` × a full block (1,000,000 vB), which errs low (blocks take
      higher-rate transactions first).
    Optional fields may be missing and keys come in any order; a missing endpoint only
    loses its check. Per-block fees are cached by height, so a poll usually costs one
    page.
    """

    def __init__(self, source: ChainSource, http: FeedHttpClient, *, window: int) -> None:
        self.base = source.base_url.rstrip("/")
        self.name = f"mempool@{url_host(source.base_url)}"
        self.http = http
        self.window = window
        self._fees_sat: dict[int, tuple[str, float]] = {}

    def read(self, now_s: float) -> ChainReading:
        tip = self._page(None)
        top = tip[0]
        reading = ChainReading(source=self.name, observed_s=block_observed_s(top[4], now_s))
        reading.height = top[0]
        reading.difficulty = top[2]
        _guard(reading, lambda: self._fees(reading, tip))
        _guard(reading, lambda: self._hashrate(reading))
        _guard(reading, lambda: self._adjustment(reading))
        check_hashrate_units(reading)
        return reading

    def _page(self, start: int | None) -> list[_Block]:
        """(height, hash, difficulty, fees sat or None, timestamp) per block, tip first."""
        url = f"{self.base}/v1/blocks" + (f"/{start}" if start is not None else "")
        doc = self.http.get(url).json()
        if not isinstance(doc, list) or not doc:
            raise FeedRejectError(Reject.SCHEMA, "expected a non-empty list of blocks", source=url)
        out = []
        for block in doc:
            height = integer(get_field(block, "height", source=url), what="height", source=url)
            block_id = get_field(block, "id", source=url)
            diff = number(get_field(block, "difficulty", source=url), what="difficulty", source=url)
            extras = block.get("extras") if isinstance(block, dict) else None
            fees = None
            if isinstance(extras, dict) and "totalFees" in extras:
                fees = number(extras["totalFees"], what="extras.totalFees", source=url)
            stamp = number(get_field(block, "timestamp", source=url), what="timestamp", source=url)
            out.append((height, str(block_id), diff, fees, stamp))
        heights = [b[0] for b in out]
        if heights != sorted(heights, reverse=True):
            raise FeedRejectError(Reject.SCHEMA, "blocks are not in descending height", source=url)
        return out

    def _fees(self, reading: ChainReading, tip: list[_Block]) -> None:
        top = tip[0][0]
        lowest = top - self.window + 1
        try:
            self._remember(tip)
            pages = 0
            while (missing := self._missing(lowest, top)) is not None:
                pages += 1
                if pages > math.ceil(self.window / MEMPOOL_PAGE_BLOCKS) + 2:
                    raise FeedRejectError(
                        Reject.SCHEMA, f"block {missing} not served", source=self.name
                    )
                page = self._page(missing)
                if page[0][0] != missing:
                    raise FeedRejectError(
                        Reject.SCHEMA,
                        f"asked for blocks from {missing}, got from {page[0][0]}",
                        source=self.name,
                    )
                self._remember(page)
            for h in [h for h in self._fees_sat if not lowest <= h <= top]:
                del self._fees_sat[h]
            total = sum(self._fees_sat[h][1] for h in range(lowest, top + 1))
            reading.fees_btc_per_block = total / self.window / SATS_PER_BTC
            reading.fees_method = "per_block"
        except FeedRejectError as exc:
            reading.problems.append(exc)
            try:
                self._reward_stats(reading)
            except FeedRejectError as again:
                reading.problems.append(again)
                self._recommended(reading)

    def _remember(self, page: list[_Block]) -> None:
        for height, block_id, _, fees, _ in page:
            if fees is None:
                raise FeedRejectError(
                    Reject.SCHEMA, f"block {height} has no extras.totalFees", source=self.name
                )
            self._fees_sat[height] = (block_id, fees)

    def _missing(self, lowest: int, top: int) -> int | None:
        """Highest height in [lowest, top] without cached fees."""
        for h in range(top, lowest - 1, -1):
            if h not in self._fees_sat:
                return h
        return None

    def _reward_stats(self, reading: ChainReading) -> None:
        url = f"{self.base}/v1/mining/reward-stats/{self.window}"
        doc = self.http.get(url).json()
        start = integer(get_field(doc, "startBlock", source=url), what="startBlock", source=url)
        end = integer(get_field(doc, "endBlock", source=url), what="endBlock", source=url)
        total = number(get_field(doc, "totalFee", source=url), what="totalFee", source=url)
        blocks = end - start + 1
        if blocks <= 0:
            raise FeedRejectError(Reject.SCHEMA, f"block range {start}..{end} is empty", source=url)
        reading.fees_btc_per_block = total / blocks / SATS_PER_BTC
        reading.fees_method = "daily_total"

    def _recommended(self, reading: ChainReading) -> None:
        url = f"{self.base}/v1/fees/recommended"
        doc = self.http.get(url).json()
        if not isinstance(doc, dict):
            raise FeedRejectError(
                Reject.SCHEMA, f"expected an object, got {type(doc).__name__}", source=url
            )
        name = next((k for k in RECOMMENDED_FEE_FIELDS if doc.get(k) is not None), None)
        if name is None:
            raise FeedRejectError(
                Reject.SCHEMA, f"none of {', '.join(RECOMMENDED_FEE_FIELDS)}", source=url
            )
        rate = number(doc[name], what=name, source=url)
        if rate <= 0:
            raise FeedRejectError(Reject.ZERO if rate == 0 else Reject.NEGATIVE,
                                  f"{name} {rate:g} sat/vB", source=url)
        reading.fees_btc_per_block = rate * FULL_BLOCK_VBYTES / SATS_PER_BTC
        reading.fees_method = f"recommended_{name}"

    def _adjustment(self, reading: ChainReading) -> None:
        url = f"{self.base}/v1/difficulty-adjustment"
        doc = self.http.get(url).json()
        avg = number(get_field(doc, "timeAvg", source=url), what="timeAvg", source=url)
        if avg <= 0:
            raise FeedRejectError(Reject.ZERO if avg == 0 else Reject.NEGATIVE,
                                  f"timeAvg {avg:g}", source=url)
        nxt = doc.get("nextRetargetHeight")
        if nxt is not None:
            boundary = integer(nxt, what="nextRetargetHeight", source=url)
            if boundary % DIFFICULTY_ADJUSTMENT_BLOCKS:
                raise FeedRejectError(
                    Reject.SCHEMA,
                    f"nextRetargetHeight {boundary} is not a multiple of "
                    f"{DIFFICULTY_ADJUSTMENT_BLOCKS}",
                    source=url,
                )
        reading.mean_block_s = avg / 1000.0 if avg >= MS_IF_AT_LEAST else avg

    def _hashrate(self, reading: ChainReading) -> None:
        url = f"{self.base}/v1/mining/hashrate/3d"
        doc = self.http.get(url).json()
        reading.hashrate_hs = number(
            get_field(doc, "currentHashrate", source=url), what="currentHashrate", source=url
        )


class BlockchainInfoChain:
    """The Blockchain.com stats API: `GET /stats`.

    `difficulty`, `n_blocks_total` (height), `hash_rate` (GH/s), `total_fees_btc` (in
    satoshi, despite its name) and `n_blocks_mined` over the last 24 h, `timestamp` (ms).
    """

    def __init__(self, source: ChainSource, http: FeedHttpClient) -> None:
        self.base = source.base_url.rstrip("/")
        self.name = f"blockchain_info@{url_host(source.base_url)}"
        self.http = http

    def read(self, now_s: float) -> ChainReading:
        url = f"{self.base}/stats"
        doc = self.http.get(url).json()
        observed = now_s
        if isinstance(doc, dict) and "timestamp" in doc:
            observed = number(doc["timestamp"], what="timestamp", source=url) / 1000.0
        reading = ChainReading(source=self.name, observed_s=observed)
        reading.height = integer(
            get_field(doc, "n_blocks_total", source=url), what="n_blocks_total", source=url
        )
        reading.difficulty = number(
            get_field(doc, "difficulty", source=url), what="difficulty", source=url
        )

        def fees() -> None:
            total = number(
                get_field(doc, "total_fees_btc", source=url), what="total_fees_btc", source=url
            )
            blocks = number(
                get_field(doc, "n_blocks_mined", source=url), what="n_blocks_mined", source=url
            )
            if blocks <= 0:
                raise FeedRejectError(Reject.SCHEMA, f"n_blocks_mined is {blocks}", source=url)
            reading.fees_btc_per_block = total / SATS_PER_BTC / blocks
            reading.fees_method = "daily_total"

        def hashrate() -> None:
            ghs = number(get_field(doc, "hash_rate", source=url), what="hash_rate", source=url)
            reading.hashrate_hs = ghs * 1e9

        _guard(reading, fees)
        _guard(reading, hashrate)
        check_hashrate_units(reading)
        return reading


class EsploraChain:
    """A Blockstream Esplora API: `GET /blocks` (10 blocks from the tip, each with
    `height` and `difficulty`). It has no fee totals; the other sources supply those."""

    def __init__(self, source: ChainSource, http: FeedHttpClient) -> None:
        self.base = source.base_url.rstrip("/")
        self.name = f"esplora@{url_host(source.base_url)}"
        self.http = http

    def read(self, now_s: float) -> ChainReading:
        url = f"{self.base}/blocks"
        doc: Any = self.http.get(url).json()
        if not isinstance(doc, list) or not doc:
            raise FeedRejectError(Reject.SCHEMA, "expected a non-empty list of blocks", source=url)
        heights = [
            integer(get_field(b, "height", source=url), what="height", source=url) for b in doc
        ]
        top = doc[heights.index(max(heights))]
        stamp = number(get_field(top, "timestamp", source=url), what="timestamp", source=url)
        reading = ChainReading(source=self.name, observed_s=block_observed_s(stamp, now_s))
        reading.height = max(heights)
        reading.difficulty = number(
            get_field(top, "difficulty", source=url), what="difficulty", source=url
        )
        return reading


def chain_feed(source: ChainSource, http: FeedHttpClient, *, window: int) -> ChainFeed:
    if source.kind == "mempool":
        return MempoolChain(source, http, window=window)
    if source.kind == "blockchain_info":
        return BlockchainInfoChain(source, http)
    return EsploraChain(source, http)
