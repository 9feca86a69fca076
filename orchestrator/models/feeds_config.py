"""Configuration of the live market feeds (adapters/market reads it).

Every source is public and key-free; base URLs are configurable so a site can point at
its own mempool instance or a mirror (and tests at 127.0.0.1). Units are in the names.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.models.base import StrictModel


def url_host(url: str) -> str:
    """The host of an http(s) URL, lower case, without port or brackets ('' if none)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    authority = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0].lower()
    return authority.split(":", 1)[0].lower()


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpSettings(StrictModel):
    """How every feed request is made. Retries cover timeouts, 429 and 5xx only."""

    timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Connect and read timeout per attempt, s."
    )
    retries: int = Field(
        default=2, ge=0, le=10, description="Extra attempts after the first one fails."
    )
    backoff_initial_s: float = Field(
        default=0.5, ge=0, description="Wait before the first retry, s; doubles per retry."
    )
    backoff_max_s: float = Field(
        default=10.0, ge=0, description="Longest wait between attempts (also caps Retry-After), s."
    )
    max_response_bytes: int = Field(
        default=2_000_000,
        ge=1024,
        description="Largest response body read, bytes; a longer one is refused.",
    )
    require_https: bool = Field(
        default=True, description="Refuse plain-http URLs (see allow_loopback_http)."
    )
    allow_loopback_http: bool = Field(
        default=False,
        description="Allow plain http to 127.0.0.1/::1/localhost even when require_https "
        "(local mirrors and tests).",
    )
    user_agent: str = Field(
        default="hashpivot/0.1", min_length=1, description="User-Agent header of every request."
    )

    def check_url(self, url: str, *, where: str) -> None:
        """Raise ValueError when `url` is not one this policy allows."""
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("http", "https") or not url_host(url):
            raise ValueError(f"{where}: {url!r} is not an http(s) URL")
        if scheme == "http" and self.require_https:
            if self.allow_loopback_http and is_loopback_host(url_host(url)):
                return
            raise ValueError(
                f"{where}: {url!r} is plain http; feeds require https "
                "(set http.require_https: false to allow it)"
            )


class HeaderSecret(StrictModel):
    """Where a request header's value (an API key) is read from, at each request, so a
    rotated key is picked up: an environment variable, or a file such as a Kubernetes
    Secret mounted into the pod. The value itself never appears in config, logs, status
    or the journal."""

    env: str | None = Field(default=None, min_length=1, description="Environment variable.")
    file: str | None = Field(
        default=None, min_length=1, description="File whose content (stripped) is the value."
    )
    prefix: str = Field(default="", description="Text before the value, e.g. 'Bearer '.")

    @model_validator(mode="after")
    def _one(self) -> HeaderSecret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


Headers = dict[str, HeaderSecret]


class ChainSource(StrictModel):
    """A chain-data API. Tried in order; each quantity comes from the first that has it.

    - `mempool`: a mempool.space-compatible REST API (base ends in `/api`): height,
      difficulty, hashrate, and per-block fees (averaged over `fees_window_blocks`).
    - `blockchain_info`: the Blockchain.com stats API: height, difficulty, hashrate and
      the last 24 h fee total / block count.
    - `esplora`: a Blockstream Esplora API (base ends in `/api`): height and difficulty.
    """

    kind: Literal["mempool", "blockchain_info", "esplora"]
    base_url: str = Field(description="Base URL, e.g. https://mempool.space/api.")


class PriceSource(StrictModel):
    """A public BTC/USD spot quote. The median of the sources that answer is used."""

    kind: Literal[
        "coinbase",
        "kraken",
        "bitstamp",
        "mempool",
        "binance",
        "coinbase_exchange",
        "coinbase_advanced",
        "coingecko",
    ] = Field(
        description="coinbase (/v2/prices/BTC-USD/spot), kraken (/0/public/Ticker), "
        "bitstamp (/api/v2/ticker/btcusd/), mempool (/v1/prices), binance "
        "(/api/v3/ticker/24hr, BTCUSDT), coinbase_exchange (/products/BTC-USD/ticker), "
        "coinbase_advanced (/api/v3/brokerage/market/products/BTC-USD), coingecko "
        "(/api/v3/simple/price)."
    )
    base_url: str = Field(description="Base URL, e.g. https://api.kraken.com.")


class FixedPower(StrictModel):
    """A fixed tariff."""

    kind: Literal["fixed"] = "fixed"
    usd_mwh: float = Field(description="Power price, USD/MWh.")


