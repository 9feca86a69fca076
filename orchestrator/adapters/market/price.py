"""BTC/USD spot from public exchange and aggregator APIs (no keys).

Each reader returns one `Quote`; `quality.combine_quotes` takes the median of those
that agree, and a large move needs a second source to confirm it.

The readers are written here rather than taken from ccxt: each is one public GET and a
few fields, ccxt would add a large dependency (and its own retry, rate-limit and error
handling) between these calls and the feed policy (`http.FeedHttpClient`) that bounds
size, time and retries for every source alike; and ccxt does not cover the aggregators
(mempool, CoinGecko) or keep the exchange's own time of a quote where one is given.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.parse import brief, dig, number, timestamp
from orchestrator.adapters.market.parse import field as get_field
from orchestrator.adapters.market.quality import FeedRejectError, Quote, Reject
from orchestrator.models.feeds_config import PriceSource, url_host


class PriceFeed(Protocol):
    name: str

    def quote(self, now_s: float) -> Quote: ...


class _Exchange:
    def __init__(self, source: PriceSource, http: FeedHttpClient) -> None:
        self.base = source.base_url.rstrip("/")
        self.name = f"{source.kind}@{url_host(source.base_url)}"
        self.http = http

    def quote(self, now_s: float) -> Quote:
        raise NotImplementedError


class Coinbase(_Exchange):
    """`GET /v2/prices/BTC-USD/spot` → `{"data": {"amount": "…", "base": "BTC",
    "currency": "USD"}}` (no time: the fetch time is used)."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/v2/prices/BTC-USD/spot"
        data = get_field(self.http.get(url).json(), "data", source=url)
        base = get_field(data, "base", source=url)
        currency = get_field(data, "currency", source=url)
        if (base, currency) != ("BTC", "USD"):
            raise FeedRejectError(
                Reject.UNITS, f"quoted {brief(base)}-{brief(currency)}, not BTC-USD", source=url
            )
        value = number(get_field(data, "amount", source=url), what="amount", source=url)
        return Quote(value, self.name, now_s)


class Kraken(_Exchange):
    """`GET /0/public/Ticker?pair=XBTUSD` → `{"error": [], "result": {"XXBTZUSD":
    {"c": ["<last price>", "<lot>"], …}}}` (no time: the fetch time is used)."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/0/public/Ticker"
        doc = self.http.get(url, params={"pair": "XBTUSD"}).json()
        errors = get_field(doc, "error", source=url)
        if errors:
            raise FeedRejectError(Reject.SCHEMA, f"API error {brief(errors)}", source=url)
        result = get_field(doc, "result", source=url)
        if not isinstance(result, dict) or len(result) != 1:
            raise FeedRejectError(Reject.SCHEMA, "expected exactly one pair in result", source=url)
        pair, ticker = next(iter(result.items()))
        if not ("XBT" in pair or "BTC" in pair) or not pair.endswith("USD"):
            raise FeedRejectError(Reject.UNITS, f"pair {brief(pair)} is not BTC/USD", source=url)
        value = number(dig(ticker, "c.0", source=url), what="c[0]", source=url)
        return Quote(value, self.name, now_s)


class Bitstamp(_Exchange):
    """`GET /api/v2/ticker/btcusd/` → `{"last": "…", "timestamp": "<unix s>", …}`."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/api/v2/ticker/btcusd/"
        doc = self.http.get(url).json()
        value = number(get_field(doc, "last", source=url), what="last", source=url)
        observed = number(get_field(doc, "timestamp", source=url), what="timestamp", source=url)
        pair = doc.get("pair") if isinstance(doc, dict) else None
        if pair is not None and pair != "BTC/USD":
            raise FeedRejectError(Reject.UNITS, f"pair {brief(pair)} is not BTC/USD", source=url)
        return Quote(value, self.name, observed)


class MempoolPrice(_Exchange):
    """mempool.space's aggregate: `GET /v1/prices` → `{"time": <unix s>, "USD": …}`."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/v1/prices"
        doc = self.http.get(url).json()
        value = number(get_field(doc, "USD", source=url), what="USD", source=url)
        observed = number(get_field(doc, "time", source=url), what="time", source=url)
        return Quote(value, self.name, observed)


class Binance(_Exchange):
    """`GET /api/v3/ticker/24hr?symbol=BTCUSDT` → `{"symbol": "BTCUSDT", "lastPrice": "…",
    "closeTime": <unix ms>, …}`. Binance quotes BTC in USDT, a dollar stablecoin, taken as
    USD: a depeg shows as a quote the other sources outvote."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/api/v3/ticker/24hr"
        doc = self.http.get(url, params={"symbol": "BTCUSDT"}).json()
        symbol = get_field(doc, "symbol", source=url)
        if symbol != "BTCUSDT":
            raise FeedRejectError(
                Reject.UNITS, f"symbol {brief(symbol)} is not BTCUSDT", source=url
            )
        value = number(get_field(doc, "lastPrice", source=url), what="lastPrice", source=url)
        closed = number(get_field(doc, "closeTime", source=url), what="closeTime", source=url)
        return Quote(value, self.name, closed / 1000.0)


class CoinbaseExchange(_Exchange):
    """Coinbase Exchange `GET /products/BTC-USD/ticker` → `{"price": "…", "time":
    "<ISO-8601>", …}` (the last trade and its time)."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/products/BTC-USD/ticker"
        doc = self.http.get(url).json()
        value = number(get_field(doc, "price", source=url), what="price", source=url)
        observed = timestamp(get_field(doc, "time", source=url), "iso", source=url)
        return Quote(value, self.name, observed)


class CoinbaseAdvanced(_Exchange):
    """Coinbase Advanced Trade public market data `GET /api/v3/brokerage/market/products/
    BTC-USD` → `{"product_id": "BTC-USD", "price": "…", "quote_currency_id": "USD", …}` (no
    time: the fetch time is used)."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/api/v3/brokerage/market/products/BTC-USD"
        doc = self.http.get(url).json()
        product = get_field(doc, "product_id", source=url)
        if product != "BTC-USD":
            raise FeedRejectError(
                Reject.UNITS, f"product {brief(product)} is not BTC-USD", source=url
            )
        value = number(get_field(doc, "price", source=url), what="price", source=url)
        return Quote(value, self.name, now_s)


class CoinGecko(_Exchange):
    """`GET /api/v3/simple/price?ids=bitcoin&vs_currencies=usd&include_last_updated_at=
    true` → `{"bitcoin": {"usd": …, "last_updated_at": <unix s>}}` (an aggregate)."""

    def quote(self, now_s: float) -> Quote:
        url = f"{self.base}/api/v3/simple/price"
        params = {"ids": "bitcoin", "vs_currencies": "usd", "include_last_updated_at": "true"}
        coin = get_field(self.http.get(url, params=params).json(), "bitcoin", source=url)
        value = number(get_field(coin, "usd", source=url), what="usd", source=url)
        updated = number(
            get_field(coin, "last_updated_at", source=url), what="last_updated_at", source=url
        )
        return Quote(value, self.name, updated)


def price_feed(source: PriceSource, http: FeedHttpClient) -> PriceFeed:
    kinds: dict[str, type[_Exchange]] = {
        "coinbase": Coinbase,
        "kraken": Kraken,
        "bitstamp": Bitstamp,
        "mempool": MempoolPrice,
        "binance": Binance,
        "coinbase_exchange": CoinbaseExchange,
        "coinbase_advanced": CoinbaseAdvanced,
        "coingecko": CoinGecko,
    }
    return kinds[source.kind](source, http)
