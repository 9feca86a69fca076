"""`hashpivot record`: poll the live feeds and write what passed the quality rules as
recorded market data, in the format the backtest reads.

The output folder holds one CSV per series (`time,value,recorded_at`, times ISO-8601
UTC) — power and GPU prices are keyed files (`time,site,value,…` and
`time,gpu_model,value,…`) — and a `market.yaml` whose `market:` section (a
`RecordedMarketConfig`) points at them, so the recording replays with `hashpivot
backtest` unchanged: a replayed snapshot at a sample time equals the live one.

`time` is when the value was true (its observed-at); `recorded_at` is the poll that
first saw it. Only values the live controller would decide on are written: accepted by
the same quality rules and within their time-to-live at the poll (a mirror stuck on old
blocks, or a tariff file nobody updates, writes nothing). Every refusal is appended to
`rejected.csv` (`recorded_at,feed,reason,detail`), so a gap in a series says why.

A replay between two polls may see a value up to one poll interval before the live
controller did (an hourly price stamped at its hour's start, say); `recorded_at` keeps
what a stricter replay needs. Rows are appended: recording again
into the same folder extends the series.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.adapters.market.live import (
    BTC_USD,
    DIFFICULTY,
    FEES,
    GPU,
    HASHPOWER,
    POWER,
    SUBSIDY,
    LiveMarketSource,
    RefreshReport,
)
from orchestrator.errors import FeedError
from orchestrator.models.config import RecordedMarketConfig, SeriesSource
from orchestrator.models.feeds_config import LiveMarketConfig

MARKET_FILE = "market.yaml"
REJECTED_FILE = "rejected.csv"
_REJECTED_HEADER = ["recorded_at", "feed", "reason", "detail"]

# series → (file, unit). Keyed series put the key in a middle column.
_PLAIN: dict[str, tuple[str, str]] = {
    BTC_USD: ("btc_usd.csv", "usd"),
    DIFFICULTY: ("difficulty.csv", "dimensionless"),
    FEES: ("fees_btc_per_block.csv", "btc"),
    SUBSIDY: ("subsidy_btc.csv", "btc"),
}
_KEYED: dict[str, tuple[str, str, str]] = {
    POWER: ("power_usd_mwh.csv", "site", "usd_per_mwh"),
    GPU: ("gpu_usd_per_gpu_hour.csv", "gpu_model", "usd_per_gpu_hour"),
    HASHPOWER: ("hashpower_btc_per_unit_day.csv", "algorithm", "btc_per_unit_day"),
}


@dataclass(frozen=True, slots=True)
class RecordProgress:
    """Reported after every sample."""

    sample: int
    samples: int
    now_s: float
    #: Rows written this sample, per series name (e.g. 'gpu_usd_per_gpu_hour.H200_141GB').
    written: dict[str, int]
    report: RefreshReport
    error: str | None = None
    #: Series with a good value that was past its time-to-live, so not written.
    stale: tuple[str, ...] = ()


@dataclass(slots=True)
class _Series:
    path: Path
    key_column: str | None
    key: str | None
    last_time: datetime | None = None
    rows: int = 0
    header: list[str] = field(default_factory=list)


def format_time(when: datetime) -> str:
    """ISO-8601 UTC with a 'Z'; microseconds only when there are some."""
    when = when.astimezone(UTC)
    if when.microsecond:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Writer:
    """Appends rows per series, never repeating or reordering an observation."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.series: dict[str, _Series] = {}
        self._last_by_file: dict[tuple[Path, str | None], datetime] = {}

    def _open(self, name: str) -> _Series:
        if name in self.series:
            return self.series[name]
        kind, _, key = name.partition(".")
        if kind in _KEYED:
            file, column, _ = _KEYED[kind]
            header = ["time", column, "value", "recorded_at"]
            s = _Series(self.out_dir / file, column, key, header=header)
        else:
            header = ["time", "value", "recorded_at"]
            s = _Series(self.out_dir / _PLAIN[kind][0], None, None, header=header)
        s.last_time = self._existing_last(s)
        self.series[name] = s
        return s

    def _existing_last(self, s: _Series) -> datetime | None:
        """Last time already in the file for this series (recording resumed)."""
        if not s.path.exists():
            return None
        last: datetime | None = None
        with s.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != s.header:
                raise FeedError(
                    f"{s.path}: columns {reader.fieldnames} are not {s.header}; "
                    "record into an empty folder"
                )
            for row in reader:
                if s.key_column is not None and row[s.key_column] != s.key:
                    continue
                when = _parse_time(row["time"])
                last = when if last is None or when > last else last
        return last

    def names(self) -> list[str]:
        """Every series with rows, in this run or in files already in the folder."""
        out = {n for n, s in self.series.items() if s.last_time is not None}
        for kind, (file, _) in _PLAIN.items():
            if (self.out_dir / file).exists():
                out.add(kind)
        for kind, (file, column, _) in _KEYED.items():
            path = self.out_dir / file
            if path.exists():
                with path.open(newline="", encoding="utf-8") as handle:
                    out |= {f"{kind}.{row[column]}" for row in csv.DictReader(handle)}
        return sorted(out)

    def write(self, name: str, when: datetime, value: float, recorded_s: float) -> bool:
        s = self._open(name)
        if s.last_time is not None and when <= s.last_time:
            return False
        new_file = not s.path.exists()
        with s.path.open("a", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle, lineterminator="\n")
            if new_file:
                out.writerow(s.header)
            # repr keeps every digit, so the replay reads back the identical float.
            seen = format_time(datetime.fromtimestamp(recorded_s, UTC))
            key = [s.key] if s.key_column else []
            row = [format_time(when), *key, repr(float(value)), seen]
            out.writerow(row)
        s.last_time = when
        s.rows += 1
        return True


