"""Recorded data files, fuzzed: a series or a job trace loads into finite, ordered numbers or
fails with a `DataError` naming the file (and line, and column) — never another exception,
never a NaN that slips through."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
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
    src = SeriesSource(path=str(path), value_column="value", format=fmt)
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


options = st.fixed_dictionaries({}, optional={
    "sort": st.booleans(),
    "aggregate": st.sampled_from(["median", "mean", "min", "max", "first", "last"]),
    "filter": st.sampled_from(["value > 0", "time IS NOT NULL", "nope(", "x = 1", "true"]),
    "value": st.sampled_from(["value * 2", "value / 0", "sqrt(value)", "'a'", "value +"]),
    "time": st.sampled_from(["time", "CAST(time AS TIMESTAMPTZ)", "42", "strptime(time, '%Y')"]),
    "query": st.sampled_from(["SELECT * FROM src", "SELECT * FROM src ORDER BY 1 DESC",
                              "SELECT", "SELECT time, max(value) AS value FROM src GROUP BY 1"]),
    "time_format": st.sampled_from(["%Y-%m-%d", "%d.%m.%Y %H:%M", "%Q"]),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/Chicago"]),
    "ambiguous": st.sampled_from(["infer", "earlier", "later", "error"]),
    "time_shift_s": st.sampled_from([0.0, -3600.0, 1e300]),
    "decimal": st.sampled_from([".", ","]),
})  # fmt: skip


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(csv_files(["time", "value"]), options)
def test_any_options_load_clean_or_fail_with_a_hashpivot_error(
    data: bytes, opts: dict[str, object]
) -> None:
    """Whatever a site file says about a file: numbers or a clear error, never a crash."""
    path = write(data, "series.csv")
    if "value" not in opts:
        opts["value_column"] = "value"
    if opts.get("decimal") == ",":
        opts["separator"] = ";"
    try:
        src = SeriesSource.model_validate({"path": str(path), **opts})
    except ValueError:
        return  # the model refuses the combination, naming the field
    try:
        series = read_series("power", src, path.parent)
    except HashpivotError:
        return
    assert np.all(np.isfinite(series.times_s)) and np.all(np.isfinite(series.values))
    assert np.all(np.diff(series.times_s) > 0)
    assert np.all(np.diff(series.observed_s) >= 0)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["Europe/Berlin", "America/Chicago", "Australia/Lord_Howe", "Asia/Kolkata",
                     "America/Havana"]),
    st.integers(0, 30 * 365 * 24),
    st.integers(1, 24 * 200),
    st.sampled_from([900, 3600, 86_400]),
    st.booleans(),
)
# A half-hour change seen hourly, and a repeated midnight seen daily: wall times that
# repeat once only, whose reading follows from the spacing.
@example("Australia/Lord_Howe", (1_712_404_800 - 1_000_000_000) // 3600, 8, 3600, False)
@example("America/Havana", (1_698_206_400 - 1_000_000_000) // 3600, 14, 86_400, True)
def test_wall_times_of_a_regular_series_read_back_to_the_same_utc_times(
    zone_name: str, first_h: int, count: int, step_s: int, newest_first: bool
) -> None:
    """A regular series of UTC instants (every local midnight, for daily steps), written
    as local wall time (repeats included), in row order forward or backward: 'infer' gives
    back exactly those instants."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from orchestrator.backtest.tables import localize

    zone = ZoneInfo(zone_name)
    t0 = datetime.fromtimestamp(1_000_000_000 + first_h * 3600, zone)
    if step_s == 86_400:
        day = t0.replace(hour=0, minute=0, second=0, tzinfo=None)
        stamps = [(day + timedelta(days=k)).replace(tzinfo=zone) for k in range(count)]
        utc = np.array([t.timestamp() for t in stamps])
    else:
        utc = (t0.timestamp() // step_s + np.arange(count)) * float(step_s)
    wall = np.array([
        datetime.fromtimestamp(t, zone).replace(tzinfo=UTC).timestamp() for t in utc.tolist()
    ])  # fmt: skip
    if newest_first:
        utc, wall = utc[::-1], wall[::-1]
    got = localize(wall, zone, "infer")
    assert [p for p in got.problem if p is not None] == []
    assert got.utc.tolist() == utc.tolist()


trace_options = st.fixed_dictionaries({}, optional={
    "filter": st.sampled_from(["gpus > 0", "nope(", "true", "gpus"]),
    "query": st.sampled_from(["SELECT * FROM src", "SELECT", "SELECT gpus FROM src"]),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin"]),
    "time_format": st.sampled_from(["%Y-%m-%d", "%Q"]),
})  # fmt: skip


@settings(FUZZ)
@given(csv_files(["submit", "end", "gpus", "model"]), trace_options, st.booleans())
def test_a_trace_with_any_options_loads_clean_or_fails_with_a_hashpivot_error(
    data: bytes, opts: dict[str, object], by_end: bool
) -> None:
    path = write(data, "jobs.csv")
    fields: dict[str, object] = {"path": str(path), "submit_column": "submit",
                                 "interruptible_column": None, **opts}  # fmt: skip
    if by_end:
        fields |= {"end_column": "end", "gpu_model_column": "model",
                   "gpu_models": {"1": "H100_80GB_SXM5"}}  # fmt: skip
    else:
        fields["duration_column"] = "end"
    try:
        submit, gpus, duration, _ = read_trace(JobTraceConfig.model_validate(fields), path.parent)
    except HashpivotError:
        return
    for arr in (submit, gpus, duration):
        assert np.all(np.isfinite(arr))
    assert (gpus >= 1).all() and (duration > 0).all() and np.all(np.diff(submit) >= 0)
