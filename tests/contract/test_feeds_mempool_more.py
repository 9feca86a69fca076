"""mempool's `difficulty-adjustment` and `fees/recommended` readers against bodies written
from the documented response shapes (fixtures/feeds/README.md): units, missing optional
fields, reordered keys, and what each one feeds (the difficulty's block-time check, the
fee estimate), through `MempoolChain` and `LiveMarketSource`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.adapters.market.chain import MempoolChain
from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.quality import Reject
from orchestrator.models.feeds_config import ChainSource, HttpSettings, LiveMarketConfig
from tests.contract.feedserver import (
    DIFFICULTY,
    NOW,
    TIP,
    FeedServer,
    Reply,
    SleepLog,
    fixture_bytes,
    mempool_page,
    serve_market,
)
from tests.faults.k8s_site import market_values

ADJUSTMENT = "/mempool/api/v1/difficulty-adjustment"
RECOMMENDED = "/mempool/api/v1/fees/recommended"
HASHRATE = "/mempool/api/v1/mining/hashrate/3d"
REWARD_STATS = "/mempool/api/v1/mining/reward-stats/144"


def doc(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(fixture_bytes(name))
    return out


def hashrate_hs() -> float:
    return float(doc("mempool_hashrate_3d.json")["currentHashrate"])


@pytest.fixture
def http(http_settings: HttpSettings, sleeps: SleepLog) -> FeedHttpClient:
    return FeedHttpClient(http_settings, sleep=sleeps)


def read(server: FeedServer, http: FeedHttpClient, *, adjustment: Any = None,
         recommended: Any = None, no_fees_elsewhere: bool = False):  # type: ignore[no-untyped-def]
    serve_market(server)
    if adjustment is not None:
        server.route(ADJUSTMENT, Reply(body=json.dumps(adjustment).encode()))
    if recommended is not None:
        raw = recommended if isinstance(recommended, bytes) else json.dumps(recommended).encode()
        server.route(RECOMMENDED, Reply(body=raw))
    if no_fees_elsewhere:
        server.route("/mempool/api/v1/blocks",
                     Reply.fixture("mempool_v1_blocks_no_extras.json"))
        server.route(REWARD_STATS, Reply(status=503))
    feed = MempoolChain(ChainSource(kind="mempool", base_url=f"{server.base}/mempool/api"),
                        http, window=144)
    return feed.read(NOW)


# -- difficulty-adjustment ----------------------------------------------------------------


def test_the_mean_block_time_is_read_in_ms_and_checks_the_difficulty(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    body = doc("mempool_difficulty_adjustment.json")
    reading = read(feed_server, http)
    assert reading.problems == []
    assert reading.mean_block_s == body["timeAvg"] / 1000
    # Difficulty × 2^32 / hashrate: the interval the two imply agrees with it.
    implied = DIFFICULTY * 2**32 / hashrate_hs()
    assert 1 / 2.5 <= implied / reading.mean_block_s <= 2.5
    assert reading.difficulty == DIFFICULTY and reading.hashrate_hs == hashrate_hs()


@pytest.mark.parametrize("variant", ["seconds", "only_time", "reordered", "string"])
def test_units_missing_optional_fields_and_key_order(
    feed_server: FeedServer, http: FeedHttpClient, variant: str
) -> None:
    body = doc("mempool_difficulty_adjustment.json")
    expected = body["timeAvg"] / 1000
    if variant == "seconds":
        body["timeAvg"] = expected
    elif variant == "only_time":
        body = {"timeAvg": body["timeAvg"]}
    elif variant == "reordered":
        body = dict(reversed(list(body.items())))
    else:
        body["timeAvg"] = str(body["timeAvg"])
    reading = read(feed_server, http, adjustment=body)
    assert reading.problems == []
    assert reading.mean_block_s == pytest.approx(expected)
    assert reading.difficulty == DIFFICULTY


@pytest.mark.parametrize(("change", "reason"), [
    ({"timeAvg": None}, Reject.SCHEMA),
    ({"timeAvg": -601234}, Reject.NEGATIVE),
    ({"timeAvg": 0}, Reject.ZERO),
    ({"timeAvg": [601234]}, Reject.SCHEMA),
    ({"timeAvg": "fast"}, Reject.SCHEMA),
    ({"nextRetargetHeight": 878_977}, Reject.SCHEMA),
    ({"nextRetargetHeight": 878_976.5}, Reject.SCHEMA),
])
def test_a_bad_adjustment_body_loses_only_its_check(
    feed_server: FeedServer, http: FeedHttpClient, change: dict[str, Any], reason: Reject
) -> None:
    body = {**doc("mempool_difficulty_adjustment.json"), **change}
    if change.get("timeAvg", 0) is None:
        del body["timeAvg"]
    reading = read(feed_server, http, adjustment=body)
    assert [p.reason for p in reading.problems] == [reason]
    assert reading.mean_block_s is None
    # The difficulty still stands on its hashrate.
    assert reading.difficulty == DIFFICULTY and reading.hashrate_hs is not None


def test_a_block_time_no_chain_runs_at_is_dropped(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    """60.1 s read from `timeAvg` 60,123 (ms, ten times too fast): outside 400…1,800 s."""
    reading = read(feed_server, http, adjustment={"timeAvg": 60_123})
    assert [p.reason for p in reading.problems] == [Reject.UNITS]
    assert reading.mean_block_s is None and reading.difficulty == DIFFICULTY


def test_a_block_time_the_difficulty_and_hashrate_contradict_drops_them(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    implied = DIFFICULTY * 2**32 / hashrate_hs()
    slow = implied * 2.6  # still a block interval the chain can run at
    assert 400 <= slow <= 1800
    reading = read(feed_server, http, adjustment={"timeAvg": slow * 1000})
    assert [p.reason for p in reading.problems] == [Reject.UNITS]
    assert reading.difficulty is None and reading.hashrate_hs is None


# -- fees/recommended ---------------------------------------------------------------------


def test_recommended_fees_are_the_last_fee_fallback(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    rates = doc("mempool_fees_recommended.json")
    reading = read(feed_server, http, no_fees_elsewhere=True)
    # sat/vB × 1,000,000 vB (a full block) / 1e8 sat per BTC.
    assert reading.fees_btc_per_block == pytest.approx(rates["hourFee"] * 1e6 / 1e8)
    assert reading.fees_method == "recommended_hourFee"
    # Per-block fees missing, reward stats down: each said why.
    assert [p.reason for p in reading.problems] == [Reject.SCHEMA, Reject.SERVER_ERROR]


def test_recommended_fees_are_not_asked_for_while_blocks_give_fees(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    reading = read(feed_server, http)
    assert reading.fees_method == "per_block"
    assert feed_server.hits(RECOMMENDED) == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"fastestFee": 9, "halfHourFee": 7, "economyFee": 3}, "halfHourFee"),  # no hourFee
    ({"economyFee": "2.5", "fastestFee": 9}, "economyFee"),  # text, partial
    ({"minimumFee": 1, "hourFee": 4.25, "fastestFee": 6}, "hourFee"),  # reordered, decimal
])
def test_recommended_fee_variants(
    feed_server: FeedServer, http: FeedHttpClient, body: dict[str, Any], field: str
) -> None:
    reading = read(feed_server, http, recommended=body, no_fees_elsewhere=True)
    assert reading.fees_method == f"recommended_{field}"
    assert reading.fees_btc_per_block == pytest.approx(float(body[field]) * 1e6 / 1e8)


@pytest.mark.parametrize(("body", "reason"), [
    ({"hourFee": -4}, Reject.NEGATIVE),
    ({"hourFee": 0}, Reject.ZERO),
    ({"minimumFee": 1}, Reject.SCHEMA),
    ([4, 5, 6], Reject.SCHEMA),
    ({"hourFee": {"sat/vB": 4}}, Reject.SCHEMA),
    ({"hourFee": 1e400}, Reject.BAD_JSON),
])
def test_bad_recommended_fees_leave_no_fee(
    feed_server: FeedServer, http: FeedHttpClient, body: Any, reason: Reject
) -> None:
    raw = json.dumps(body).replace("Infinity", "1e400").encode()
    reading = read(feed_server, http, recommended=raw, no_fees_elsewhere=True)
    assert reading.fees_btc_per_block is None
    assert reading.problems[-1].reason in (reason, Reject.NOT_FINITE)
    assert reading.difficulty == DIFFICULTY


def test_recommended_fees_feed_the_fee_estimate_of_the_market(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.route("/mempool/api/v1/blocks", Reply.fixture("mempool_v1_blocks_no_extras.json"))
    feed_server.route(REWARD_STATS, Reply(status=503))
    values = market_values(feed_server, timeout_s=0.5)
    values["chain_sources"] = [{"kind": "mempool", "base_url": f"{feed_server.base}/mempool/api"}]
    values["fees_window_blocks"] = 144
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture("coinbase_spot.json"))
    market = LiveMarketSource.from_config(LiveMarketConfig.model_validate(values),
                                          sleep=lambda s: None)
    snap = market.snapshot(NOW)
    rates = doc("mempool_fees_recommended.json")
    assert snap.fees_btc_per_block.value == pytest.approx(rates["hourFee"] * 1e6 / 1e8)
    assert snap.fees_btc_per_block.source.endswith("recommended_hourFee")
    market.close()


# -- cold start: a difficulty ×1000 whose hashrate endpoint does not answer ---------------


def test_a_first_difficulty_x1000_without_its_hashrate_is_never_taken(
    feed_server: FeedServer,
) -> None:
    serve_market(feed_server)
    feed_server.route(HASHRATE, Reply(status=503))
    feed_server.route("/mempool/api/v1/blocks",
                      Reply(body=mempool_page(TIP, difficulty=DIFFICULTY * 1000)))
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture("coinbase_spot.json"))
    values = market_values(feed_server, timeout_s=0.5)
    values["chain_sources"] = [{"kind": "mempool", "base_url": f"{feed_server.base}/mempool/api"}]
    values["fees_window_blocks"] = 15
    market = LiveMarketSource.from_config(LiveMarketConfig.model_validate(values),
                                          sleep=lambda s: None)
    for k in range(3):
        market.refresh(NOW + 60 * k)
        assert market.quality.last_good("difficulty") is None
    counts = market.rejection_counts()
    # It waited for the price, and the price it would have made implausible was refused.
    assert counts["difficulty"][Reject.UNCONFIRMED.value] >= 3, counts
    assert counts["btc_usd"][Reject.IMPLAUSIBLE.value] >= 1, counts
    # The true difficulty, still without its hashrate: checked against the price, and
    # both taken in the same poll.
    feed_server.route("/mempool/api/v1/blocks", Reply(body=mempool_page(TIP)))
    market.refresh(NOW + 300)
    good = market.quality.last_good("difficulty")
    assert good is not None and good.value == DIFFICULTY
    assert market.quality.last_good("btc_usd") is not None
    market.close()
