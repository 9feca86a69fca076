"""Recorded market data: series read from files and replayed with no look-ahead.

Each series is read once (through DuckDB, see `tables`) into numpy arrays: time, value,
and when each value became known. At a decision time `now` only values observed at or
before `now` are visible; the ledger of a backtest uses the value in force during each
interval ("realized"). Rules for bad files: missing columns, unreadable time stamps,
duplicate or unsorted stamps are errors naming file, line and column. A row with an
empty or unreadable value is left out and is an error only if the backtest period needs
it. Gaps are carried forward up to `max_gap_s`; a longer gap inside the period is an
error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.backtest.tables import (
    Kind,
    Table,
    evaluate,
    ident,
    literal,
    open_table,
    raw_text,
    raw_texts,
    resolve_path,
    to_utc,
    zone_of,
)
from orchestrator.errors import ConfigError, DataError
from orchestrator.framework.context import MarketHistory
from orchestrator.models.base import freeze_arrays
from orchestrator.models.config import RecordedMarketConfig, SeriesSource
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import SHA256
from orchestrator.models.market import (
    MarketPrices,
    MarketSnapshot,
    Observed,
    ObservedTimes,
    no_finite_mining_price,
)

__all__ = [
    "HistoryRows",
    "PriceTable",
    "RecordedMarketSource",
    "Series",
    "read_series",
    "resolve_path",
]

F64 = npt.NDArray[np.float64]
_log = logging.getLogger("hashpivot.data")

UNIT_SCALE: dict[str, float] = {
    "usd": 1.0,
    "usd_per_mwh": 1.0,
    "usd_per_kwh": 1000.0,
    "btc": 1.0,
    "sat": 1e-8,
    "usd_per_gpu_hour": 1.0,
    "btc_per_unit_day": 1.0,
    "dimensionless": 1.0,
}


@dataclass(frozen=True, slots=True)
class Series:
    """One recorded series: sorted times (s), values, and when each value became known."""

    name: str
    source: str
    times_s: F64
    values: F64
    observed_s: F64
    max_gap_s: float
    #: Rows left out (empty or unreadable values), by time: errors inside the period.
    issues: tuple[RowIssue, ...] = ()

    @staticmethod
    def constant(name: str, value: float) -> Series:
        return Series(
            name=name,
            source=f"config:{name}",
            times_s=np.array([-np.inf]),
            values=np.array([float(value)]),
            observed_s=np.array([-np.inf]),
            max_gap_s=np.inf,
        )

    @property
    def is_constant(self) -> bool:
        return self.times_s.shape[0] == 1 and not math.isfinite(self.times_s[0])

    def known_index(self, t: F64 | float) -> npt.NDArray[np.intp]:
        """Index of the newest value observed at or before t (-1: none yet)."""
        return np.searchsorted(self.observed_s, t, side="right") - 1

    def decision_index(self, t: F64 | float) -> npt.NDArray[np.intp]:
        """Index of the value a decision at t uses: the one in force at t when it is known
        already (published ahead: day-ahead prices), else the newest one known."""
        return np.minimum(self.known_index(t), self.realized_index(t))

    def realized_index(self, t: F64 | float) -> npt.NDArray[np.intp]:
        """Index of the value in force at t (its interval started at or before t)."""
        return np.searchsorted(self.times_s, t, side="right") - 1

    def check_coverage(self, start_s: float, end_s: float, history_s: float = 0.0) -> None:
        """Refuse a period the series does not cover, covers with a gap too long, or
        needs a row that was left out (`history_s`: how far before the start decisions
        look back)."""
        if self.is_constant:
            return
        if self.issues:
            lag = float(np.max(self.observed_s - self.times_s))
            # The first stamp a decision at the start can use, or the ledger needs.
            lo = start_s - history_s - max(lag, 0.0)
            stamps = np.sort(np.r_[self.times_s, [r.time_s for r in self.issues]])
            at = int(np.searchsorted(stamps, lo, side="right")) - 1
            first = stamps[at] if at >= 0 else -np.inf
            for issue in self.issues:
                if first <= issue.time_s <= end_s:
                    raise issue.error()
        if self.times_s[0] > start_s:
            raise DataError(
                f"series {self.name} starts at {_iso(self.times_s[0])}, after the requested "
                f"start {_iso(start_s)}",
                source=self.source,
            )
        inside = (self.times_s >= start_s) & (self.times_s <= end_s)
        times = np.r_[self.times_s[self.realized_index(start_s)], self.times_s[inside], end_s]
        gaps = np.diff(times)
        if gaps.size and gaps.max() > self.max_gap_s:
            at = int(np.argmax(gaps))
            last_s = float(self.times_s[-1])
            too_long = f"longer than max_gap_s={self.max_gap_s:.0f}"
            if last_s < start_s:
                problem = f"ends at {_iso(last_s)}, before the requested start {_iso(start_s)}"
            elif times[at] >= last_s:  # the gap runs from the last row to the period's end
                problem = (f"ends at {_iso(last_s)}, {gaps[at] / 3600:.1f} h before the "
                           f"requested end {_iso(end_s)}, {too_long}")
            else:
                problem = (f"has a gap of {gaps[at] / 3600:.1f} h after {_iso(times[at])}, "
                           f"{too_long}")
            raise DataError(f"series {self.name} {problem}", source=self.source)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A row left out of a series (empty or unreadable value): an error only when the
    backtest period needs it."""

    time_s: float
    message: str
    source: str
    line: int | None
    column: str | None

    def error(self) -> DataError:
        return DataError(self.message, source=self.source, line=self.line, column=self.column)


