"""What recorded data yields, before a backtest trusts it (`hashpivot data inspect`,
`hashpivot config check`).

Every source is loaded exactly as a backtest loads it (`RecordedMarketSource`,
`read_trace`), then summarized: rows, span, step, gaps, rows left out, the value range
and the first rows. A PNG shows every series over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.jobs import read_trace
from orchestrator.backtest.recorded import RecordedMarketSource, Series, read_series
from orchestrator.backtest.tables import duck_message, open_table, resolve_path
from orchestrator.errors import ConfigError, DataError
from orchestrator.models.build import build_fleet
from orchestrator.models.config import HashpivotConfig, base_dir
from orchestrator.models.sources import JobTraceConfig, SeriesSource, TableSource

F64 = npt.NDArray[np.float64]


_OFFSETS_BEFORE_S = 315_532_800.0  # 1980: earlier "times" in a trace are offsets


def _iso(t: float) -> str:
    if not np.isfinite(t):
        return "—"
    if 0 <= t < _OFFSETS_BEFORE_S:
        return f"+{_span(t)}"
    return datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%dT%H:%MZ")


def _span(seconds: float) -> str:
    if seconds == 0:
        return "0 s"
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


@dataclass(frozen=True, slots=True)
class SourceReport:
    """One source, summarized."""

    name: str
    source: str
    rows: int
    start_s: float
    end_s: float
    step_s: float  # median spacing of the stamps
    gaps: int  # spacings longer than 1.5 steps
    largest_gap_s: float
    left_out: int  # rows with an empty or unreadable value
    minimum: float
    median: float
    maximum: float
    first: list[tuple[float, float]]
    what: str = "value"
    extra: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        spacing = f", step {_span(self.step_s)}, {self.gaps} gap(s)" if self.step_s else ""
        out = [
            f"{self.name}: {self.rows:,} rows, {_iso(self.start_s)} → {_iso(self.end_s)}"
            + spacing
            + (f" (largest {_span(self.largest_gap_s)})" if self.gaps else "")
            + (f", {self.left_out} row(s) left out" if self.left_out else ""),
            f"    {self.what} min {self.minimum:.6g}, median {self.median:.6g}, "
            f"max {self.maximum:.6g}   ({self.source})",
        ]
        out += [f"    {_iso(t)}  {v:.6g}" for t, v in self.first]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "rows": self.rows,
            "start": _iso(self.start_s),
            "end": _iso(self.end_s),
            "step_s": self.step_s,
            "gaps": self.gaps,
            "largest_gap_s": self.largest_gap_s,
            "left_out": self.left_out,
            "what": self.what,
            "min": self.minimum,
            "median": self.median,
            "max": self.maximum,
            "first": [[_iso(t), v] for t, v in self.first],
            **self.extra,
        }


def _summary(
    name: str, source: str, times: F64, values: F64, *, first: int, what: str = "value",
    left_out: int = 0, extra: dict[str, float] | None = None, gaps: bool = True,
) -> SourceReport:  # fmt: skip
    steps = np.diff(times) if gaps else np.zeros(0)
    step = float(np.median(steps)) if steps.size else 0.0
    long = steps > 1.5 * step if steps.size else np.zeros(0, dtype=bool)
    return SourceReport(
        name=name,
        source=source,
        rows=int(times.shape[0]),
        start_s=float(times[0]),
        end_s=float(times[-1]),
        step_s=step,
        gaps=int(np.count_nonzero(long)),
        largest_gap_s=float(steps.max()) if long.any() else 0.0,
        left_out=left_out,
        minimum=float(values.min()),
        median=float(np.median(values)),
        maximum=float(values.max()),
        first=[(float(t), float(v)) for t, v in zip(times[:first], values[:first], strict=True)],
        what=what,
        extra=extra or {},
    )


def describe_series(series: Series, first: int = 5) -> SourceReport:
    return _summary(series.name, series.source, series.times_s, series.values, first=first,
                    left_out=len(series.issues))  # fmt: skip


def describe_trace(cfg: JobTraceConfig, root: Path, first: int = 5) -> SourceReport:
    """The job trace as a backtest reads it: submit times and GPUs per job."""
    submit, gpus, duration, interruptible = read_trace(cfg, root)
    extra = {
        "gpu_hours": float(np.sum(gpus * duration) / 3600.0),
        "median_duration_h": float(np.median(duration) / 3600.0),
        "interruptible_share": float(np.mean(interruptible)),
    }
    name = "demand" + (f" ({cfg.gpu_model})" if cfg.gpu_model else "")
    path = str(resolve_path(cfg.path, root))
    # Arrivals are irregular by nature: no step or gaps for a trace.
    return _summary(name, path, submit, gpus, first=first, what="gpus", extra=extra, gaps=False)


@dataclass(frozen=True, slots=True)
class Inspection:
    reports: list[SourceReport]
    constants: dict[str, float]
    series: list[Series]
    warnings: list[str]

    def lines(self) -> list[str]:
        out: list[str] = []
        for r in self.reports:
            out += r.lines()
            if r.extra:
                out.append("    " + ", ".join(f"{k} {v:.6g}" for k, v in r.extra.items()))
        out += [f"{name}: constant {value:.6g}" for name, value in self.constants.items()]
        out += [f"warning: {w}" for w in self.warnings]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": [r.as_dict() for r in self.reports],
            "constants": self.constants,
            "warnings": self.warnings,
        }


def inspect_config(config: HashpivotConfig, first: int = 5) -> Inspection:
    """Every series and the job trace of a config, loaded as the backtest loads them."""
    root = base_dir(config)
    reports: list[SourceReport] = []
    constants: dict[str, float] = {}
    series: list[Series] = []
    warnings: list[str] = []
    if config.market is not None:
        market = RecordedMarketSource(config.market, root, build_fleet(config))
        for s in market.all_series():
            if s.is_constant:
                constants[s.name] = float(s.values[0])
                continue
            series.append(s)
            reports.append(describe_series(s, first))
        lo, hi = market.span()
        start_s = config.backtest.start.timestamp() if config.backtest.start else lo
        end_s = config.backtest.end.timestamp() if config.backtest.end else hi
        if np.isfinite(start_s) and np.isfinite(end_s) and end_s > start_s:
            for s in market.all_series():  # the backtest's own checks, for its period
                s.check_coverage(start_s, end_s)
            market.check_prices(start_s, end_s)
            warnings += market.late_starts(start_s)
    if config.demand is not None:
        reports.append(describe_trace(config.demand, root, first))
    return Inspection(reports, constants, series, warnings)


def inspect_file(src: SeriesSource, first: int = 5) -> Inspection:
    """One file read as a series (the options as in a config's market section)."""
    series = read_series("series", src, Path.cwd())
    return Inspection([describe_series(series, first)], {}, [series], [])


def preview_file(spec: TableSource, rows: int = 5) -> list[str]:
    """Columns (with the type each is read as) and the first rows after `query` and `filter`,
    for a file whose value column is not chosen yet."""
    table = open_table(spec, Path.cwd(), "data inspect", [], type_every_column=True)
    try:
        shown = [c for c in table.columns if not c.startswith("__")]
        out = ["columns: " + ", ".join(f"{c} ({table.columns[c]})" for c in shown)]
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in shown)
        try:
            got = table.con.execute(f"SELECT {select} FROM rows LIMIT {int(rows)}").fetchall()
            total = table.con.execute("SELECT count(*) FROM rows").fetchone()
        except Exception as exc:  # duckdb.Error; a preview never crashes
            raise DataError(duck_message(exc), source=table.name) from None
        out.append(f"rows: {total[0] if total else 0:,}")
        out += ["  " + " | ".join("" if v is None else str(v) for v in row) for row in got]
        return out
    finally:
        table.close()