def append_rejections(out_dir: Path, report: RefreshReport) -> int:
    """Append the poll's refusals to `rejected.csv`; return how many."""
    if not report.rejected:
        return 0
    path = out_dir / REJECTED_FILE
    new_file = not path.exists()
    seen = format_time(datetime.fromtimestamp(report.now_s, UTC))
    with path.open("a", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, lineterminator="\n")
        if new_file:
            out.writerow(_REJECTED_HEADER)
        for feed, reason, detail in report.rejected:
            out.writerow([seen, feed, reason, detail])
    return len(report.rejected)


def market_section(names: list[str], out_dir: Path) -> dict[str, Any]:
    """The `market:` mapping (RecordedMarketConfig shape) for the recorded series."""
    plain: dict[str, Any] = {}
    keyed: dict[str, dict[str, Any]] = {POWER: {}, GPU: {}, HASHPOWER: {}}
    for name in sorted(names):
        kind, _, key = name.partition(".")
        if kind in _KEYED:
            file, column, unit = _KEYED[kind]
            keyed[kind][key] = SeriesSource.model_validate(
                {
                    "path": file,
                    "value_column": "value",
                    "key_column": column,
                    "key": key,
                    "unit": unit,
                }
            )
        else:
            file, unit = _PLAIN[kind]
            plain[kind] = SeriesSource.model_validate(
                {"path": file, "value_column": "value", "unit": unit}
            )
    missing = [k for k in (BTC_USD, DIFFICULTY, FEES) if k not in plain] + (
        [POWER] if not keyed[POWER] else []
    )
    if missing:
        raise FeedError(f"{out_dir}: nothing recorded yet for {missing}; no market.yaml written")
    config = RecordedMarketConfig(
        btc_usd=plain[BTC_USD],
        difficulty=plain[DIFFICULTY],
        fees_btc_per_block=plain[FEES],
        subsidy_btc=plain.get(SUBSIDY),
        power_usd_mwh=keyed[POWER],
        gpu_usd_per_gpu_hour=keyed[GPU],
        hashpower_btc_per_unit_day=keyed[HASHPOWER],
    )
    return config.model_dump(mode="json", exclude_defaults=True)


def write_market_yaml(names: list[str], out_dir: Path) -> Path:
    path = out_dir / MARKET_FILE
    section = market_section(names, out_dir)
    header = (
        "# Recorded by `hashpivot record` from live feeds; replay with `hashpivot backtest`.\n"
        "# Paths are relative to this file.\n"
    )
    text = header + yaml.safe_dump({"market": section}, sort_keys=False)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def record(
    config: LiveMarketConfig,
    out_dir: Path,
    *,
    samples: int,
    interval_s: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[RecordProgress], None] | None = None,
    source: LiveMarketSource | None = None,
) -> Path:
    """Poll the live feeds `samples` times, `interval_s` apart, appending every newly
    accepted value to the CSVs in `out_dir`; return the path of `market.yaml`.

    A failed poll is reported through `progress` and recording goes on. Raises
    FeedError when, at the end, a series the backtest needs was never recorded.
    """
    if samples < 1:
        raise ValueError("samples must be >= 1")
    if interval_s < 0:
        raise ValueError("interval_s must be >= 0")
    out_dir.mkdir(parents=True, exist_ok=True)
    own = source is None
    src = source or LiveMarketSource.from_config(config)
    writer = _Writer(out_dir)
    try:
        for i in range(samples):
            if i:
                sleep(interval_s)
            now = clock()
            written: dict[str, int] = {}
            error = None
            try:
                report = src.refresh(now)
            except FeedError as exc:
                report, error = RefreshReport(now), str(exc)
            stale: list[str] = []
            for name in src.required_feeds():
                good = src.quality.last_good(name)
                if good is None:
                    continue
                if src.quality.is_stale(name, now):
                    # The live path would hold on this value, not decide on it.
                    stale.append(name)
                    continue
                if writer.write(name, good.observed_at, good.value, now):
                    written[name] = 1
            append_rejections(out_dir, report)
            try:
                write_market_yaml(writer.names(), out_dir)
            except FeedError as exc:
                error = error or str(exc)
            if progress is not None:
                progress(
                    RecordProgress(i + 1, samples, now, written, report, error, tuple(stale))
                )
    finally:
        if own:
            src.close()
    return write_market_yaml(writer.names(), out_dir)