def _value_sql(src: SeriesSource) -> tuple[str, str]:
    if src.value is not None:
        return src.value, "value"
    assert src.value_column is not None
    return ident(src.value_column), src.value_column


#: Values a series may hold: a row outside (a BTC price or difficulty at or below zero,
#: negative fees: a wrong column or a corrupt file) is left out like an unreadable one,
#: an error naming it where the backtest needs it.
Domain = Literal["any", "non-negative", "positive"]


def read_series(
    name: str, src: SeriesSource, base_dir: Path, *, domain: Domain = "any"
) -> Series:
    """Load and check one series; see the module docstring for the rules."""
    zone = zone_of(src.timezone, f"{name}.timezone")
    # Read as written: hashpivot parses them itself, naming a bad cell's text. With a
    # time expression every column is the SQL's to read, typed as `open_table` says.
    text_cols = [] if src.time else [
        c for c in (src.time_column, src.value_column, src.observed_column) if c]
    table = open_table(src, base_dir, f"series {name}", text_cols)
    try:
        return _read_series(name, src, base_dir, zone, table, domain)
    finally:
        table.close()


def _read_series(
    name: str, src: SeriesSource, base_dir: Path, zone: ZoneInfo, table: Table, domain: Domain
) -> Series:
    time_sql, time_col = (
        (src.time, "time") if src.time else (ident(src.time_column), src.time_column)
    )
    value_sql, value_col = _value_sql(src)
    if src.time is None:
        table.require(src.time_column, f"{name}.time_column")
    if src.value is None:
        assert src.value_column is not None
        table.require(src.value_column, f"{name}.value_column")
    exprs: dict[str, tuple[str, Kind]] = {
        "t": (time_sql, "time"),
        "v": (value_sql, "number"),
    }
    fields = {"t": f"{name}.time", "v": f"{name}.value"}
    if src.observed_column is not None:
        table.require(src.observed_column, f"{name}.observed_column")
        exprs["o"] = (ident(src.observed_column), "time")
    if src.key_column is not None:
        table.require(src.key_column, f"{name}.key_column")
        key_sql = f"trim(CAST({ident(src.key_column)} AS VARCHAR)) = {literal(src.key or '')}"
        exprs["k"] = (key_sql, "flag")
    cols, texts, files, rows = evaluate(
        table, exprs, decimal=src.decimal, time_format=src.time_format, field_of=fields
    )
    keep = np.ones(files.shape[0], dtype=bool)
    if "k" in texts:
        keep = texts["k"].copy()
    t, v = cols["t"], cols["v"]
    keep &= ~(t.null & v.null)  # a blank row (only separators) is no row
    idx = np.flatnonzero(keep)

    def fail(i: int, column: str, message: str) -> DataError:
        path, line, note = table.where(int(files[i]), int(rows[i]))
        return DataError(message + note, source=path, line=line, column=column)

    for mask, message in ((t.null, "missing timestamp"), (t.bad, "not a timestamp")):
        hit = idx[mask[idx]]
        if hit.size:
            i = int(hit[0])
            raw = raw_text(table, time_sql, int(files[i]), int(rows[i]))
            raise fail(i, time_col, f"{message}: {raw!r}" if raw else message)
    # Shifted before wall times are read in the zone: an hour-ending label 02:00 on the
    # autumn night is the repeated hour beginning 01:00, not 02:00.
    times = to_utc(t, idx, zone, src.ambiguous, lambda i, m: fail(i, time_col, m), src.time_shift_s)
    observed: F64 | None = None
    if "o" in cols:
        o = cols["o"]
        hit = idx[(o.null | o.bad)[idx]]
        if hit.size:
            i = int(hit[0])
            raw = raw_text(table, ident(src.observed_column or ""), int(files[i]), int(rows[i]))
            raise fail(i, src.observed_column or "", f"not a publication time: {raw!r}")
        observed = to_utc(
            o, idx, zone, src.ambiguous, lambda i, m: fail(i, src.observed_column or "", m)
        )
    values = v.values[idx] * UNIT_SCALE[src.unit] * src.scale
    issues: list[RowIssue] = []
    with np.errstate(invalid="ignore"):  # NaN rows are left out as not finite first
        outside = (values <= 0 if domain == "positive"
                   else values < 0 if domain == "non-negative" else np.zeros_like(values, bool))
    bad = v.null[idx] | v.bad[idx] | ~np.isfinite(values) | outside
    bad_rows = idx[bad]
    unread = bad_rows[~v.null[bad_rows]]
    # Their text in one query: a column of "n/a" may have thousands of them.
    raws = raw_texts(table, value_sql, files[unread], rows[unread])
    bound = "above 0" if domain == "positive" else "0 or more"
    for j in np.flatnonzero(bad).tolist():
        i = int(idx[j])
        path, line, note = table.where(int(files[i]), int(rows[i]))
        raw = raws.get((int(files[i]), int(rows[i])), "?")
        if v.null[i]:
            message = ("missing value" if src.value is None
                       else "no value: a cell the expression reads is empty or not a number")
        elif v.bad[i]:
            message = f"not a number: {raw!r}"
        elif not np.isfinite(values[j]):
            message = f"not a finite number: {raw!r}"
        else:
            message = f"{raw!r}: series {name} takes values {bound}"
        issues.append(RowIssue(float(times[j]), message + note, path, line, value_col))
    good = ~bad
    if src.fx is not None:
        rate = _fx(name, src.fx, base_dir, times[good])
        values = values.copy()
        values[good] = values[good] * rate
    sel = idx[good]
    times, values = times[good], values[good]
    observed = observed[good] if observed is not None else times + src.observed_lag_s
    if not times.size:
        if issues:
            raise issues[0].error()
        what = f" with {src.key_column}={src.key}" if src.key_column else ""
        raise DataError(f"no rows{what} (series {name})", source=table.name)
    times, values, observed, sel = _order(src, times, values, observed, sel,
                                          lambda i, m: fail(i, time_col, m))  # fmt: skip
    if np.any(np.diff(observed) < 0):
        j = int(np.flatnonzero(np.diff(observed) < 0)[0]) + 1
        raise fail(int(sel[j]), src.observed_column or time_col,
                   "publication times go back in time (each row must be known no earlier "
                   "than the one before)")  # fmt: skip
    issues.sort(key=lambda r: r.time_s)
    return Series(name, table.name, times, values, observed, src.max_gap_s, tuple(issues))


