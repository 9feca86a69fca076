"""Recorded market data: CSV/JSONL series replayed with no look-ahead.

Each series is read once into numpy arrays (time, value, observed-at). At a decision
time `now` only values observed at or before `now` are visible; the ledger of a
backtest uses the value in force during each interval ("realized"). Rules for bad
files: missing columns, non-numeric values, duplicate or unsorted timestamps are
errors naming file, line and column; gaps are carried forward up to `max_gap_s`, and a
longer gap inside the requested period is an error.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.errors import ConfigError, DataError
from orchestrator.framework.context import MarketHistory
from orchestrator.models.config import BUNDLED_PREFIX, RecordedMarketConfig, SeriesSource
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import SHA256
from orchestrator.models.market import MarketPrices, MarketSnapshot, Observed

F64 = npt.NDArray[np.float64]

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


def resolve_path(path: str, base_dir: Path) -> Path:
    """A config path: `bundled:…` (shipped with hashpivot) or relative to the config file."""
    if path.startswith(BUNDLED_PREFIX):
        ref = resources.files("orchestrator") / "data" / path[len(BUNDLED_PREFIX) :]
        return Path(str(ref))
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


@dataclass(frozen=True, slots=True)
class Series:
    """One recorded series: sorted times (s), values, and when each value became known."""

    name: str
    source: str
    times_s: F64
    values: F64
    observed_s: F64
    max_gap_s: float

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

    def realized_index(self, t: F64 | float) -> npt.NDArray[np.intp]:
        """Index of the value in force at t (its interval started at or before t)."""
        return np.searchsorted(self.times_s, t, side="right") - 1

    def check_coverage(self, start_s: float, end_s: float) -> None:
        """Refuse a period the series does not cover, or covers with a gap too long."""
        if self.is_constant:
            return
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
            raise DataError(
                f"series {self.name} has a gap of {gaps[at] / 3600:.1f} h after "
                f"{_iso(times[at])}, longer than max_gap_s={self.max_gap_s:.0f}",
                source=self.source,
            )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str, zone: ZoneInfo) -> float:
    text = text.strip()
    try:
        if len(text) == 10 and text[4] == "-":
            dt = datetime.fromisoformat(text).replace(tzinfo=zone)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=zone)
    except ValueError:
        try:
            epoch = float(text)  # epoch seconds
        except ValueError:
            raise ValueError(f"not a timestamp: {text!r}") from None
        if not math.isfinite(epoch):  # "nan" and "inf" parse, and compare false with all
            raise ValueError(f"not a timestamp: {text!r}") from None
        return epoch
    return dt.timestamp()


def _rows(path: Path, src: SeriesSource) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        yield from _parse_rows(path, src)
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from None
    except csv.Error as exc:
        raise DataError(f"not a readable CSV: {exc}", source=str(path)) from None


def _parse_rows(path: Path, src: SeriesSource) -> Iterator[tuple[int, dict[str, str]]]:
    fmt = src.format or ("jsonl" if path.suffix in {".jsonl", ".ndjson"} else "csv")
    with path.open(encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle, delimiter=src.separator)
            header = reader.fieldnames or []
            needed = [src.time_column, src.value_column, *([src.key_column])]
            for col in needed:
                if col and col not in header:
                    raise DataError(
                        f"missing column (header has {', '.join(header) or 'nothing'})",
                        source=str(path),
                        line=1,
                        column=col,
                    )
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if k is not None}
        else:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"not valid JSON: {exc.msg}", source=str(path), line=line_no
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        "each line must be a JSON object", source=str(path), line=line_no
                    )
                yield line_no, {k: "" if v is None else str(v) for k, v in obj.items()}


def read_series(name: str, src: SeriesSource, base_dir: Path) -> Series:
    """Load and check one series file; see the module docstring for the rules."""
    path = resolve_path(src.path, base_dir)
    if not path.is_file():
        raise DataError(f"file not found (series {name})", source=str(path))
    try:
        zone = ZoneInfo(src.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {src.timezone!r}", field=f"{name}.timezone") from None
    scale = UNIT_SCALE[src.unit]
    times: list[float] = []
    values: list[float] = []
    last_line = 0
    for line_no, row in _rows(path, src):
        last_line = line_no
        if src.key_column and row.get(src.key_column, "").strip() != src.key:
            continue
        raw_time = row.get(src.time_column)
        raw_value = row.get(src.value_column)
        if raw_time is None or not raw_time.strip():
            raise DataError(
                "missing timestamp", source=str(path), line=line_no, column=src.time_column
            )
        if raw_value is None or not raw_value.strip():
            raise DataError(
                "missing value", source=str(path), line=line_no, column=src.value_column
            )
        try:
            t = _parse_time(raw_time, zone)
        except ValueError as exc:
            raise DataError(
                str(exc), source=str(path), line=line_no, column=src.time_column
            ) from None
        text = raw_value.strip()
        if src.decimal == ",":
            text = text.replace(".", "").replace(",", ".")
        try:
            v = float(text) * scale
        except ValueError:
            raise DataError(
                f"not a number: {raw_value!r}",
                source=str(path),
                line=line_no,
                column=src.value_column,
            ) from None
        if not math.isfinite(v):
            raise DataError(
                f"not a finite number: {raw_value!r}",
                source=str(path),
                line=line_no,
                column=src.value_column,
            )
        if times:
            if t == times[-1]:
                raise DataError(
                    f"duplicate timestamp {raw_time.strip()}",
                    source=str(path),
                    line=line_no,
                    column=src.time_column,
                )
            if t < times[-1]:
                raise DataError(
                    f"rows out of time order at {raw_time.strip()}",
                    source=str(path),
                    line=line_no,
                    column=src.time_column,
                )
        times.append(t)
        values.append(v)
    if not times:
        what = f" with {src.key_column}={src.key}" if src.key_column else ""
        raise DataError(f"no rows{what} (series {name})", source=str(path), line=last_line or None)
    t_arr = np.array(times)
    return Series(
        name, str(path), t_arr, np.array(values), t_arr + src.observed_lag_s, src.max_gap_s
    )


def _series(name: str, spec: SeriesSource | float, base_dir: Path) -> Series:
    if isinstance(spec, SeriesSource):
        return read_series(name, spec, base_dir)
    return Series.constant(name, spec)


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
    # Per step (BTC, difficulty, fees, subsidy, oldest observed) as Python floats, made
    # on first use: a backtest reads every step, and a numpy scalar per value costs more.
    _step_scalars: list[tuple[float, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def prices(self, i: int) -> MarketPrices:
        if self._step_scalars is None:
            columns = (
                self.btc_usd,
                self.difficulty,
                self.fees_btc_per_block,
                self.subsidy_btc,
                self.oldest_observed_s,
            )
            lists = [np.asarray(c, dtype=np.float64).tolist() for c in columns]
            scalars = list(zip(*lists, strict=True))
            object.__setattr__(self, "_step_scalars", scalars)
            assert self._step_scalars is not None
        btc, difficulty, fees, subsidy, oldest = self._step_scalars[i]
        return MarketPrices(
            btc,
            difficulty,
            fees,
            subsidy,
            self.usd_per_unit_day[i],
            self.gpu_usd_per_gpu_hour[i],
            self.power_usd_mwh[i],
            oldest,
        )

    @property
    def hashprice_usd_ph_day(self) -> F64:
        return econ.hashprice_usd_per_ph_day(
            self.difficulty, self.btc_usd, self.subsidy_btc, self.fees_btc_per_block
        )


class RecordedMarketSource:
    """The `MarketSource` port over recorded files, aligned with one fleet's lookup tables."""

    def __init__(self, market: RecordedMarketConfig, base_dir: Path, fleet: FleetTable):
        self.fleet_sites = tuple(s.name for s in fleet.sites)
        self.gpu_models = fleet.gpu_models
        self.algorithms = fleet.algorithms
        self.btc_usd = _series("btc_usd", market.btc_usd, base_dir)
        self.difficulty = _series("difficulty", market.difficulty, base_dir)
        self.fees = _series("fees_btc_per_block", market.fees_btc_per_block, base_dir)
        self.subsidy = (
            None
            if market.subsidy_btc is None
            else _series("subsidy_btc", market.subsidy_btc, base_dir)
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
                else _series(f"gpu_usd_per_gpu_hour.{model}", spec_g, base_dir)
            )
        self.hashpower: list[Series | None] = []
        for alg in self.algorithms:
            spec_h = market.hashpower_btc_per_unit_day.get(alg)
            if alg == SHA256 or spec_h is None:
                self.hashpower.append(None)
            else:
                self.hashpower.append(
                    _series(f"hashpower_btc_per_unit_day.{alg}", spec_h, base_dir)
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

    def check_period(self, start_s: float, end_s: float) -> None:
        for s in self.all_series():
            s.check_coverage(start_s, end_s)

    def _pick(self, s: Series, t: F64, realized: bool) -> tuple[F64, F64]:
        idx = s.realized_index(t) if realized else s.known_index(t)
        missing = idx < 0
        safe = np.maximum(idx, 0)
        values = np.where(missing, np.nan, s.values[safe])
        observed = np.where(missing, -np.inf, s.observed_s[safe])
        if s.is_constant:
            observed = np.asarray(t, dtype=np.float64).copy()
        return values, observed

    def price_table(self, times_s: F64, *, realized: bool = False) -> PriceTable:
        """Prices at each time: known at that time (decisions) or in force (the ledger)."""
        t = np.asarray(times_s, dtype=np.float64)
        oldest = np.full(t.shape, np.inf)

        def pick(s: Series) -> F64:
            nonlocal oldest
            v, o = self._pick(s, t, realized)
            oldest = np.minimum(oldest, o)
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
        unit_price = np.zeros((t.shape[0], len(self.algorithms)))
        hp_th = econ.hashprice_usd_per_th_day(diff, btc, subsidy, fees)
        for j, alg in enumerate(self.algorithms):
            hs = self.hashpower[j]
            if alg == SHA256:
                unit_price[:, j] = hp_th
            elif hs is not None:
                unit_price[:, j] = econ.hashpower_usd_per_unit_day(pick(hs), btc)
        gpu = np.full((t.shape[0], len(self.gpu_models)), np.nan)
        for j, gs in enumerate(self.gpu):
            if gs is not None:
                gpu[:, j] = pick(gs)
        power = np.stack([pick(p) for p in self.power], axis=1)
        return PriceTable(t, btc, diff, fees, subsidy, unit_price, gpu, power, oldest)

    # --- MarketSource port -------------------------------------------------------------
    def snapshot(self, now_s: float) -> MarketSnapshot:
        """Values observed at or before `now_s`, each with its source and observed time."""

        def obs(s: Series) -> Observed:
            i = int(s.known_index(now_s))
            if i < 0:
                raise DataError(f"no {s.name} observed by {_iso(now_s)}", source=s.source)
            at = now_s if s.is_constant else float(s.observed_s[i])
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
        """Hourly series observed at or before `now_s` over the last `window_s`."""
        power = self.power[0]
        if power.is_constant:
            times = np.arange(now_s - window_s, now_s + 1, 3600.0)
            known_at = times
        else:
            # Rows already known at `now_s`, labelled by the interval they price.
            hi = int(power.known_index(now_s)) + 1
            lo = int(np.searchsorted(power.observed_s, now_s - window_s, side="left"))
            times, known_at = power.times_s[lo:hi], power.observed_s[lo:hi]
        table = self.price_table(known_at)
        return MarketHistory(times, table.hashprice_usd_ph_day, table.power_usd_mwh[:, 0])


def _subsidy_by_date(t: F64) -> F64:
    days = np.floor(t / 86_400.0)
    uniq, inv = np.unique(days, return_inverse=True)
    vals = np.array(
        [econ.subsidy_btc_on_date(datetime.fromtimestamp(d * 86_400.0, UTC)) for d in uniq]
    )
    return vals[inv]