class HttpJsonPower(StrictModel):
    """Power price read from one field of a JSON document."""

    kind: Literal["http_json"] = "http_json"
    url: str = Field(description="URL of the JSON document (https unless allowed otherwise).")
    headers: Headers = Field(
        default_factory=dict,
        description="Request headers read from the environment or a file (API keys).",
    )
    value_path: str = Field(
        description="Dotted path to the price, list indexes allowed (-1: last), e.g. "
        "'data.-1.price'."
    )
    time_path: str | None = Field(
        default=None, description="Dotted path to the interval time; None: time of the fetch."
    )
    time_format: Literal["unix_s", "unix_ms", "iso"] = Field(
        default="iso", description="Unix seconds, Unix milliseconds or ISO-8601."
    )
    unit: Literal["usd_per_mwh", "usd_per_kwh"] = Field(
        default="usd_per_mwh", description="Unit of the price; converted to USD/MWh."
    )
    timezone: str = Field(default="UTC", description="Zone of times that carry none.")


class HttpCsvPower(StrictModel):
    """Power price from a CSV of intervals (ERCOT-style hub prices): the latest row at or
    before now (for the chosen settlement point) is used. Later rows with a price (a
    day-ahead market's published hours) reach policies as known ahead (`known_future`).

    ERCOT real-time hub prices, for example: `time_columns: [DeliveryDate, HourEnding]`,
    `time_format: '%m/%d/%Y %H:%M'`, `hour_ending: true`, `timezone: America/Chicago`,
    `key_column: SettlementPoint`, `key: HB_WEST`, `value_column: SettlementPointPrice`.
    """

    kind: Literal["http_csv"] = "http_csv"
    url: str = Field(description="URL of the CSV (https unless allowed otherwise).")
    headers: Headers = Field(
        default_factory=dict,
        description="Request headers read from the environment or a file (API keys).",
    )
    time_columns: list[str] = Field(
        default_factory=lambda: ["time"],
        min_length=1,
        description="Columns joined with a space to form the interval time.",
    )
    time_format: str | None = Field(
        default=None, description="strptime format of the joined time; None: ISO-8601."
    )
    hour_ending: bool = Field(
        default=False, description="Times label the end of an hourly interval (HE 01..24)."
    )
    timezone: str = Field(default="UTC", description="Zone of times that carry none.")
    value_column: str = Field(description="Column with the price.")
    key_column: str | None = Field(
        default=None, description="Column naming the price point in a multi-point file."
    )
    key: str | None = Field(default=None, description="Value of key_column to keep, e.g. HB_WEST.")
    unit: Literal["usd_per_mwh", "usd_per_kwh"] = Field(
        default="usd_per_mwh", description="Unit of the price; converted to USD/MWh."
    )
    separator: str = Field(default=",", min_length=1, max_length=1, description="Field separator.")

    @model_validator(mode="after")
    def _key_pair(self) -> HttpCsvPower:
        if (self.key_column is None) != (self.key is None):
            raise ValueError("key_column and key go together")
        return self


PowerSource = Annotated[FixedPower | HttpJsonPower | HttpCsvPower, Field(discriminator="kind")]


class HttpJsonGpuPrices(StrictModel):
    """GPU rental offers from a JSON list; the median (or min) per model is the price."""

    url: str = Field(description="URL of the JSON offers (https unless allowed otherwise).")
    headers: Headers = Field(
        default_factory=dict,
        description="Request headers read from the environment or a file (API keys).",
    )
    items_path: str = Field(
        default="", description="Dotted path to the list of offers ('' : the document)."
    )
    model_field: str = Field(default="gpu_model", description="Offer field naming the model.")
    price_field: str = Field(
        default="usd_per_gpu_hour", description="Offer field with the price, USD per GPU-hour."
    )
    time_field: str | None = Field(
        default=None, description="Offer field with its time; None: time of the fetch."
    )
    time_format: Literal["unix_s", "unix_ms", "iso"] = Field(
        default="iso", description="Unix seconds, Unix milliseconds or ISO-8601."
    )
    models: dict[str, str] = Field(
        default_factory=dict,
        description="Source model name → hashpivot GPU model key; empty: names as given. "
        "Offers of unmapped models are ignored when the map is not empty.",
    )
    aggregate: Literal["median", "min"] = Field(
        default="median", description="How the offers of one model make its price."
    )