def plot(inspection: Inspection, path: Path) -> Path:
    """One panel per series over time, as a PNG at `path` (`.png` added to a name without
    a suffix); returns where it was written."""
    if path.suffix.lower() != ".png":
        if path.suffix:
            raise ConfigError(f"{path}: the plot is a PNG image; name it with .png",
                              field="--plot")
        path = path.with_suffix(".png")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    panels = max(len(inspection.series), 1)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.2 * panels + 0.6), squeeze=False)
    for ax, s in zip(axes[:, 0], inspection.series, strict=False):
        ax.step(s.times_s.astype("datetime64[s]"), s.values, where="post", lw=0.8)
        ax.set_title(f"{s.name}  ({Path(s.source).name})", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def inspect_target(
    target: Path,
    *,
    value_column: str | None = None,
    value: str | None = None,
    options: list[str] | None = None,
    rows: int = 5,
) -> Inspection | list[str]:
    """A site config (every source), a file read as a series (when a value is named),
    or a file's columns and first rows."""
    import yaml
    from pydantic import ValidationError

    from orchestrator.errors import ConfigError
    from orchestrator.models.config import format_validation_error, load_config

    if target.suffix.lower() in {".yaml", ".yml"}:
        config = load_config(target)
        if config.market is None and config.demand is None:
            raise ConfigError("no recorded data to inspect: the file has no market or "
                              "demand section", source=str(target))
        return inspect_config(config, rows)
    fields: dict[str, Any] = {"path": str(target.resolve())}
    for item in options or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected name=value, got {item!r}", field="--set")
        try:
            fields[key.strip()] = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            fields[key.strip()] = text
    if value_column is not None:
        fields["value_column"] = value_column
    if value is not None:
        fields["value"] = value
    try:
        if "value_column" not in fields and "value" not in fields:
            table_fields = {k: v for k, v in fields.items() if k in TableSource.model_fields}
            unknown = sorted(set(fields) - set(table_fields))
            if unknown:
                raise ConfigError(f"{', '.join(unknown)} need --value-column or --value",
                                  field="--set")  # fmt: skip
            return preview_file(TableSource(**table_fields), rows)
        src = SeriesSource(**fields)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "--set")) from None
    return inspect_file(src, rows)
