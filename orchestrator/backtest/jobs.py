"""AI jobs from a recorded cluster trace, scaled to the simulated site."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.recorded import resolve_path
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
    """Submit offsets, GPUs, durations and interruptible flags from the trace file."""
    path = resolve_path(cfg.path, base_dir)
    if not path.is_file():
        raise DataError("job trace file not found", source=str(path))
    try:
        rows = _read_rows(path, cfg)
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from None
    except csv.Error as exc:
        raise DataError(f"not a readable CSV: {exc}", source=str(path)) from None
    submit, gpus, duration, interruptible = rows
    if not submit:
        raise DataError("job trace has no rows", source=str(path))
    order = np.argsort(np.array(submit), kind="stable")
    return (
        np.array(submit)[order],
        np.array(gpus)[order],
        np.array(duration)[order],
        np.array(interruptible)[order],
    )


def _read_rows(
    path: Path, cfg: JobTraceConfig
) -> tuple[list[float], list[float], list[float], list[bool]]:
    submit: list[float] = []
    gpus: list[float] = []
    duration: list[float] = []
    interruptible: list[bool] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        cols = [cfg.submit_column, cfg.gpus_column, cfg.duration_column]
        if cfg.interruptible_column:
            cols.append(cfg.interruptible_column)
        for col in cols:
            if col not in header:
                raise DataError("missing column", source=str(path), line=1, column=col)
        for row in reader:
            line = reader.line_num
            try:
                s, g, d = (float(row[c]) for c in cols[:3])
            except (TypeError, ValueError):
                raise DataError("not a number", source=str(path), line=line) from None
            # (NaN fails every comparison, so finiteness is checked first.)
            if not all(math.isfinite(x) for x in (s, g, d)) or g < 1 or d <= 0 or s < 0:
                raise DataError(
                    "gpus must be >= 1, duration > 0 and submit >= 0, all finite",
                    source=str(path),
                    line=line,
                )
            submit.append(s)
            gpus.append(g)
            duration.append(d)
            flag = row[cfg.interruptible_column] if cfg.interruptible_column else "0"
            interruptible.append((flag or "").strip().lower() in {"1", "true", "yes"})
    return submit, gpus, duration, interruptible


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
