"""AI jobs from a recorded cluster trace, scaled to the simulated site.

The trace is read like a market series (DuckDB: CSV, JSON/JSONL, Parquet, globs, a
`filter` and a `query`); durations come from a duration column or from start and end
time stamps, and GPU names are mapped to the fleet's GPU models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.tables import (
    Kind,
    Table,
    evaluate,
    ident,
    literal,
    open_table,
    raw_text,
    to_utc,
    zone_of,
)
from orchestrator.errors import DataError
from orchestrator.models.config import JobTraceConfig

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class JobStream:
    """Jobs in arrival order over the backtest period (arrays of equal length)."""

    submit_s: F64
    gpus: F64
    duration_s: F64
    interruptible: npt.NDArray[np.bool_]
    offered_usd_per_gpu_hour: float | None
    gpu_model: str | None

    def __len__(self) -> int:
        return int(self.submit_s.shape[0])

    @staticmethod
    def empty() -> JobStream:
        z = np.zeros(0)
        return JobStream(z, z, z, np.zeros(0, dtype=bool), None, None)


def read_trace(cfg: JobTraceConfig, base_dir: Path) -> tuple[F64, F64, F64, npt.NDArray[np.bool_]]:
    """Submit times, GPUs, durations and interruptible flags from the trace, by submit time.

    Submit times are seconds from any origin (offsets or time stamps: only differences
    matter). Rows the filter drops, or whose GPU model is not mapped, are left out; every
    row kept must be a job: GPUs >= 1 and a positive duration.
    """
    text = [c for c in (cfg.submit_column, cfg.end_column, cfg.start_column) if c]
    table = open_table(cfg, base_dir, "job trace", text)
    try:
        return _read_trace(cfg, table)
    finally:
        table.close()


def _read_trace(cfg: JobTraceConfig, table: Table) -> tuple[F64, F64, F64, npt.NDArray[np.bool_]]:
    exprs: dict[str, tuple[str, Kind]] = {
        "submit": (ident(cfg.submit_column), "time"),
        "gpus": (ident(cfg.gpus_column), "number"),
    }
    names = {"submit": cfg.submit_column, "gpus": cfg.gpus_column}
    if cfg.end_column is not None:
        exprs["end"] = (ident(cfg.end_column), "time")
        names["end"] = cfg.end_column
        if cfg.start_column is not None:
            exprs["start"] = (ident(cfg.start_column), "time")
            names["start"] = cfg.start_column
    else:
        assert cfg.duration_column is not None
        exprs["duration"] = (ident(cfg.duration_column), "number")
        names["duration"] = cfg.duration_column
    if cfg.interruptible_column:
        flag = f"lower(trim(CAST({ident(cfg.interruptible_column)} AS VARCHAR)))"
        exprs["interruptible"] = (f"{flag} IN ('1', 'true', 'yes', '1.0')", "flag")
        names["interruptible"] = cfg.interruptible_column
    if cfg.gpu_model_column:
        # Mapped in SQL: a million names never become Python strings.
        wanted = [raw for raw, model in cfg.gpu_models.items()
                  if cfg.gpu_model is None or model == cfg.gpu_model]  # fmt: skip
        listed = ", ".join(literal(raw) for raw in wanted) or "NULL"
        name_sql = f"CAST({ident(cfg.gpu_model_column)} AS VARCHAR)"
        exprs["model"] = (f"{name_sql} IN ({listed})", "flag")
        names["model"] = cfg.gpu_model_column
    for key, column in names.items():
        table.require(column, f"demand.{key}_column")
    cols, texts, files, rows = evaluate(
        table, exprs, decimal=cfg.decimal, time_format=cfg.time_format,
        field_of={k: f"demand.{k}_column" for k in exprs},
    )  # fmt: skip
    keep = np.ones(files.shape[0], dtype=bool)
    if "model" in texts:
        keep = texts["model"].copy()
    # A blank row (only separators) is no job, as in a recorded series.
    keep &= ~np.logical_and.reduce([col.null for col in cols.values()])
    idx = np.flatnonzero(keep)

    def fail(i: int, key: str, message: str) -> DataError:
        path, line, note = table.where(int(files[i]), int(rows[i]))
        return DataError(message + note, source=path, line=line, column=names[key])

    zone = zone_of(cfg.timezone, "demand.timezone")
    numbers: dict[str, F64] = {}
    for key, col in cols.items():
        hit = idx[(col.null | col.bad | ~np.isfinite(col.values))[idx]]
        if hit.size:
            i = int(hit[0])
            raw = raw_text(table, exprs[key][0], int(files[i]), int(rows[i]))
            what = "time stamp" if exprs[key][1] == "time" else "number"
            hint = " (durations from end times: end_column)" if key == "duration" else ""
            raise fail(i, key, (f"not a {what}: {raw!r}" if raw else f"missing {what}") + hint)

        def fail_at(i: int, message: str, key: str = key) -> DataError:
            return fail(i, key, message)

        numbers[key] = to_utc(col, idx, zone, cfg.ambiguous, fail_at)
    submit, gpus = numbers["submit"], numbers["gpus"]
    if "end" in numbers:
        duration = numbers["end"] - numbers.get("start", submit)
        dur_key = "end"
    else:
        duration = numbers["duration"]
        dur_key = "duration"
    for key, wrong_rows, message in (
        ("gpus", gpus < 1, "gpus must be >= 1 (a CPU-only job? filter: gpus > 0 drops them)"),
        (dur_key, duration <= 0, "duration must be > 0"),
        ("submit", submit < 0, "submit must be >= 0"),
    ):
        if wrong_rows.any():
            j = int(np.flatnonzero(wrong_rows)[0])
            raise fail(int(idx[j]), key, message)
    if not idx.size:
        raise DataError("job trace has no rows" + (" (after filter and gpu_models)"
                        if cfg.filter or cfg.gpu_models else ""), source=table.name)  # fmt: skip
    if "interruptible" in texts:
        interruptible = texts["interruptible"][idx]
    else:
        interruptible = np.zeros(idx.shape[0], dtype=bool)
    order = np.argsort(submit, kind="stable")
    return submit[order], gpus[order], duration[order], interruptible[order]


def scale_trace(
    cfg: JobTraceConfig,
    base_dir: Path,
    *,
    start_s: float,
    end_s: float,
    site_gpus: float,
    gpus_per_node: float,
) -> JobStream:
    """Repeat the trace over [start, end) with arrivals sped up or slowed down so the mean
    GPU demand equals `load_factor` × the site's GPUs. Jobs wider than a node are split
    into node-sized parts (no gang scheduling in the simulator)."""
    if site_gpus <= 0 or end_s <= start_s:
        return JobStream.empty()
    submit, gpus, duration, interruptible = read_trace(cfg, base_dir)
    span = float(submit[-1] - submit[0]) or 3600.0
    span += float(np.median(np.diff(submit))) if submit.size > 1 else 0.0
    trace_mean_gpus = float(np.sum(gpus * duration)) / span
    target = cfg.load_factor * site_gpus
    stretch = trace_mean_gpus / target  # >1: arrivals further apart
    period = span * stretch
    repeats = int(np.ceil((end_s - start_s) / period))
    offsets = (submit - submit[0]) * stretch
    all_submit = (start_s + (np.arange(repeats)[:, None] * period + offsets[None, :])).ravel()
    tile = np.tile
    all_gpus, all_dur, all_int = (
        tile(gpus, repeats),
        tile(duration, repeats),
        tile(interruptible, repeats),
    )
    keep = all_submit < end_s
    all_submit, all_gpus, all_dur, all_int = (
        all_submit[keep],
        all_gpus[keep],
        all_dur[keep],
        all_int[keep],
    )
    # Split wide jobs into node-sized parts.
    parts = np.ceil(all_gpus / gpus_per_node).astype(np.intp)
    rep = np.repeat(np.arange(all_gpus.shape[0]), parts)
    first = np.r_[0, np.cumsum(parts)[:-1]]
    k = np.arange(rep.shape[0]) - np.repeat(first, parts)
    part_gpus = np.minimum(all_gpus[rep] - k * gpus_per_node, gpus_per_node)
    return JobStream(
        submit_s=all_submit[rep],
        gpus=part_gpus,
        duration_s=all_dur[rep],
        interruptible=all_int[rep],
        offered_usd_per_gpu_hour=cfg.offered_usd_per_gpu_hour,
        gpu_model=cfg.gpu_model,
    )
