"""Recorded data files, fuzzed: a series or a job trace loads into finite, ordered numbers or
fails with a `DataError` naming the file (and line, and column) — never another exception,
never a NaN that slips through."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.backtest.jobs import read_trace
from orchestrator.backtest.recorded import read_series
from orchestrator.errors import DataError, HashpivotError
from orchestrator.models.config import JobTraceConfig, SeriesSource

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

cells = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "1", "2.5",
                     "2025-01-01", "2025-01-01T00:00:00Z", "2025-13-01", "1735689600",
                     "1,5", "true", "null", '"', "\x00"]),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
)


@st.composite
def csv_files(draw: st.DrawFn, header: list[str]) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    cols = header if draw(st.booleans()) else draw(st.lists(st.sampled_from(
        [*header, "x", ""]), max_size=4))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(cols) + 1), max_size=8))
    sep = draw(st.sampled_from([",", ",", ";"]))
    lines = [sep.join(cols)] + [sep.join(r) for r in rows]
    return ("\n".join(lines)).encode("utf-8", "surrogatepass")


def write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hp-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


@settings(FUZZ)
@given(csv_files(["time", "value"]), st.sampled_from(["csv", "jsonl"]))
def test_a_series_file_loads_clean_or_fails_with_a_data_error(data: bytes, fmt: str) -> None:
    path = write(data, f"series.{fmt}")
    src = SeriesSource(path=str(path), value_column="value", format=fmt)  # type: ignore[arg-type]
    try:
        series = read_series("btc_usd", src, path.parent)
    except DataError as exc:
        assert str(path) in str(exc), str(exc)
        return
    except HashpivotError:
        return
    assert series.times_s.size > 0
    assert np.all(np.isfinite(series.times_s)) and np.all(np.isfinite(series.values))
    assert np.all(np.diff(series.times_s) > 0)


@settings(FUZZ)
@given(st.lists(st.dictionaries(st.sampled_from(["time", "value", "x"]), cells, max_size=3),
                max_size=6))
def test_jsonl_series_rows(rows: list[dict[str, str]]) -> None:
    import json

    path = write("\n".join(json.dumps(r) for r in rows).encode(), "series.jsonl")
    src = SeriesSource(path=str(path), value_column="value")
    try:
        series = read_series("power", src, path.parent)
    except HashpivotError:
        return
    assert np.all(np.isfinite(series.values)) and np.all(np.diff(series.times_s) > 0)


@settings(FUZZ)
@given(csv_files(["submit_offset_s", "gpus", "duration_s", "interruptible"]))
def test_a_job_trace_loads_clean_or_fails_with_a_data_error(data: bytes) -> None:
    path = write(data, "jobs.csv")
    try:
        submit, gpus, duration, _ = read_trace(JobTraceConfig(path=str(path)), path.parent)
    except DataError as exc:
        assert str(path) in str(exc), str(exc)
        return
    for arr in (submit, gpus, duration):
        assert all(math.isfinite(float(x)) for x in arr)
    assert (gpus >= 1).all() and (duration > 0).all() and (submit >= 0).all()
