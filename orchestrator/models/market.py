"""Market snapshots (pydantic, at the edges) and the engine's columnar view of them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from orchestrator.models.base import StrictModel, freeze_arrays


class Observed(StrictModel):
    """One market value with where it came from and when it was true."""

    value: float = Field(description="The value, in the unit its field names.")
    source: str = Field(min_length=1, description="Feed or file that produced it.")
    observed_at: datetime = Field(description="When the value was true (UTC).")

    @field_validator("observed_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("observed_at must carry a time zone (UTC)")
        return v.astimezone(UTC)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v


class MarketSnapshot(StrictModel):
    """Everything the economics need at one moment. Every value carries source and time."""

    btc_usd: Observed = Field(description="BTC spot price, USD.")
    difficulty: Observed = Field(description="Network difficulty (dimensionless).")
    fees_btc_per_block: Observed = Field(
        description="Average fees per block over the last day, BTC."
    )
    subsidy_btc: Observed = Field(description="Block subsidy in force, BTC.")
    power_usd_mwh: dict[str, Observed] = Field(
        description="Power price per site name (USD/MWh); key 'default' serves any site."
    )
    gpu_usd_per_gpu_hour: dict[str, Observed] = Field(
        default_factory=dict, description="Rental price per GPU model, USD per GPU-hour."
    )
    hashpower_btc_per_unit_day: dict[str, Observed] = Field(
        default_factory=dict,
        description="Price of selling hashpower per algorithm (not sha256), BTC per unit per day.",
    )

    @field_validator("btc_usd", "difficulty")
    @classmethod
    def _positive(cls, v: Observed) -> Observed:
        if v.value <= 0:
            raise ValueError(f"must be > 0 (got {v.value} from {v.source})")
        return v

    @field_validator("fees_btc_per_block", "subsidy_btc")
    @classmethod
    def _non_negative(cls, v: Observed) -> Observed:
        if v.value < 0:
            raise ValueError(f"must be >= 0 (got {v.value} from {v.source})")
        return v

    def values(self) -> list[tuple[str, Observed]]:
        """Every observed value with a dotted name, for staleness checks and the journal."""
        out: list[tuple[str, Observed]] = [
            ("btc_usd", self.btc_usd),
            ("difficulty", self.difficulty),
            ("fees_btc_per_block", self.fees_btc_per_block),
            ("subsidy_btc", self.subsidy_btc),
        ]
        out += [(f"power_usd_mwh.{k}", v) for k, v in self.power_usd_mwh.items()]
        out += [(f"gpu_usd_per_gpu_hour.{k}", v) for k, v in self.gpu_usd_per_gpu_hour.items()]
        out += [
            (f"hashpower_btc_per_unit_day.{k}", v)
            for k, v in self.hashpower_btc_per_unit_day.items()
        ]
        return out

    def oldest_observed_at(self) -> datetime:
        return min(v.observed_at for _, v in self.values())


@dataclass(frozen=True, slots=True)
class ObservedTimes:
    """When each value of a `MarketPrices` was observed, seconds since epoch (UTC).

    Live, the feed's time stamp; in recorded data, the publication time, or for a value
    published ahead of its interval (day-ahead) the interval's start (a configured constant
    counts as observed at the decision's time).
    """

    #: The BTC price.
    btc_usd: float
    #: The network difficulty.
    difficulty: float
    #: The fees per block.
    fees_btc_per_block: float
    #: The block subsidy.
    subsidy_btc: float
    #: Per algorithm: the oldest value its price was made from (SHA-256: BTC price,
    #: difficulty, fees, subsidy; others: their hashpower price and the BTC price); NaN
    #: where there is no price.
    usd_per_unit_day: npt.NDArray[np.float64]
    #: Per GPU model (NaN: no price).
    gpu_usd_per_gpu_hour: npt.NDArray[np.float64]
    #: Per site, `fleet.sites` order.
    power_usd_mwh: npt.NDArray[np.float64]


_PRICE_ARRAYS = ("usd_per_unit_day", "gpu_usd_per_gpu_hour", "power_usd_mwh")


@dataclass(frozen=True, slots=True)
class MarketPrices:
    """The numbers one decision cycle uses, already aligned with the fleet's lookup tables.

    Built once per cycle from a `MarketSnapshot` (or straight from recorded arrays in a
    backtest), so the engine never touches pydantic objects in its hot path.
    """

    btc_usd: float
    difficulty: float
    fees_btc_per_block: float
    subsidy_btc: float
    #: USD per hashrate-unit per day, one entry per algorithm in `FleetTable.algorithms`.
    usd_per_unit_day: npt.NDArray[np.float64]
    #: USD per GPU-hour, one entry per GPU model in `FleetTable.gpu_models` (NaN: no price).
    gpu_usd_per_gpu_hour: npt.NDArray[np.float64]
    #: USD/MWh, one entry per site in `FleetTable.sites`.
    power_usd_mwh: npt.NDArray[np.float64]
    #: Seconds since epoch of the oldest value used (drives the stale-data hold).
    oldest_observed_s: float
    #: When each value was observed, or how to say so on first use (a backtest works it
    #: out only for a policy that asks); read it as `observed`.
    observed_source: ObservedTimes | Callable[[], ObservedTimes] | None = None

    def __post_init__(self) -> None:
        # A policy reads these arrays through the context: it cannot write them (a
        # backtest's rows are read-only already, so this makes no copy there).
        freeze_arrays(self, _PRICE_ARRAYS)

    @property
    def observed(self) -> ObservedTimes | None:
        """When each value was observed (None: the source did not say; see
        `DecisionContext.observed_s`)."""
        source = self.observed_source
        if source is None or isinstance(source, ObservedTimes):
            return source
        observed = source()
        object.__setattr__(self, "observed_source", observed)
        return observed

    def __reduce__(self) -> tuple[type[MarketPrices], tuple[object, ...]]:
        # Shipped with its observation times worked out, never with the table behind them.
        return (MarketPrices, (self.btc_usd, self.difficulty, self.fees_btc_per_block,
                               self.subsidy_btc, self.usd_per_unit_day,
                               self.gpu_usd_per_gpu_hour, self.power_usd_mwh,
                               self.oldest_observed_s, self.observed))

    @property
    def hashprice_usd_per_ph_day(self) -> float:
        from orchestrator.economics import hashprice_usd_per_ph_day

        return float(
            hashprice_usd_per_ph_day(
                self.difficulty, self.btc_usd, self.subsidy_btc, self.fees_btc_per_block
            )
        )


def no_finite_mining_price(btc_usd: float, difficulty: float) -> str:
    """Why values each in range are not decided on: together they price mining at no
    finite number (a BTC price of 1e308 overflows to infinity). Live, dry-run and
    recorded prices say it in these words."""
    return (f"prices mining at no finite number (BTC price {btc_usd:.6g} USD, "
            f"difficulty {difficulty:.6g})")
