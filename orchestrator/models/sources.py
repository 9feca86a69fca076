"""Recorded data sources: how a file (or several) becomes one time series or a job trace.

A source names a file, a glob or `bundled:…`, and says declaratively what the file
needs: which rows to keep (`filter`, `key`), how to read its time stamps (`time_format`,
`timezone`, `ambiguous`, `time_shift_s`), how to compute the value (`value`, `unit`,
`scale`, `currency`/`fx`), whether to sort and how to combine several rows per stamp
(`aggregate`). `query` is SQL over the file for anything else. Files are read through
DuckDB (see docs/data.md); the models here are plain data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.models.base import StrictModel

BUNDLED_PREFIX = "bundled:"

Unit = Literal[
    "usd",
    "usd_per_mwh",
    "usd_per_kwh",
    "btc",
    "sat",
    "usd_per_gpu_hour",
    "btc_per_unit_day",
    "dimensionless",
]


class TableSource(StrictModel):
    """Where rows come from and how the file is parsed (shared by series and job traces)."""

    path: str = Field(
        description=f"File path or glob (relative to the config file), or '{BUNDLED_PREFIX}…'."
    )
    format: Literal["csv", "jsonl", "json", "parquet"] | None = Field(
        default=None, description="File format; default from the file suffix."
    )
    separator: str = Field(default=",", min_length=1, max_length=1, description="CSV only.")
    decimal: Literal[".", ","] = Field(
        default=".", description="Decimal mark of numbers written as text (',' also drops '.')."
    )
    skip_rows: int = Field(
        default=0, ge=0, description="CSV lines to skip before the header (titles, notes)."
    )
    query: str | None = Field(
        default=None,
        description="SQL over the file, which is the table `src`; the other options apply "
        "to its result.",
    )
    filter: str | None = Field(
        default=None, description="SQL condition over the columns: rows where it holds are kept."
    )
    timezone: str = Field(default="UTC", description="Zone of time stamps that carry none.")
    time_format: str | None = Field(
        default=None,
        description="strptime format of time stamps written as text (e.g. '%d.%m.%Y %H:%M'); "
        "default: ISO 8601, dates, or epoch seconds.",
    )
    ambiguous: Literal["infer", "earlier", "later", "error"] = Field(
        default="infer",
        description="Local times the autumn clock change repeats: 'infer' takes the file's "
        "row order (first of two is the earlier in a file running forward).",
    )

    def expressions(self) -> list[str]:
        """The SQL this source runs over the file's columns."""
        return [x for x in (self.query, self.filter) if x is not None]

    @model_validator(mode="after")
    def _separators(self) -> TableSource:
        if self.separator == self.decimal:
            raise ValueError("separator and decimal mark must differ")
        return self