class HttpJsonHashpower(StrictModel):
    """Hashpower prices (what a marketplace pays for an algorithm's hashpower) from a JSON
    list, e.g. a NiceHash-style `{"algos": [{"a": "<algorithm>", "p": <price>}, …]}`:
    `items_path: algos`, `algorithm_field: a`, `price_field: p`."""

    url: str = Field(description="URL of the JSON document (https unless allowed otherwise).")
    headers: Headers = Field(
        default_factory=dict,
        description="Request headers read from the environment or a file (API keys).",
    )
    items_path: str = Field(
        default="", description="Dotted path to the list of prices ('' : the document)."
    )
    algorithm_field: str = Field(default="algorithm", description="Item field naming it.")
    price_field: str = Field(default="price", description="Item field with the price.")
    time_field: str | None = Field(
        default=None, description="Item field with its time; None: time of the fetch."
    )
    time_format: Literal["unix_s", "unix_ms", "iso"] = Field(
        default="iso", description="Unix seconds, Unix milliseconds or ISO-8601."
    )
    algorithms: dict[str, str] = Field(
        min_length=1,
        description="Source algorithm name → hashpivot algorithm of the hardware profiles "
        "(the built-in GPU profiles sell 'gpu-hashpower'). Other items are ignored.",
    )
    scale: float = Field(
        default=1.0,
        gt=0,
        description="Multiplies the price into BTC per profile unit per day (a source "
        "quoting per TH/s for a profile rated in GH/s: 0.001).",
    )


class FeedTtls(StrictModel):
    """How long a value may be trusted after it was observed. Past it, the market is
    stale and the controller holds every node as it is."""

    btc_usd_s: float = Field(default=900.0, gt=0, description="BTC/USD spot, s.")
    difficulty_s: float = Field(
        default=6 * 3600.0, gt=0, description="Difficulty and block height (subsidy), s."
    )
    fees_s: float = Field(default=3 * 3600.0, gt=0, description="Fees per block, s.")
    power_s: float = Field(default=2 * 3600.0, gt=0, description="Power price, s.")
    gpu_s: float = Field(default=12 * 3600.0, gt=0, description="GPU rental price, s.")
    hashpower_s: float = Field(
        default=2 * 3600.0, gt=0, description="Hashpower price per algorithm, s."
    )


class PlausibleRange(StrictModel):
    """Values outside [min, max] are rejected (catches wrong units and garbage)."""

    min: float = Field(description="Smallest plausible value, in the feed's unit.")
    max: float = Field(description="Largest plausible value, in the feed's unit.")

    @model_validator(mode="after")
    def _ordered(self) -> PlausibleRange:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class PlausibleRanges(StrictModel):
    btc_usd: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=1_000.0, max=10_000_000.0),
        description="USD per BTC.",
    )
    difficulty: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=1e12, max=1e18),
        description="Mainnet difficulty (above 1e12 since 2015).",
    )
    fees_btc_per_block: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=1e-4, max=25.0),
        description="Average fees per block, BTC (day averages have stayed far above 1e-4; "
        "a value below is a sat/BTC mix-up).",
    )
    power_usd_mwh: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=-500.0, max=10_000.0),
        description="USD/MWh; wholesale prices can be negative, so negative values pass here.",
    )
    gpu_usd_per_gpu_hour: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=0.01, max=100.0),
        description="USD per GPU-hour.",
    )
    hashpower_btc_per_unit_day: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=1e-12, max=1.0),
        description="Hashpower price, BTC per profile unit per day.",
    )
    hashprice_usd_per_ph_day: PlausibleRange = Field(
        default_factory=lambda: PlausibleRange(min=3.0, max=1_500.0),
        description="Hashprice a first BTC/USD or difficulty from the only configured source "
        "may imply with the other inputs, USD/PH/day. Since the 2024 halving it has stayed "
        "near 35-150; a price in cents implies 100 times that, a difficulty read ×1000 a "
        "thousandth.",
    )


def _default_chain_sources() -> list[ChainSource]:
    return [
        ChainSource(kind="mempool", base_url="https://mempool.space/api"),
        ChainSource(kind="blockchain_info", base_url="https://api.blockchain.info"),
        ChainSource(kind="esplora", base_url="https://blockstream.info/api"),
    ]


def _default_price_sources() -> list[PriceSource]:
    return [
        PriceSource(kind="coinbase", base_url="https://api.coinbase.com"),
        PriceSource(kind="kraken", base_url="https://api.kraken.com"),
        PriceSource(kind="bitstamp", base_url="https://www.bitstamp.net"),
    ]