def _order(
    src: SeriesSource,
    times: F64,
    values: F64,
    observed: F64,
    sel: npt.NDArray[np.intp],
    fail: Callable[[int, str], DataError],
) -> tuple[F64, F64, F64, npt.NDArray[np.intp]]:
    """Sort (if asked), combine rows per stamp (if asked), then refuse disorder."""
    if src.sort:
        order = np.argsort(times, kind="stable")
        times, values, observed, sel = times[order], values[order], observed[order], sel[order]
    step = np.diff(times)
    if src.aggregate is not None and np.any(step == 0):
        if np.any(step < 0):
            j = int(np.flatnonzero(step < 0)[0]) + 1
            raise fail(int(sel[j]), f"rows out of time order at {_iso(times[j])} "
                                    "(sort: true sorts them)")  # fmt: skip
        starts = np.flatnonzero(np.r_[True, step != 0])
        values = _combine(values, starts, src.aggregate)
        observed = np.maximum.reduceat(observed, starts)
        times, sel = times[starts], sel[starts]
        step = np.diff(times)
    if np.any(step <= 0):
        j = int(np.flatnonzero(step <= 0)[0]) + 1
        if step[j - 1] == 0:
            hint = " (aggregate: median|mean|min|max|first|last combines them)"
            raise fail(int(sel[j]), f"duplicate timestamp {_iso(times[j])}{hint}")
        raise fail(int(sel[j]), f"rows out of time order at {_iso(times[j])} "
                                "(sort: true sorts them)")  # fmt: skip
    return times, values, observed, sel