class SeriesSource(TableSource):
    """A recorded time series: one value per time stamp, after the options above."""

    time_column: str = Field(default="time", description="Column with the timestamp.")
    time: str | None = Field(
        default=None,
        description="SQL expression for the time stamp instead of time_column (e.g. a date "
        "column plus an hour column).",
    )
    value_column: str | None = Field(default=None, description="Column with the value.")
    value: str | None = Field(
        default=None,
        description="SQL expression for the value instead of value_column (e.g. "
        "'FeeTotUSD / PriceUSD / BlkCnt').",
    )
    key_column: str | None = Field(
        default=None, description="Column that names the series in a multi-series file."
    )
    key: str | None = Field(default=None, description="Value of key_column to keep.")
    unit: Unit = Field(
        default="dimensionless", description="Unit of the values; converted on load."
    )
    scale: float = Field(default=1.0, description="Factor applied to every value (after unit).")
    currency: str = Field(
        default="USD",
        description="Currency of the values; anything but USD needs `fx` to convert.",
    )
    fx: float | SeriesSource | None = Field(
        default=None,
        description="USD per unit of `currency`: a fixed rate or a recorded FX series (the "
        "rate in force at each row's time is used).",
    )
    sort: bool = Field(default=False, description="Sort rows by time (newest-first files).")
    aggregate: Literal["median", "mean", "min", "max", "first", "last"] | None = Field(
        default=None,
        description="Combine several rows with the same time stamp; unset: duplicates are "
        "an error.",
    )
    time_shift_s: float = Field(
        default=0.0,
        description="Added to every stamp, e.g. -3600 turns hour-ending stamps into "
        "hour-beginning ones.",
    )
    observed_lag_s: float = Field(
        default=0.0,
        description="Delay between a row's (shifted) stamp and when its value was known: 3600 "
        "for hour-beginning real-time prices, 86400 for daily aggregates, negative for "
        "values published ahead (day-ahead prices).",
    )
    observed_column: str | None = Field(
        default=None,
        description="Column with each value's publication time (instead of observed_lag_s).",
    )
    max_gap_s: float = Field(
        default=2 * 86_400.0,
        gt=0,
        description="Values are carried forward at most this long; a longer gap is an error "
        "inside the backtest period.",
    )

    def expressions(self) -> list[str]:
        return [*super().expressions(), *(x for x in (self.time, self.value) if x is not None)]

    @field_validator("fx")
    @classmethod
    def _positive_rate(cls, v: float | SeriesSource | None) -> float | SeriesSource | None:
        if isinstance(v, float | int) and not v > 0:
            raise ValueError(f"a currency rate is USD per unit, above 0 (got {v:g})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SeriesSource:
        if (self.key_column is None) != (self.key is None):
            raise ValueError("key_column and key go together")
        if (self.value_column is None) == (self.value is None):
            raise ValueError("give exactly one of value_column and value")
        if self.currency.upper() != "USD" and self.fx is None:
            raise ValueError(
                f"currency {self.currency} needs fx: USD per {self.currency} (a rate or a series)"
            )
        if self.observed_column is not None and self.observed_lag_s != 0.0:
            raise ValueError("give observed_column or observed_lag_s, not both")
        return self


class JobTraceConfig(TableSource):
    """Recorded AI jobs replayed as demand in a backtest."""

    submit_column: str = Field(
        default="submit_offset_s",
        description="Submit time: seconds from the trace's start, or a time stamp.",
    )
    gpus_column: str = "gpus"
    duration_column: str | None = Field(
        default="duration_s", description="Run time, s (unset when end_column is given)."
    )
    end_column: str | None = Field(
        default=None,
        description="End (or deletion) time of each job: duration = end - start.",
    )
    start_column: str | None = Field(
        default=None, description="Start time for end_column (default: the submit time)."
    )
    interruptible_column: str | None = "interruptible"
    gpu_model_column: str | None = Field(
        default=None, description="Column naming each job's GPU model (mapped by gpu_models)."
    )
    gpu_models: dict[str, str] = Field(
        default_factory=dict,
        description="Trace GPU name → hardware GPU model; rows whose name is not listed are "
        "dropped.",
    )
    gpu_model: str | None = Field(default=None, description="Model every job needs; None: any.")
    load_factor: float = Field(
        default=1.0,
        gt=0,
        description="Scale the trace so its mean GPU demand is this share of the site's GPUs.",
    )
    max_wait_h: float = Field(
        default=24.0, gt=0, description="A job that waits longer than this leaves (an SLA miss)."
    )
    offered_usd_per_gpu_hour: float | None = Field(
        default=None, ge=0, description="Price jobs pay; None: the market rental price."
    )

    @model_validator(mode="after")
    def _duration(self) -> JobTraceConfig:
        if self.end_column is not None and self.duration_column not in (None, "duration_s"):
            raise ValueError("give duration_column or end_column, not both")
        if self.start_column is not None and self.end_column is None:
            raise ValueError("start_column goes with end_column")
        if self.gpu_model_column is not None and not self.gpu_models:
            raise ValueError("gpu_model_column needs gpu_models (trace name → GPU model)")
        return self