class LiveMarketConfig(StrictModel):
    """Where live prices come from and how long each value may be trusted."""

    http: HttpSettings = Field(default_factory=HttpSettings)
    chain_sources: list[ChainSource] = Field(
        default_factory=_default_chain_sources,
        min_length=1,
        description="Chain APIs in order of preference (later ones are fallbacks).",
    )
    price_sources: list[PriceSource] = Field(
        default_factory=_default_price_sources,
        min_length=1,
        description="BTC/USD sources; the median of those that answer is used.",
    )
    price_jump_band: float = Field(
        default=0.10,
        gt=0,
        description="A BTC/USD move larger than this share of the last good price is "
        "accepted only when a second source confirms it.",
    )
    price_agreement: float = Field(
        default=0.02,
        gt=0,
        description="Quotes within this share of each other count as agreeing (confirmation).",
    )
    fees_window_blocks: int = Field(
        default=144, ge=1, le=2016, description="Blocks the fee average covers (144 ≈ 1 day)."
    )
    power_usd_mwh_fixed: float | None = Field(
        default=None, description="Fixed tariff, USD/MWh, when no power price feed is used."
    )
    power_sources: dict[str, PowerSource] = Field(
        default_factory=dict,
        description="Power price source per site name; 'default' serves every site without "
        "its own. Without any, power_usd_mwh_fixed is the 'default' tariff.",
    )
    power_jump_band: float | None = Field(
        default=None,
        gt=0,
        description="A power price move beyond this share of the last good value waits for a "
        "second reading that confirms it; None: real-time prices may jump freely.",
    )
    gpu_usd_per_gpu_hour_fixed: dict[str, float] = Field(
        default_factory=dict, description="Fixed rental price per GPU model, USD/GPU-hour."
    )
    gpu_sources: list[HttpJsonGpuPrices] = Field(
        default_factory=list,
        description="GPU rental price feeds; a model they price overrides its fixed price.",
    )
    hashpower_btc_per_unit_day_fixed: dict[str, float] = Field(
        default_factory=dict,
        description="Fixed hashpower price per algorithm, BTC per unit per day (what the "
        "GPU profiles' mining earns, as in backtests).",
    )
    hashpower_sources: list[HttpJsonHashpower] = Field(
        default_factory=list,
        description="Live hashpower price feeds; an algorithm they price overrides its fixed "
        "price.",
    )
    gpu_jump_band: float | None = Field(
        default=None,
        gt=0,
        description="A GPU price move beyond this share waits for a confirming second reading.",
    )
    ttl: FeedTtls = Field(default_factory=FeedTtls)
    ranges: PlausibleRanges = Field(default_factory=PlausibleRanges)
    max_clock_skew_s: float = Field(
        default=300.0, ge=0, description="Values stamped further in the future are rejected, s."
    )
    poll_interval_s: float = Field(
        default=60.0, ge=0, description="A snapshot re-polls the feeds when older than this, s."
    )
    history_max_points: int = Field(
        default=20_000, ge=1, description="Points of market history kept for forecasting."
    )

    @field_validator("gpu_usd_per_gpu_hour_fixed", "hashpower_btc_per_unit_day_fixed")
    @classmethod
    def _positive_gpu(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: p for k, p in v.items() if not p > 0}
        if bad:
            raise ValueError(f"prices must be > 0, got {bad}")
        return v

    @model_validator(mode="after")
    def _check(self) -> LiveMarketConfig:
        urls = [(f"chain_sources[{i}]", s.base_url) for i, s in enumerate(self.chain_sources)]
        urls += [(f"price_sources[{i}]", s.base_url) for i, s in enumerate(self.price_sources)]
        urls += [
            (f"power_sources.{k}", s.url)
            for k, s in self.power_sources.items()
            if not isinstance(s, FixedPower)
        ]
        urls += [(f"gpu_sources[{i}]", s.url) for i, s in enumerate(self.gpu_sources)]
        urls += [
            (f"hashpower_sources[{i}]", s.url) for i, s in enumerate(self.hashpower_sources)
        ]
        for where, url in urls:
            self.http.check_url(url, where=where)
        if self.power_usd_mwh_fixed is not None and "default" in self.power_sources:
            raise ValueError("give power_usd_mwh_fixed or power_sources.default, not both")
        return self

    def power_by_site(self) -> dict[str, PowerSource]:
        """Power sources per site, with the fixed tariff as 'default' when given."""
        out: dict[str, PowerSource] = dict(self.power_sources)
        if self.power_usd_mwh_fixed is not None:
            out["default"] = FixedPower(usd_mwh=self.power_usd_mwh_fixed)
        return out