def _combine(values: F64, starts: npt.NDArray[np.intp], how: str) -> F64:
    if how == "first":
        return values[starts]
    if how == "last":
        last: npt.NDArray[np.intp] = np.r_[starts[1:], values.shape[0]] - 1
        return values[last]
    if how == "min":
        return np.asarray(np.minimum.reduceat(values, starts), dtype=np.float64)
    if how == "max":
        return np.asarray(np.maximum.reduceat(values, starts), dtype=np.float64)
    counts = np.diff(np.r_[starts, values.shape[0]])
    if how == "mean":
        return np.asarray(np.add.reduceat(values, starts) / counts, dtype=np.float64)
    # Median: sort within each group (group id first), then the middle one or two.
    group = np.repeat(np.arange(starts.shape[0]), counts)
    ordered = values[np.lexsort((values, group))]
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    return np.asarray(0.5 * (ordered[lo] + ordered[hi]), dtype=np.float64)


def _fx(name: str, fx: float | SeriesSource, base_dir: Path, times: F64) -> F64 | float:
    """USD per unit of the source's currency at each time: fixed, or the rate in force."""
    if not isinstance(fx, SeriesSource):
        return float(fx)
    rates = read_series(f"{name}.fx", fx, base_dir, domain="positive")
    if rates.issues:  # a rate converts every row after it: none may be left out
        raise rates.issues[0].error()
    at = rates.realized_index(times)
    if np.any(at < 0):
        first = times[int(np.flatnonzero(at < 0)[0])]
        raise DataError(
            f"fx series starts at {_iso(rates.times_s[0])}, after the row at {_iso(first)} "
            f"(series {name})",
            source=rates.source,
        )
    return rates.values[at]


def _series(name: str, spec: SeriesSource | float, base_dir: Path,
            domain: Domain = "any") -> Series:
    if isinstance(spec, SeriesSource):
        return read_series(name, spec, base_dir, domain=domain)
    return Series.constant(name, spec)


