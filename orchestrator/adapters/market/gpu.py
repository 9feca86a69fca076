"""GPU rental price per model, USD per GPU-hour: fixed, or offers from a JSON feed; and
the price GPU hashpower sells for per algorithm, BTC per unit per day."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Protocol

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.parse import brief, dig, number, timestamp
from orchestrator.adapters.market.parse import field as get_field
from orchestrator.adapters.market.quality import Candidate, FeedRejectError, Reject
from orchestrator.models.feeds_config import HttpJsonGpuPrices, HttpJsonHashpower, url_host


class GpuFeed(Protocol):
    name: str

    def read(self, now_s: float) -> dict[str, Candidate]: ...


class FixedGpuFeed:
    """Configured prices hold now: observed at every poll."""

    def __init__(self, prices: Mapping[str, float]) -> None:
        self.name = "fixed"
        self.prices = dict(prices)

    def read(self, now_s: float) -> dict[str, Candidate]:
        return {m: Candidate(p, self.name, now_s) for m, p in self.prices.items()}


class JsonGpuFeed:
    """A list of offers; the median (or lowest) price per model. An offer that breaks the
    schema fails the whole read: a half-parsed market is not a market."""

    def __init__(self, source: HttpJsonGpuPrices, http: FeedHttpClient) -> None:
        self.source = source
        self.http = http
        self.name = f"http_json@{url_host(source.url)}"

    def read(self, now_s: float) -> dict[str, Candidate]:
        src, url = self.source, self.source.url
        offers = dig(self.http.get(url, headers=src.headers).json(), src.items_path, source=url)
        if not isinstance(offers, list):
            raise FeedRejectError(Reject.SCHEMA, f"{src.items_path!r} is not a list", source=url)
        prices: dict[str, list[float]] = {}
        times: dict[str, float] = {}
        for i, offer in enumerate(offers):
            where = f"{url} item {i}"
            name = get_field(offer, src.model_field, source=where)
            if not isinstance(name, str):
                raise FeedRejectError(
                    Reject.SCHEMA, f"model {brief(name)} is not text", source=where
                )
            model = src.models.get(name, None if src.models else name)
            if model is None:
                continue
            price = number(
                get_field(offer, src.price_field, source=where), what="price", source=where
            )
            observed = now_s
            if src.time_field is not None:
                raw = get_field(offer, src.time_field, source=where)
                observed = timestamp(raw, src.time_format, source=where)
            prices.setdefault(model, []).append(price)
            # A model's price is as old as its oldest offer.
            times[model] = min(times.get(model, observed), observed)
        if not prices:
            raise FeedRejectError(Reject.SCHEMA, "no offer for any configured model", source=url)
        agg = statistics.median if src.aggregate == "median" else min
        return {m: Candidate(float(agg(p)), self.name, times[m]) for m, p in prices.items()}


class JsonHashpowerFeed:
    """Hashpower prices per algorithm from a marketplace's JSON list (BTC per unit per
    day after `scale`). Items of algorithms not in `algorithms` are skipped; a mapped item
    that breaks the schema fails the read."""

    def __init__(self, source: HttpJsonHashpower, http: FeedHttpClient) -> None:
        self.source = source
        self.http = http
        self.name = f"hashpower@{url_host(source.url)}"

    def read(self, now_s: float) -> dict[str, Candidate]:
        src, url = self.source, self.source.url
        items = dig(self.http.get(url, headers=src.headers).json(), src.items_path, source=url)
        if not isinstance(items, list):
            raise FeedRejectError(Reject.SCHEMA, f"{src.items_path!r} is not a list", source=url)
        out: dict[str, Candidate] = {}
        for i, item in enumerate(items):
            where = f"{url} item {i}"
            name = get_field(item, src.algorithm_field, source=where)
            # Marketplaces name algorithms by text or by number.
            algorithm = src.algorithms.get(str(name)) if isinstance(name, str | int) else None
            if algorithm is None or algorithm in out:
                continue
            price = number(get_field(item, src.price_field, source=where), what="price",
                           source=where)
            observed = now_s
            if src.time_field is not None:
                raw = get_field(item, src.time_field, source=where)
                observed = timestamp(raw, src.time_format, source=where)
            out[algorithm] = Candidate(price * src.scale, self.name, observed)
        if not out:
            raise FeedRejectError(Reject.SCHEMA, "no price for any configured algorithm",
                                  source=url)
        return out
