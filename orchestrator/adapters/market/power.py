"""Power price per site: a fixed tariff, one field of a JSON document, or the latest
interval of a CSV (ERCOT-style hub prices), in USD/MWh. A CSV that also lists intervals
starting later (a day-ahead market) offers them beside the price in force."""

from __future__ import annotations

import contextlib
import csv
import io
from typing import Protocol

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.parse import brief, dig, number, timestamp
from orchestrator.adapters.market.quality import Candidate, FeedRejectError, Reject
from orchestrator.models.feeds_config import (
    FixedPower,
    HttpCsvPower,
    HttpJsonPower,
    PowerSource,
    url_host,
)

_TO_USD_PER_MWH = {"usd_per_mwh": 1.0, "usd_per_kwh": 1000.0}
HOUR_S = 3600.0


class PowerFeed(Protocol):
    name: str

    def read(self, now_s: float) -> Candidate: ...


class FixedPowerFeed:
    """A tariff holds now, so it is observed at every poll and never goes stale."""

    def __init__(self, source: FixedPower) -> None:
        self.name = "fixed"
        self.value = source.usd_mwh

    def read(self, now_s: float) -> Candidate:
        return Candidate(self.value, self.name, now_s)


class JsonPowerFeed:
    def __init__(self, source: HttpJsonPower, http: FeedHttpClient) -> None:
        self.source = source
        self.http = http
        self.name = f"http_json@{url_host(source.url)}"

    def read(self, now_s: float) -> Candidate:
        src, url = self.source, self.source.url
        doc = self.http.get(url, headers=src.headers).json()
        value = number(dig(doc, src.value_path, source=url), what=src.value_path, source=url)
        observed = now_s
        if src.time_path is not None:
            raw = dig(doc, src.time_path, source=url)
            observed = timestamp(raw, src.time_format, tz=src.timezone, source=url)
        return Candidate(value * _TO_USD_PER_MWH[src.unit], self.name, observed)


class CsvPowerFeed:
    """The latest interval that has started by `now` (rows may come in any order), and
    the priced intervals that start later."""

    def __init__(self, source: HttpCsvPower, http: FeedHttpClient) -> None:
        self.source = source
        self.http = http
        self.name = f"http_csv@{url_host(source.url)}"

    def read(self, now_s: float) -> Candidate:
        url = self.source.url
        text = self.http.get(url, headers=self.source.headers).text()
        try:
            return self._latest(text, now_s)
        except csv.Error as exc:
            # NUL bytes, a stray carriage return inside a field, a field past csv's limit.
            raise FeedRejectError(Reject.SCHEMA, f"not a readable CSV: {exc}", source=url) from None

    def _latest(self, text: str, now_s: float) -> Candidate:
        src, url = self.source, self.source.url
        rows = csv.DictReader(io.StringIO(text), delimiter=src.separator)
        needed = [
            *src.time_columns,
            src.value_column,
            *([src.key_column] if src.key_column else []),
        ]
        missing = [c for c in needed if c not in (rows.fieldnames or [])]
        if missing:
            raise FeedRejectError(
                Reject.SCHEMA,
                f"missing column(s) {missing}; have {brief(rows.fieldnames)}",
                source=url,
            )
        fmt = src.time_format or "iso"
        shift = -HOUR_S if src.hour_ending else 0.0
        to_usd_mwh = _TO_USD_PER_MWH[src.unit]
        best: tuple[float, float] | None = None
        # Intervals that start later (a day-ahead market's coming hours): published now,
        # offered beside the price in force. A later row for the same interval wins.
        ahead: dict[float, float] = {}
        for line, row in enumerate(rows, start=2):
            if src.key_column is not None and row[src.key_column] != src.key:
                continue
            if any(row.get(c) is None for c in needed):
                raise FeedRejectError(Reject.SCHEMA, f"line {line} is cut short", source=url)
            when = " ".join(row[c].strip() for c in src.time_columns)
            start = timestamp(when, fmt, tz=src.timezone, source=f"{url} line {line}") + shift
            if start > now_s:
                with contextlib.suppress(FeedRejectError):  # an hour not priced yet: left out
                    ahead[start] = to_usd_mwh * number(row[src.value_column],
                                                       what=src.value_column, source=url)
                continue
            value = number(
                row[src.value_column], what=src.value_column, source=f"{url} line {line}"
            )
            if best is None or start > best[0]:
                best = (start, value)
        if best is None:
            what = f" for {src.key_column}={src.key}" if src.key_column else ""
            raise FeedRejectError(Reject.SCHEMA, f"no interval started by now{what}", source=url)
        return Candidate(best[1] * to_usd_mwh, self.name, best[0],
                         ahead=tuple(sorted(ahead.items())))


def power_feed(source: PowerSource, http: FeedHttpClient) -> PowerFeed:
    if isinstance(source, FixedPower):
        return FixedPowerFeed(source)
    if isinstance(source, HttpJsonPower):
        return JsonPowerFeed(source, http)
    return CsvPowerFeed(source, http)