@dataclass(frozen=True, slots=True)
class ObservedColumns:
    """When each price of each step was observed (`ObservedTimes`, as step arrays)."""

    btc_usd: F64
    difficulty: F64
    fees_btc_per_block: F64
    subsidy_btc: F64
    usd_per_unit_day: F64  # (steps, algorithms)
    gpu_usd_per_gpu_hour: F64  # (steps, gpu models)
    power_usd_mwh: F64  # (steps, sites)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices for every step of a backtest, as arrays (step × …): fast to index per step."""

    times_s: F64
    btc_usd: F64
    difficulty: F64
    fees_btc_per_block: F64
    subsidy_btc: F64
    usd_per_unit_day: F64  # (steps, algorithms)
    gpu_usd_per_gpu_hour: F64  # (steps, gpu models)
    power_usd_mwh: F64  # (steps, sites)
    oldest_observed_s: F64
    observed: ObservedColumns | None = None
    # Per step (BTC, difficulty, fees, subsidy, oldest observed, then when the first four
    # were observed) as Python floats, made on first use: a backtest reads every step, and
    # a numpy scalar per value costs more.
    _step_scalars: list[tuple[float, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Each step's row is then a read-only view as it is (`MarketPrices` makes none).
        freeze_arrays(self, ("usd_per_unit_day", "gpu_usd_per_gpu_hour", "power_usd_mwh"))

    def prices(self, i: int) -> MarketPrices:
        if self._step_scalars is None:
            columns: tuple[F64, ...] = (
                self.btc_usd,
                self.difficulty,
                self.fees_btc_per_block,
                self.subsidy_btc,
                self.oldest_observed_s,
            )
            seen = self.observed
            if seen is not None:
                columns += (seen.btc_usd, seen.difficulty, seen.fees_btc_per_block,
                            seen.subsidy_btc)
            lists = [np.asarray(c, dtype=np.float64).tolist() for c in columns]
            scalars = list(zip(*lists, strict=True))
            object.__setattr__(self, "_step_scalars", scalars)
            assert self._step_scalars is not None
        step = self._step_scalars[i]
        return MarketPrices(
            step[0],
            step[1],
            step[2],
            step[3],
            self.usd_per_unit_day[i],
            self.gpu_usd_per_gpu_hour[i],
            self.power_usd_mwh[i],
            step[4],
            # Worked out only for a policy that reads it (most never do).
            None if self.observed is None else partial(self._observed_at, i),
        )

    def _observed_at(self, i: int) -> ObservedTimes:
        o = self.observed
        assert o is not None and self._step_scalars is not None
        step = self._step_scalars[i]
        return ObservedTimes(step[5], step[6], step[7], step[8], o.usd_per_unit_day[i],
                             o.gpu_usd_per_gpu_hour[i], o.power_usd_mwh[i])

    @property
    def hashprice_usd_ph_day(self) -> F64:
        return econ.hashprice_usd_per_ph_day(
            self.difficulty, self.btc_usd, self.subsidy_btc, self.fees_btc_per_block
        )


def _check_mining_prices(unit_price: F64, times_s: F64, btc: F64, difficulty: F64) -> None:
    """Refuse values each in range that price mining at no real number together (a BTC
    price of 1e308 overflows to infinity): the first such step is named, nothing is
    decided on it. NaN is no price yet (a step before a series starts), left as it is."""
    bad = np.flatnonzero(np.isinf(unit_price).any(axis=1))
    if bad.size:
        k = int(bad[0])
        raise DataError(f"the market at {_iso(float(times_s[k]))} "
                        f"{no_finite_mining_price(float(btc[k]), float(difficulty[k]))}: "
                        "a recorded value is far out of any real range")


class RecordedMarketSource:
    """The `MarketSource` port over recorded files, aligned with one fleet's lookup tables."""

    def __init__(self, market: RecordedMarketConfig, base_dir: Path, fleet: FleetTable):
        self.fleet_sites = tuple(s.name for s in fleet.sites)
        self.gpu_models = fleet.gpu_models
        self.algorithms = fleet.algorithms
        # The ranges live feeds are held to (`MarketSnapshot`); power may go negative.
        self.btc_usd = _series("btc_usd", market.btc_usd, base_dir, "positive")
        self.difficulty = _series("difficulty", market.difficulty, base_dir, "positive")
        self.fees = _series("fees_btc_per_block", market.fees_btc_per_block, base_dir,
                            "non-negative")
        self.subsidy = (
            None
            if market.subsidy_btc is None
            else _series("subsidy_btc", market.subsidy_btc, base_dir, "non-negative")
        )
        self.power: list[Series] = []
        for site in self.fleet_sites:
            spec = market.power_usd_mwh.get(site, market.power_usd_mwh.get("default"))
            if spec is None:
                raise ConfigError(
                    f"no power price for site {site!r} (and no 'default')",
                    field="market.power_usd_mwh",
                )
            self.power.append(_series(f"power_usd_mwh.{site}", spec, base_dir))
        self.gpu: list[Series | None] = []
        for model in self.gpu_models:
            spec_g = market.gpu_usd_per_gpu_hour.get(model)
            self.gpu.append(
                None
                if spec_g is None
                else _series(f"gpu_usd_per_gpu_hour.{model}", spec_g, base_dir, "non-negative")
            )
        self.hashpower: list[Series | None] = []
        for alg in self.algorithms:
            spec_h = market.hashpower_btc_per_unit_day.get(alg)
            if alg == SHA256 or spec_h is None:
                self.hashpower.append(None)
            else:
                self.hashpower.append(
                    _series(f"hashpower_btc_per_unit_day.{alg}", spec_h, base_dir,
                            "non-negative")
                )

    def all_series(self) -> list[Series]:
        out = [self.btc_usd, self.difficulty, self.fees, *self.power]
        out += [s for s in (self.subsidy, *self.gpu, *self.hashpower) if s is not None]
        return out

    def span(self) -> tuple[float, float]:
        """The period every time-varying series covers (first to last timestamp)."""
        finite = [s for s in self.all_series() if not s.is_constant]
        if not finite:
            return (-np.inf, np.inf)
        return (max(float(s.times_s[0]) for s in finite), min(float(s.times_s[-1]) for s in finite))

    def check_period(self, start_s: float, end_s: float, history_s: float = 0.0) -> None:
        """Refuse a period the series do not cover; warn when a series is first known
        after the start (decisions hold every node until then)."""
        for s in self.all_series():
            s.check_coverage(start_s, end_s, history_s)
        for message in self.late_starts(start_s):
            _log.warning("%s", message)

    def check_prices(self, start_s: float, end_s: float) -> None:
        """Refuse values that price mining at no finite number together anywhere in the
        period, as a backtest of it would: the prices at the start and at every time a
        value becomes known in it (every combination a decision there can see)."""
        stamps = [s.observed_s for s in self.all_series() if not s.is_constant]
        times = np.unique(np.r_[start_s, *stamps])
        self.price_table(times[(times >= start_s) & (times <= end_s)])

    def late_starts(self, start_s: float) -> list[str]:
        """Series whose first value becomes known after `start_s`, said in words."""
        out = []
        for s in self.all_series():
            if s.is_constant or s.observed_s[0] <= start_s:
                continue
            hours = (float(s.observed_s[0]) - start_s) / 3600.0
            out.append(
                f"series {s.name} is first known at {_iso(s.observed_s[0])} (its first row, "
                f"{_iso(s.times_s[0])}, plus its observation lag): decisions hold every node "
                f"for the first {hours:.0f} h of the backtest ({s.source})"
            )
        return out

    def _pick(self, s: Series, t: F64, realized: bool) -> tuple[F64, F64]:
        idx = s.realized_index(t) if realized else s.decision_index(t)
        missing = idx < 0
        safe = np.maximum(idx, 0)
        values = np.where(missing, np.nan, s.values[safe])
        # A value published ahead of its interval (day-ahead) is as fresh as the interval:
        # observed when it came into force, not a day before.
        observed = np.where(missing, -np.inf, np.maximum(s.observed_s[safe], s.times_s[safe]))
        if s.is_constant:
            observed = np.asarray(t, dtype=np.float64).copy()
        return values, observed

    def price_table(self, times_s: F64, *, realized: bool = False) -> PriceTable:
        """Prices at each time: known at that time (decisions) or in force (the ledger)."""
        t = np.asarray(times_s, dtype=np.float64)
        oldest = np.full(t.shape, np.inf)
        seen: dict[str, F64] = {}  # when each picked series' value was observed

        def pick(s: Series) -> F64:
            nonlocal oldest
            v, o = self._pick(s, t, realized)
            oldest = np.minimum(oldest, o)
            seen[s.name] = o
            return v

        btc = pick(self.btc_usd)
        diff = pick(self.difficulty)
        fees = pick(self.fees)
        if self.subsidy is not None:
            subsidy = pick(self.subsidy)
        else:
            subsidy = (
                np.array([econ.subsidy_btc_on_date(datetime.fromtimestamp(x, UTC)) for x in t])
                if t.size < 4096
                else _subsidy_by_date(t)
            )
        btc_at, fees_at = seen[self.btc_usd.name], seen[self.fees.name]
        subsidy_at = seen[self.subsidy.name] if self.subsidy is not None else t
        sha_at = np.minimum.reduce([btc_at, seen[self.difficulty.name], fees_at, subsidy_at])
        unit_price = np.zeros((t.shape[0], len(self.algorithms)))
        unit_at = np.full(unit_price.shape, np.nan)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            hp_th = econ.hashprice_usd_per_th_day(diff, btc, subsidy, fees)
            for j, alg in enumerate(self.algorithms):
                hs = self.hashpower[j]
                if alg == SHA256:
                    unit_price[:, j], unit_at[:, j] = hp_th, sha_at
                elif hs is not None:
                    unit_price[:, j] = econ.hashpower_usd_per_unit_day(pick(hs), btc)
                    unit_at[:, j] = np.minimum(seen[hs.name], btc_at)
        _check_mining_prices(unit_price, t, btc, diff)
        gpu = np.full((t.shape[0], len(self.gpu_models)), np.nan)
        gpu_at = np.full(gpu.shape, np.nan)
        for j, gs in enumerate(self.gpu):
            if gs is not None:
                gpu[:, j] = pick(gs)
                gpu_at[:, j] = seen[gs.name]
        power = np.stack([pick(p) for p in self.power], axis=1)
        power_at = np.stack([seen[p.name] for p in self.power], axis=1)
        observed = ObservedColumns(btc_at, seen[self.difficulty.name], fees_at, subsidy_at,
                                   unit_at, gpu_at, power_at)
        return PriceTable(t, btc, diff, fees, subsidy, unit_price, gpu, power, oldest, observed)

    # --- MarketSource port -------------------------------------------------------------
    def snapshot(self, now_s: float) -> MarketSnapshot:
        """Values observed at or before `now_s`, each with its source and observed time."""

        def obs(s: Series) -> Observed:
            i = int(s.decision_index(now_s))
            if i < 0:
                raise DataError(f"no {s.name} observed by {_iso(now_s)}", source=s.source)
            at = now_s if s.is_constant else float(max(s.observed_s[i], s.times_s[i]))
            return Observed(
                value=float(s.values[i]),
                source=s.source,
                observed_at=datetime.fromtimestamp(at, UTC),
            )

        subsidy = (
            obs(self.subsidy)
            if self.subsidy is not None
            else Observed(
                value=econ.subsidy_btc_on_date(datetime.fromtimestamp(now_s, UTC)),
                source="halving schedule",
                observed_at=datetime.fromtimestamp(now_s, UTC),
            )
        )
        return MarketSnapshot(
            btc_usd=obs(self.btc_usd),
            difficulty=obs(self.difficulty),
            fees_btc_per_block=obs(self.fees),
            subsidy_btc=subsidy,
            power_usd_mwh={
                site: obs(p) for site, p in zip(self.fleet_sites, self.power, strict=True)
            },
            gpu_usd_per_gpu_hour={
                m: obs(g) for m, g in zip(self.gpu_models, self.gpu, strict=True) if g is not None
            },
            hashpower_btc_per_unit_day={
                a: obs(h)
                for a, h in zip(self.algorithms, self.hashpower, strict=True)
                if h is not None
            },
        )

    def history(self, now_s: float, window_s: float = 14 * 86_400.0) -> MarketHistory:
        """Series published at or before `now_s` over the last `window_s`, one row per
        interval of the first site's power series (see `MarketHistory`)."""
        full = self.history_rows(now_s, window_s)
        return full.rows_known_at(now_s)

    def history_rows(self, now_s: float, window_s: float) -> HistoryRows:
        """Every history row published at or before `now_s` over the last `window_s`, with
        when each site's power price for it was published (to hide the late ones).

        Rows are the intervals some site has published a price for (hourly when every
        site's price is constant); a row counts as published when its first site price
        is (day-ahead prices: before the interval), never earlier than the row before.
        """
        recorded = [s for s in self.power if not s.is_constant]
        if not recorded:
            times = np.arange(now_s - window_s, now_s + 1, 3600.0)
        else:
            # The intervals each site published within the window, labelled by the
            # interval they price.
            spans = []
            for s in recorded:
                hi = int(s.known_index(now_s)) + 1
                lo = int(np.searchsorted(s.observed_s, now_s - window_s, side="left"))
                spans.append(s.times_s[lo:hi])
            times = np.unique(np.concatenate(spans))
        site_power = np.full((times.shape[0], len(self.power)), np.nan)
        site_known = np.full(site_power.shape, -np.inf)
        for k, s in enumerate(self.power):
            if s.is_constant:
                site_power[:, k] = s.values[0]
                continue
            # The price of the row's interval, once published (`rows_known_at` hides a
            # site's price until then).
            idx = s.realized_index(times)
            ok = idx >= 0
            site_power[ok, k] = s.values[idx[ok]]
            site_known[:, k] = np.where(ok, s.observed_s[np.maximum(idx, 0)], np.inf)
        if recorded:
            # A constant price (-inf) is no publication: the row's first published price.
            first = np.where(np.isneginf(site_known), np.inf, site_known).min(axis=1)
            known_at = np.maximum.accumulate(first) if first.size else first
            keep = (known_at <= now_s) & (known_at >= now_s - window_s)
            times, known_at = times[keep], known_at[keep]
            site_power, site_known = site_power[keep], site_known[keep]
        else:
            known_at = times
        # BTC price and difficulty as known when the row was published: a row published
        # ahead of its interval must not carry the values of that later time (callers
        # slice one history by publication time, so `now_s` is no bound).
        table = self.price_table(known_at)
        history = MarketHistory(times, table.hashprice_usd_ph_day, site_power[:, 0].copy(),
                                site_power, table.btc_usd, table.difficulty, known_at)
        return HistoryRows(history, site_known)


@dataclass(frozen=True, slots=True)
class HistoryRows:
    """History rows with when each site's power price was published, sliced per decision
    so that no value published after the decision's time is visible."""

    history: MarketHistory
    #: When each site's price for each row was published, (rows, sites).
    site_known_at_s: F64
    #: Whether some site publishes a row later than the row itself (rare: then each
    #: slice hides those values).
    late: bool = field(init=False)

    def __post_init__(self) -> None:
        late = bool(np.any(self.site_known_at_s > self.history.known_at_s[:, None]))
        object.__setattr__(self, "late", late)

    def scaled(self, hashprice: float, power: float) -> HistoryRows:
        """The rows in a stressed market: hashprice (through difficulty, so the BTC price
        stays as recorded) and every power price scaled."""
        h = self.history
        return HistoryRows(
            MarketHistory(h.times_s, h.hashprice_usd_ph_day * hashprice,
                          h.power_usd_mwh * power, h.site_power_usd_mwh * power, h.btc_usd,
                          h.difficulty / hashprice, h.known_at_s),
            self.site_known_at_s,
        )

    def rows_known_at(self, now_s: float, window_s: float = math.inf) -> MarketHistory:
        """The rows published at or before `now_s` (and within `window_s` of it), each
        site's price NaN until it is published."""
        known_at = self.history.known_at_s
        hi = int(np.searchsorted(known_at, now_s, side="right"))
        lo = int(np.searchsorted(known_at, now_s - window_s, side="left"))
        out = self.history.rows(lo, hi)
        if not self.late:
            return out
        power = np.where(self.site_known_at_s[lo:hi] <= now_s, out.site_power_usd_mwh, np.nan)
        return dataclasses.replace(out, site_power_usd_mwh=power)


def _subsidy_by_date(t: F64) -> F64:
    days = np.floor(t / 86_400.0)
    uniq, inv = np.unique(days, return_inverse=True)
    vals = np.array(
        [econ.subsidy_btc_on_date(datetime.fromtimestamp(d * 86_400.0, UTC)) for d in uniq]
    )
    return vals[inv]
