"""Binance, Coinbase Exchange, Coinbase Advanced Trade and CoinGecko readers against
bodies in their documented shapes, alone and through `LiveMarketSource`."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.quality import Reject
from tests.contract.feedserver import (
    NOW,
    FeedServer,
    Reply,
    fixture_bytes,
    live_config,
    serve_market,
)

ROUTES = {
    "binance": ("/binance", "/binance/api/v3/ticker/24hr?symbol=BTCUSDT",
                "binance_ticker_24hr.json"),
    "coinbase_exchange": ("/cbx", "/cbx/products/BTC-USD/ticker",
                          "coinbase_exchange_ticker.json"),
    "coinbase_advanced": ("/cba", "/cba/api/v3/brokerage/market/products/BTC-USD",
                          "coinbase_advanced_product.json"),
    "coingecko": ("/cg", "/cg/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"
                  "&include_last_updated_at=true", "coingecko_simple_price.json"),
}


def expected(kind: str) -> tuple[float, float]:
    """(price, time) read straight from the fixture, as each API documents them."""
    doc = json.loads(fixture_bytes(ROUTES[kind][2]))
    if kind == "binance":
        return float(doc["lastPrice"]), doc["closeTime"] / 1000
    if kind == "coinbase_exchange":
        return float(doc["price"]), datetime.fromisoformat(doc["time"]).timestamp()
    if kind == "coinbase_advanced":
        return float(doc["price"]), NOW  # no time given: the fetch
    return float(doc["bitcoin"]["usd"]), float(doc["bitcoin"]["last_updated_at"])


def only(server: FeedServer, *kinds: str) -> LiveMarketSource:
    serve_market(server)
    for kind in kinds:
        _, route, fixture = ROUTES[kind]
        server.route(route, Reply.fixture(fixture))
    prices = [{"kind": k, "base_url": f"{server.base}{ROUTES[k][0]}"} for k in kinds]
    return LiveMarketSource.from_config(live_config(server, price_sources=prices),
                                        sleep=lambda s: None)


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_each_reader_parses_its_documented_body(feed_server: FeedServer, kind: str) -> None:
    src = only(feed_server, kind)
    try:
        quote = src.prices[0].quote(NOW)
    finally:
        src.close()
    assert (quote.value, quote.observed_s) == pytest.approx(expected(kind))
    assert quote.source == f"{kind}@127.0.0.1"


def test_the_four_make_one_median(feed_server: FeedServer) -> None:
    src = only(feed_server, *sorted(ROUTES))
    try:
        snap = src.snapshot(NOW)
    finally:
        src.close()
    values = sorted(expected(k)[0] for k in ROUTES)
    assert snap.btc_usd.value == pytest.approx((values[1] + values[2]) / 2)
    oldest = min(expected(k)[1] for k in ROUTES)  # the median is no fresher than its quotes
    assert snap.btc_usd.observed_at.timestamp() == pytest.approx(oldest)


@pytest.mark.parametrize(("kind", "change", "reason"), [
    ("binance", {"symbol": "ETHUSDT"}, Reject.UNITS),
    ("coinbase_advanced", {"product_id": "BTC-EUR"}, Reject.UNITS),
    ("coinbase_exchange", {"time": "yesterday"}, Reject.BAD_TIMESTAMP),
    ("coingecko", {"bitcoin": {"eur": 89000}}, Reject.SCHEMA),
])
def test_wrong_pair_or_shape_is_refused(feed_server: FeedServer, kind: str,
                                         change: dict[str, object], reason: Reject) -> None:
    src = only(feed_server, kind)
    doc = {**json.loads(fixture_bytes(ROUTES[kind][2])), **change}
    feed_server.json(ROUTES[kind][1], json.dumps(doc))
    try:
        report = src.refresh(NOW)
    finally:
        src.close()
    assert ("btc_usd", reason.value) in [(f, r) for f, r, _ in report.rejected]
