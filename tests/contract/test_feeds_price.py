"""BTC/USD readers and the median-with-confirmation rule against recorded bodies."""

from __future__ import annotations

import json

import pytest

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.price import Bitstamp, Coinbase, Kraken, MempoolPrice
from orchestrator.adapters.market.quality import FeedRejectError, Reject
from orchestrator.models.feeds_config import HttpSettings, PriceSource
from tests.contract.feedserver import (
    NOW,
    FeedServer,
    Reply,
    SleepLog,
    fixture_bytes,
    live_config,
    serve_market,
)


@pytest.fixture
def http(http_settings: HttpSettings, sleeps: SleepLog) -> FeedHttpClient:
    return FeedHttpClient(http_settings, sleep=sleeps)


def source(server: FeedServer, kind: str, path: str) -> PriceSource:
    return PriceSource.model_validate({"kind": kind, "base_url": f"{server.base}{path}"})


def test_each_exchange_parses(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    cb = Coinbase(source(feed_server, "coinbase", "/coinbase"), http).quote(NOW)
    kr = Kraken(source(feed_server, "kraken", "/kraken"), http).quote(NOW)
    bs = Bitstamp(source(feed_server, "bitstamp", "/bitstamp"), http).quote(NOW)
    mp = MempoolPrice(source(feed_server, "mempool", "/mempool/api"), http).quote(NOW)
    assert (cb.value, cb.observed_s) == (97012.35, NOW)
    assert (kr.value, kr.observed_s) == (97014.9, NOW)
    assert (bs.value, bs.observed_s) == (97008.0, NOW - 10)
    assert (mp.value, mp.observed_s) == (97010.0, NOW - 200)
    assert cb.source == "coinbase@127.0.0.1"


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("coinbase_spot_eur.json", Reject.UNITS),
        ("coinbase_spot_drift.json", Reject.SCHEMA),
    ],
)
def test_coinbase_wrong_currency_or_schema(
    feed_server: FeedServer, http: FeedHttpClient, fixture: str, reason: Reject
) -> None:
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture(fixture))
    with pytest.raises(FeedRejectError) as err:
        Coinbase(source(feed_server, "coinbase", "/coinbase"), http).quote(NOW)
    assert err.value.reason == reason


def test_kraken_error_payload(feed_server: FeedServer, http: FeedHttpClient) -> None:
    feed_server.route(
        "/kraken/0/public/Ticker?pair=XBTUSD", Reply.fixture("kraken_ticker_error.json")
    )
    with pytest.raises(FeedRejectError) as err:
        Kraken(source(feed_server, "kraken", "/kraken"), http).quote(NOW)
    assert err.value.reason == Reject.SCHEMA
    assert "Too many requests" in str(err.value)


def live(server: FeedServer) -> LiveMarketSource:
    return LiveMarketSource.from_config(
        live_config(server, fees_window_blocks=15), sleep=lambda s: None
    )


def test_median_of_three(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = live(feed_server)
    snap = src.snapshot(NOW)
    assert snap.btc_usd.value == 97012.35
    assert snap.btc_usd.source.startswith("median(")
    assert snap.btc_usd.observed_at.timestamp() == NOW - 10  # the oldest quote used


def test_quote_in_wrong_units_is_outvoted(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    doc = json.loads(fixture_bytes("kraken_ticker.json"))
    doc["result"]["XXBTZUSD"]["c"][0] = "9701490"  # cents
    feed_server.json("/kraken/0/public/Ticker?pair=XBTUSD", json.dumps(doc))
    src = live(feed_server)
    snap = src.snapshot(NOW)
    assert snap.btc_usd.value == pytest.approx((97012.35 + 97008.0) / 2)
    assert src.rejection_counts()["btc_usd"] == {"sources_disagree": 1}


def test_one_exchange_down_median_of_the_rest(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply(status=429))
    src = live(feed_server)
    assert src.snapshot(NOW).btc_usd.value == pytest.approx((97014.9 + 97008.0) / 2)
    assert src.rejection_counts()["btc_usd"] == {"rate_limited": 1}


def test_jump_needs_a_second_source(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = live(feed_server)
    src.refresh(NOW)
    # Only Kraken answers, 30% higher: not confirmed, the last good price stands.
    doc = json.loads(fixture_bytes("kraken_ticker.json"))
    doc["result"]["XXBTZUSD"]["c"][0] = "126000.0"
    feed_server.json("/kraken/0/public/Ticker?pair=XBTUSD", json.dumps(doc))
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply(status=500))
    feed_server.route("/bitstamp/api/v2/ticker/btcusd/", Reply(status=500))
    src.refresh(NOW + 60)
    good = src.quality.last_good("btc_usd")
    assert good is not None and good.value == 97012.35
    assert src.rejection_counts()["btc_usd"]["jump_unconfirmed"] == 1
    # Bitstamp comes back and agrees: two sources confirm the move.
    bs = json.loads(fixture_bytes("bitstamp_ticker.json"))
    bs["last"], bs["timestamp"] = "125900", str(int(NOW + 110))
    feed_server.json("/bitstamp/api/v2/ticker/btcusd/", json.dumps(bs))
    src.refresh(NOW + 120)
    good = src.quality.last_good("btc_usd")
    assert good is not None and good.value == pytest.approx((126000.0 + 125900.0) / 2)


def test_two_disagreeing_sources_and_no_history_give_nothing(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply(status=500))
    bs = json.loads(fixture_bytes("bitstamp_ticker.json"))
    bs["last"] = "50000"
    feed_server.json("/bitstamp/api/v2/ticker/btcusd/", json.dumps(bs))
    src = live(feed_server)
    src.refresh(NOW)
    assert src.quality.last_good("btc_usd") is None
    assert src.rejection_counts()["btc_usd"]["sources_disagree"] == 2
