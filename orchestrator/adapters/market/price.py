"""BTC/USD spot from public exchange and aggregator APIs (no keys).

Each reader returns one `Quote`; `quality.combine_quotes` takes the median of those
that agree, and a large move needs a second source to confirm it.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.parse import brief, dig, number
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


def price_feed(source: PriceSource, http: FeedHttpClient) -> PriceFeed:
    kinds: dict[str, type[_Exchange]] = {
        "coinbase": Coinbase,
        "kraken": Kraken,
        "bitstamp": Bitstamp,
        "mempool": MempoolPrice,
    }
    return kinds[source.kind](source, http)
