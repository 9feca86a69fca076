"""Recorded series: no look-ahead, and bad files give errors naming file, line and column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.backtest.recorded import RecordedMarketSource, read_series
from orchestrator.errors import DataError
from orchestrator.models import FleetTable, Site
from orchestrator.models.config import RecordedMarketConfig, SeriesSource, load_config
from tests.conftest import profiles

EXAMPLE = Path(__file__).parents[2] / "examples" / "west-texas" / "site.yaml"


def csv_file(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def src(path: Path, **kw: object) -> SeriesSource:
    return SeriesSource(path=str(path), value_column="v", **kw)


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ("time,x\n2025-01-01T00:00Z,1\n", 1, "v", "missing column"),
        ("time,v\n2025-01-01T00:00Z,1\n2025-01-01T00:00Z,2\n", 3, "time", "duplicate"),
        ("time,v\n2025-01-01T01:00Z,1\n2025-01-01T00:00Z,2\n", 3, "time", "out of time order"),
        ("time,v\n2025-01-01T00:00Z,abc\n", 2, "v", "not a number"),
        ("time,v\n2025-01-01T00:00Z,\n", 2, "v", "missing value"),
        ("time,v\nyesterday,1\n", 2, "time", "not a timestamp"),
        ("time,v\n2025-01-01T00:00Z,nan\n", 2, "v", "not a finite number"),
    ],
)
def test_bad_files_name_file_line_and_column(
    tmp_path: Path, body: str, line: int, column: str, message: str
) -> None:
    path = csv_file(tmp_path, body)
    with pytest.raises(DataError) as err:
        read_series("power", src(path), tmp_path)
    text = str(err.value)
    assert str(path) in text and f"line {line}" in text and repr(column) in text
    assert message in text


def test_units_separator_decimal_and_time_zone(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "time;v\n2025-01-01 00:00;0,045\n2025-01-01 01:00;0,050\n")
    series = read_series(
        "power",
        src(path, unit="usd_per_kwh", separator=";", decimal=",", timezone="America/Chicago"),
        tmp_path,
    )
    assert series.values.tolist() == pytest.approx([45.0, 50.0])
    assert series.times_s[0] == datetime(2025, 1, 1, 6, tzinfo=UTC).timestamp()


def test_long_gap_inside_the_period_is_an_error(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "time,v\n2025-01-01T00:00Z,1\n2025-01-01T05:00Z,2\n")
    series = read_series("power", src(path, max_gap_s=7200), tmp_path)
    start = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    with pytest.raises(DataError, match=r"gap of 5\.0 h"):
        series.check_coverage(start, start + 6 * 3600)
    series.check_coverage(start + 5 * 3600, start + 6 * 3600)  # after the gap: fine


def test_jsonl_with_key_column(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        '{"time": "2025-01-01T00:00Z", "model": "A", "v": 1}\n'
        '{"time": "2025-01-01T00:00Z", "model": "B", "v": 2}\n',
        "p.jsonl",
    )
    series = read_series("gpu", src(path, key_column="model", key="B"), tmp_path)
    assert series.values.tolist() == [2.0]


def _market(tmp_path: Path) -> tuple[RecordedMarketSource, float]:
    rows = "\n".join(f"2025-01-01T{h:02d}:00Z,{10 * h}" for h in range(24))
    path = csv_file(tmp_path, "time,v\n" + rows + "\n")
    market = RecordedMarketConfig(
        btc_usd=90_000.0,
        difficulty=1e14,
        fees_btc_per_block=0.05,
        power_usd_mwh={"default": src(path, observed_lag_s=3600)},
    )
    fleet = FleetTable.build(profiles("s21"), [Site()], [0])
    t0 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    return RecordedMarketSource(market, tmp_path, fleet), t0


@settings(max_examples=100, deadline=None)
@given(offset_h=st.floats(min_value=1.0, max_value=23.99))
def test_no_look_ahead(tmp_path_factory: pytest.TempPathFactory, offset_h: float) -> None:
    source, t0 = _market(tmp_path_factory.mktemp("m"))
    now = t0 + offset_h * 3600
    snap = source.snapshot(now)
    for _, observed in snap.values():
        # datetime keeps microseconds: allow that rounding, nothing more.
        assert observed.observed_at.timestamp() <= now + 1e-6
    # The decision sees the last hour that has settled; the ledger the hour in force.
    known = source.price_table(np.array([now]))
    realized = source.price_table(np.array([now]), realized=True)
    assert known.power_usd_mwh[0, 0] == 10 * (int(offset_h) - 1)
    assert realized.power_usd_mwh[0, 0] == 10 * int(offset_h)
    history = source.history(now)
    assert np.all(history.times_s + 3600 <= now)


def test_nothing_known_before_the_first_value(tmp_path: Path) -> None:
    source, t0 = _market(tmp_path)
    with pytest.raises(DataError, match=r"no power_usd_mwh\.default observed"):
        source.snapshot(t0 + 1800)


def test_bundled_example_series_cover_the_documented_period() -> None:
    cfg = load_config(EXAMPLE)
    from orchestrator.models.build import build_fleet
    from orchestrator.models.config import base_dir

    assert cfg.market is not None
    source = RecordedMarketSource(cfg.market, base_dir(cfg), build_fleet(cfg))
    start = datetime(2023, 7, 6, 6, tzinfo=UTC).timestamp()
    end = datetime(2025, 9, 26, tzinfo=UTC).timestamp()
    source.check_period(start, end)
    table = source.price_table(np.array([datetime(2024, 12, 23, 12, tzinfo=UTC).timestamp()]))
    # Hashprice from the bundled Coin Metrics row of the day before (known at decision time).
    assert 45 < table.hashprice_usd_ph_day[0] < 70


# --- declarative options (read through DuckDB) -----------------------------------------


def _utc(year: int, month: int, day: int, hour: int = 0) -> float:
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp()


def test_sort_filter_and_median_per_stamp(tmp_path: Path) -> None:
    rows = [("2025-01-02", "H100", 2.5), ("2025-01-01", "H100", 2.0), ("2025-01-01", "A100", 9.0),
            ("2025-01-01", "H100", 3.0), ("2025-01-02", "H100", 1.5), ("2025-01-01", "H100", 2.2)]
    body = "date,model,price\n" + "\n".join(f"{d},{m},{p}" for d, m, p in rows) + "\n"
    path = csv_file(tmp_path, body)
    series = read_series("gpu", SeriesSource(
        path=str(path), time_column="date", value_column="price", filter="model = 'H100'",
        sort=True, aggregate="median"), tmp_path)  # fmt: skip
    import statistics

    days = sorted({d for d, m, _ in rows if m == "H100"})
    expected = [statistics.median(p for d, m, p in rows if m == "H100" and d == day)
                for day in days]  # fmt: skip
    assert series.values.tolist() == pytest.approx(expected)
    assert series.times_s.tolist() == [_utc(2025, 1, 1), _utc(2025, 1, 2)]


def test_value_expression_fixed_fx_and_time_shift(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "HourEnding,a,b\n2025-01-01 01:00,10,2\n2025-01-01 02:00,30,3\n")
    series = read_series("power", SeriesSource(
        path=str(path), time_column="HourEnding", value="a / b", currency="EUR", fx=1.1,
        time_shift_s=-3600, observed_lag_s=3600), tmp_path)  # fmt: skip
    assert series.values.tolist() == pytest.approx([10 / 2 * 1.1, 30 / 3 * 1.1])
    assert series.times_s.tolist() == [_utc(2025, 1, 1, 0), _utc(2025, 1, 1, 1)]
    assert series.observed_s.tolist() == [_utc(2025, 1, 1, 1), _utc(2025, 1, 1, 2)]


def test_fx_series_rate_in_force(tmp_path: Path) -> None:
    prices = csv_file(tmp_path, "time,v\n2025-01-01T00:00Z,100\n2025-01-02T12:00Z,100\n")
    rates = csv_file(tmp_path, "day,usd_per_eur\n2025-01-01,1.05\n2025-01-02,1.10\n", "fx.csv")
    fx = SeriesSource(path=str(rates), time_column="day", value_column="usd_per_eur")
    series = read_series("power", src(prices, currency="EUR", fx=fx), tmp_path)
    assert series.values.tolist() == pytest.approx([105.0, 110.0])


def test_currency_without_fx_is_refused() -> None:
    with pytest.raises(ValueError, match="currency EUR needs fx"):
        SeriesSource(path="x.csv", value_column="v", currency="EUR")


@pytest.mark.parametrize("newest_first", [False, True])
def test_local_time_across_the_autumn_change(tmp_path: Path, newest_first: bool) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Berlin")
    # Every UTC hour of the night of 2023-10-29, written as Berlin wall time (02:00 twice).
    utc = [_utc(2023, 10, 28, 22) + 3600 * h for h in range(6)]
    wall = [datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M") for t in utc]
    assert len(set(wall)) == len(wall) - 1
    lines = [f"{w},{i}" for i, w in enumerate(wall)]
    if newest_first:
        lines.reverse()
    path = csv_file(tmp_path, "time,v\n" + "\n".join(lines) + "\n")
    series = read_series("power", src(path, timezone="Europe/Berlin", sort=True), tmp_path)
    assert series.times_s.tolist() == utc
    assert series.values.tolist() == [float(i) for i in range(6)]


def test_local_time_the_spring_change_skips_is_an_error(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "time,v\n2025-03-30 01:00,1\n2025-03-30 02:30,2\n")
    with pytest.raises(DataError, match="skipped by the clock change") as err:
        read_series("power", src(path, timezone="Europe/Berlin"), tmp_path)
    assert "line 3" in str(err.value)


def test_empty_values_outside_the_period_are_allowed(tmp_path: Path) -> None:
    body = "time,v\n" + "".join(
        f"2025-01-{d:02d}T00:00Z,{'' if d <= 3 else d}\n" for d in range(1, 11)
    )
    path = csv_file(tmp_path, body)
    series = read_series("difficulty", src(path), tmp_path)
    assert series.values.tolist() == [float(d) for d in range(4, 11)]
    series.check_coverage(_utc(2025, 1, 5), _utc(2025, 1, 10))
    with pytest.raises(DataError, match="missing value") as err:
        series.check_coverage(_utc(2025, 1, 3, 12), _utc(2025, 1, 10))
    assert "line 4" in str(err.value)  # 2025-01-03, in force at the start


def test_query_parquet_json_and_glob(tmp_path: Path) -> None:
    import duckdb

    part = tmp_path / "parts"
    part.mkdir()
    for day in (1, 2):
        csv_file(part, "time,v\n" + "".join(
            f"2025-01-{day:02d}T{h:02d}:00Z,{day * 100 + h}\n" for h in range(24)), f"{day}.csv")
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{part}/*.csv')) TO '{tmp_path}/all.parquet'")
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{part}/*.csv')) TO '{tmp_path}/all.json'"
               " (FORMAT json, ARRAY true)")  # fmt: skip
    expected = [day * 100 + h for day in (1, 2) for h in range(24)]
    for path in (f"{part}/*.csv", f"{tmp_path}/all.parquet", f"{tmp_path}/all.json"):
        series = read_series("p", SeriesSource(path=path, value_column="v"), tmp_path)
        assert series.values.tolist() == expected, path
    hourly_max = read_series("p", SeriesSource(
        path=f"{part}/*.csv", query="SELECT date_trunc('day', CAST(time AS TIMESTAMPTZ)) AS day, "
        "max(v) AS top FROM src GROUP BY 1 ORDER BY 1", time_column="day", value_column="top"),
        tmp_path)  # fmt: skip
    assert hourly_max.values.tolist() == [max(expected[:24]), max(expected[24:])]


def test_glob_rows_name_their_own_file_and_line(tmp_path: Path) -> None:
    csv_file(tmp_path, "time,v\n2025-01-01T00:00Z,1\n", "a.csv")
    bad = csv_file(tmp_path, "time,v\n2025-01-02T00:00Z,2\n2025-01-02T01:00Z,oops\n", "b.csv")
    series = read_series("p", SeriesSource(path=f"{tmp_path}/*.csv", value_column="v"), tmp_path)
    with pytest.raises(DataError, match="not a number") as err:
        series.check_coverage(_utc(2025, 1, 1), _utc(2025, 1, 2, 2))
    assert str(bad) in str(err.value) and "line 3" in str(err.value)


def test_publication_column_allows_values_known_ahead(tmp_path: Path) -> None:
    # Day-ahead: tomorrow's hours are published at 12:00 today.
    body = "time,published,v\n" + "".join(
        f"2025-01-02T{h:02d}:00Z,2025-01-01T12:00Z,{h}\n" for h in range(24))
    path = csv_file(tmp_path, body)
    series = read_series("power", src(path, observed_column="published"), tmp_path)
    assert np.all(series.observed_s < series.times_s)
    assert int(series.known_index(_utc(2025, 1, 1, 12))) == 23  # the whole day, known
    assert int(series.known_index(_utc(2025, 1, 1, 11))) == -1


def test_job_trace_from_creation_and_deletion_times(tmp_path: Path) -> None:
    from orchestrator.backtest.jobs import read_trace
    from orchestrator.models.config import JobTraceConfig

    jobs = [("2025-01-01T00:00:00Z", "2025-01-01T02:00:00Z", 8, "nvidia-h100"),
            ("2025-01-01T00:30:00Z", "2025-01-01T00:45:00Z", 0, ""),
            ("2025-01-01T01:00:00Z", "2025-01-01T01:20:00Z", 2, "nvidia-a10"),
            ("2025-01-01T03:00:00Z", "2025-01-01T09:00:00Z", 4, "nvidia-h100")]
    body = "created,deleted,gpu,product\n" + "".join(f"{a},{b},{g},{p}\n" for a, b, g, p in jobs)
    path = csv_file(tmp_path, body, "jobs.csv")
    cfg = JobTraceConfig(
        path=str(path), submit_column="created", end_column="deleted", gpus_column="gpu",
        interruptible_column=None, filter="gpu > 0", gpu_model_column="product",
        gpu_models={"nvidia-h100": "H100_80GB_SXM5"}, gpu_model="H100_80GB_SXM5")
    submit, gpus, duration, _ = read_trace(cfg, tmp_path)
    kept = [(a, b, g) for a, b, g, p in jobs if g > 0 and p == "nvidia-h100"]
    iso = [datetime.fromisoformat(a).timestamp() for a, _, _ in kept]
    assert submit.tolist() == iso
    assert gpus.tolist() == [g for _, _, g in kept]
    assert duration.tolist() == [datetime.fromisoformat(b).timestamp() - t
                                 for t, (_, b, _) in zip(iso, kept, strict=True)]  # fmt: skip
    # Without the filter, the CPU-only row is named.
    with pytest.raises(DataError, match="gpus must be >= 1") as err:
        read_trace(cfg.model_copy(update={"filter": None, "gpu_model_column": None,
                                          "gpu_models": {}}), tmp_path)  # fmt: skip
    assert "line 3" in str(err.value) and "'gpu'" in str(err.value)


@pytest.mark.parametrize("how", ["mean", "min", "max", "first", "last", "median"])
def test_every_aggregate_with_skip_rows_and_scale(tmp_path: Path, how: str) -> None:
    import statistics

    values = {"2025-01-01": [3.0, 1.0, 2.0, 10.0], "2025-01-02": [5.0]}
    body = "exported by a tool\n\nday,v\n" + "".join(
        f"{d},{v}\n" for d, vs in values.items() for v in vs)
    path = csv_file(tmp_path, body)
    spec = SeriesSource.model_validate({"path": str(path), "time_column": "day",
                                        "value_column": "v", "skip_rows": 2,
                                        "aggregate": how, "scale": 0.5})  # fmt: skip
    series = read_series("p", spec, tmp_path)
    picks: dict[str, Callable[[list[float]], float]] = {
        "mean": statistics.mean, "min": min, "max": max, "median": statistics.median,
        "first": lambda v: v[0], "last": lambda v: v[-1]}  # fmt: skip
    pick = picks[how]
    assert series.values.tolist() == pytest.approx([0.5 * pick(v) for v in values.values()])


@pytest.mark.parametrize(("ambiguous", "hour_utc"), [("earlier", 0), ("later", 1)])
def test_a_lone_repeated_local_hour_needs_a_choice(
    tmp_path: Path, ambiguous: str, hour_utc: int
) -> None:
    path = csv_file(tmp_path, "time,v\n2023-10-29 01:00,1\n2023-10-29 02:00,2\n")
    with pytest.raises(DataError, match="cannot be inferred") as err:
        read_series("p", src(path, timezone="Europe/Berlin"), tmp_path)
    assert "line 3" in str(err.value)
    series = read_series("p", src(path, timezone="Europe/Berlin", ambiguous=ambiguous), tmp_path)
    assert series.times_s[1] == _utc(2023, 10, 29, hour_utc)
    with pytest.raises(DataError, match="ambiguous"):
        read_series("p", src(path, timezone="Europe/Berlin", ambiguous="error"), tmp_path)


def test_publication_times_going_back_are_refused(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "time,pub,v\n2025-01-02T00:00Z,2025-01-01T12:00Z,1\n"
                              "2025-01-02T01:00Z,2025-01-01T11:00Z,2\n")  # fmt: skip
    with pytest.raises(DataError, match="publication times go back") as err:
        read_series("p", src(path, observed_column="pub"), tmp_path)
    assert "line 3" in str(err.value)


def test_parquet_rows_are_named_by_record(tmp_path: Path) -> None:
    import duckdb

    out = tmp_path / "s.parquet"
    duckdb.sql(f"COPY (SELECT * FROM (VALUES ('2025-01-01T00:00Z', '1'), "
               f"('2025-01-01T01:00Z', 'x')) t(time, v)) TO '{out}'")  # fmt: skip
    series = read_series("p", src(out), tmp_path)
    with pytest.raises(DataError, match=r"not a number: 'x' \(record 2\)"):
        series.check_coverage(_utc(2025, 1, 1), _utc(2025, 1, 1, 2))


def test_job_durations_from_a_separate_start_column(tmp_path: Path) -> None:
    from orchestrator.backtest.jobs import read_trace
    from orchestrator.models.config import JobTraceConfig

    path = csv_file(tmp_path, "queued,started,ended,gpus\n"
                              "2025-01-01T00:00Z,2025-01-01T00:10Z,2025-01-01T01:10Z,1\n",
                    "jobs.csv")  # fmt: skip
    cfg = JobTraceConfig(path=str(path), submit_column="queued", start_column="started",
                         end_column="ended", interruptible_column=None)  # fmt: skip
    _, _, duration, _ = read_trace(cfg, tmp_path)
    assert duration.tolist() == [3600.0]


def test_decisions_use_the_hour_in_force_when_it_was_published_ahead(tmp_path: Path) -> None:
    # Day-ahead: every hour known 12 h before it starts; a decision prices the hour it is
    # in, not the newest hour already published.
    body = "time,v\n" + "".join(f"2025-01-02T{h:02d}:00Z,{10 * h}\n" for h in range(24))
    path = csv_file(tmp_path, body)
    market = RecordedMarketConfig(
        btc_usd=90_000.0, difficulty=1e14, fees_btc_per_block=0.05,
        power_usd_mwh={"default": src(path, observed_lag_s=-43200)},
    )  # fmt: skip
    fleet = FleetTable.build(profiles("s21"), [Site()], [0])
    source = RecordedMarketSource(market, tmp_path, fleet)
    hours = np.arange(24)
    times = np.array([_utc(2025, 1, 2, int(h)) + 1800 for h in hours])
    known = source.price_table(times)
    assert known.power_usd_mwh[:, 0].tolist() == [10.0 * h for h in hours]
    snap = source.snapshot(_utc(2025, 1, 2, 5) + 60)
    assert snap.power_usd_mwh["default"].value == 50.0
    # Published at 17:00 the day before, true from 05:00: as fresh as the hour it prices
    # (a day-ahead value must not look a day old to the stale-data guard).
    assert snap.power_usd_mwh["default"].observed_at.timestamp() == _utc(2025, 1, 2, 5)
    assert known.oldest_observed_s.tolist() == [_utc(2025, 1, 2, int(h)) for h in hours]


@pytest.mark.parametrize(
    ("option", "sql"),
    [("query", "SELECT * FROM src; COPY (SELECT 1) TO '{out}'"),
     ("filter", "true) ; COPY (SELECT 1) TO '{out}' ; SELECT (1"),
     ("value", "v) ; COPY (SELECT 1) TO '{out}' ; SELECT (1")],
)  # fmt: skip
def test_site_file_sql_runs_one_select_only(tmp_path: Path, option: str, sql: str) -> None:
    from orchestrator.errors import ConfigError

    path = csv_file(tmp_path, "time,v\n2025-01-01T00:00Z,1\n")
    out = tmp_path / "written.csv"
    fields: dict[str, object] = {"path": str(path), option: sql.format(out=out)}
    if option != "value":
        fields["value_column"] = "v"
    with pytest.raises(ConfigError, match=f"{option}: must be one SQL"):
        read_series("p", SeriesSource.model_validate(fields), tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("name", ["s.csv", "s.jsonl"])
def test_blank_lines_still_give_the_right_line(tmp_path: Path, name: str) -> None:
    rows = [("2025-01-01T00:00Z", "1"), None, None, ("2025-01-01T01:00Z", "oops")]
    if name.endswith(".csv"):
        lines = ["time,v"] + ["" if r is None else f"{r[0]},{r[1]}" for r in rows]
    else:
        lines = ["" if r is None else f'{{"time": "{r[0]}", "v": "{r[1]}"}}' for r in rows]
    path = csv_file(tmp_path, "\n".join(lines) + "\n", name)
    series = read_series("p", src(path), tmp_path)
    bad_line = next(i + 1 for i, line in enumerate(lines) if "oops" in line)
    assert [r.line for r in series.issues] == [bad_line]


def test_history_of_prices_published_ahead_holds_no_later_btc(tmp_path: Path) -> None:
    # Day-ahead power (each hour known 24 h before it starts) beside an hourly BTC price:
    # the history a decision at `now` reads, hours already published for later intervals
    # included, is the same whatever BTC does after `now`.
    day2 = "".join(f"2025-01-02T{h:02d}:00Z,{10 + h}\n" for h in range(24))
    power = csv_file(tmp_path, "time,v\n" + day2.replace("-02T", "-01T") + day2, "p.csv")
    now = _utc(2025, 1, 1, 12) + 60
    fleet = FleetTable.build(profiles("s21"), [Site()], [0])

    def history(btc_after_now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [f"2025-01-{d:02d}T{h:02d}:00Z,"
                f"{90_000.0 if _utc(2025, 1, d, h) <= now - 3600 else btc_after_now}\n"
                for d in (1, 2) for h in range(24)]  # fmt: skip
        btc = csv_file(tmp_path, "time,v\n" + "".join(rows), f"btc-{btc_after_now:g}.csv")
        market = RecordedMarketConfig(
            btc_usd=src(btc, observed_lag_s=3600), difficulty=1e14, fees_btc_per_block=0.05,
            power_usd_mwh={"default": src(power, observed_lag_s=-86400)},
        )  # fmt: skip
        h = RecordedMarketSource(market, tmp_path, fleet).history(now)
        return h.times_s, h.hashprice_usd_ph_day, h.power_usd_mwh

    times, hashprice, power_seen = history(90_000.0)
    assert np.any(times > now)  # hours published ahead are part of it
    times_b, hashprice_b, power_b = history(45_000.0)
    np.testing.assert_array_equal(times_b, times)
    np.testing.assert_array_equal(power_b, power_seen)
    np.testing.assert_array_equal(hashprice_b, hashprice)
    # Each row's power is its own hour's price.
    hours = ((times - _utc(2025, 1, 1)) // 3600).astype(int) % 24
    np.testing.assert_array_equal(power_seen, 10.0 + hours)


def test_the_reader_s_message_keeps_the_row_s_first_line_and_drops_its_hints(
    tmp_path: Path,
) -> None:
    import duckdb

    from orchestrator.backtest.tables import duck_message

    rows = [f"2025-01-01T00:{m:02d}:00Z,{m}" for m in range(60)]
    rows[10] = rows[10].replace(",", ',"')  # the quote runs to the end of the file
    path = csv_file(tmp_path, "time,v\n" + "\n".join(rows) + "\n")
    with pytest.raises(duckdb.Error) as err:
        duckdb.sql(f"SELECT * FROM read_csv('{path}', auto_detect=false, header=true, "
                   "delim=',', quote='\"', escape='\"', "
                   "columns={'time': 'VARCHAR', 'v': 'VARCHAR'})").fetchall()
    raw, message = str(err.value), duck_message(err.value)
    assert "Possible fixes" in raw and rows[30] in raw
    assert "Possible fixes" not in message and rows[30] not in message
    assert "Line: 12" in message and rows[10] in message and "quote" in message
