"""Recorded files in the shapes public sources publish them, read through the `hashpivot`
command: a backtest runs on each config, and `hashpivot data inspect` yields the values
the test works out itself from the raw files (csv/json modules, zoneinfo)."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

DATA = Path(__file__).parents[1] / "fixtures" / "data"
EUROPE = DATA / "europe.yaml"
TEXAS = DATA / "texas.yaml"


def hashpivot(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe, "the hashpivot console script is installed with the package"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def inspect(config: Path) -> dict[str, Any]:
    proc = hashpivot("data", "inspect", str(config), "--json", "--rows", "100000")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    return {s["name"]: s for s in found["sources"]}


def stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def check_series(got: dict[str, Any], expected: list[tuple[datetime, float]]) -> None:
    assert got["rows"] == len(expected)
    assert [t for t, _ in got["first"]] == [stamp(t) for t, _ in expected]
    assert [v for _, v in got["first"]] == pytest.approx([v for _, v in expected])
    values = [v for _, v in expected]
    assert got["min"] == pytest.approx(min(values))
    assert got["median"] == pytest.approx(statistics.median(values))
    assert got["max"] == pytest.approx(max(values))


def read(name: str, delimiter: str = ",") -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


def utc_day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- expected values, from the raw files --------------------------------------------------


def dayahead_usd() -> list[tuple[datetime, float]]:
    """DE-LU prices by the file's UTC column, EUR → USD at the ECB rate in force."""
    rates = sorted((utc_day(r["TIME_PERIOD"]), float(r["OBS_VALUE"]))
                   for r in read("ecb_eurusd.csv"))  # fmt: skip
    out = []
    for row in read("dayahead_de_fr.csv", ";"):
        if row["Area"] != "DE-LU":
            continue
        t = datetime.fromisoformat(row["MTU (UTC)"].replace("Z", "+00:00"))
        rate = [r for d, r in rates if d <= t][-1]
        out.append((t, float(row["Day-ahead Price [EUR/MWh]"].replace(",", ".")) * rate))
    return sorted(out)


def ercot_hb_west() -> list[tuple[datetime, float]]:
    """HB_WEST hours, each placed by counting hours from its delivery day's local midnight."""
    chicago = ZoneInfo("America/Chicago")
    by_day: dict[str, list[float]] = defaultdict(list)
    for row in read("ercot_rt_hubs.csv"):
        if row["SettlementPoint"] == "HB_WEST":
            by_day[row["DeliveryDate"]].append(float(row["SettlementPointPrice"]))
    out = []
    for day, prices in by_day.items():
        midnight = datetime.strptime(day, "%m/%d/%Y").replace(tzinfo=chicago).astimezone(UTC)
        out += [(midnight + timedelta(hours=k), p) for k, p in enumerate(prices)]
    return sorted(out)


def chain(value: str) -> list[tuple[datetime, float]]:
    out = []
    for row in read("chain_daily_export.csv"):
        if not row["BlkCnt"]:
            continue
        if value == "fees":
            v = float(row["FeeTotUSD"]) / float(row["PriceUSD"]) / float(row["BlkCnt"])
        else:
            v = float(row["DiffMean"])
        out.append((utc_day(row["date"]), v))
    return out


def gpu_book() -> list[tuple[datetime, float]]:
    per_day: dict[str, list[float]] = defaultdict(list)
    for line in (DATA / "gpu_price_book.jsonl").read_text().splitlines():
        offer = json.loads(line)
        if offer["gpu"] == "H100 SXM5 80GB":
            per_day[offer["date"]].append(offer["usd_per_hour"] / offer["gpus"])
    return [(utc_day(d), statistics.median(p)) for d, p in sorted(per_day.items())]


def klines() -> list[tuple[datetime, float]]:
    return [(datetime.fromtimestamp(int(r["open_time"]) / 1000, UTC), float(r["close"]))
            for r in read("btcusdt_1h_klines.csv")]  # fmt: skip


# --- through the entry points --------------------------------------------------------------


def test_europe_sources_yield_what_the_files_say() -> None:
    got = inspect(EUROPE)
    check_series(got["power_usd_mwh.de-lu"], dayahead_usd())
    check_series(got["btc_usd"], klines())
    check_series(got["difficulty"], chain("difficulty"))
    check_series(got["fees_btc_per_block"], chain("fees"))
    assert got["fees_btc_per_block"]["left_out"] == sum(
        1 for r in read("chain_daily_export.csv") if not r["BlkCnt"]
    )
    check_series(got["gpu_usd_per_gpu_hour.H100_80GB_SXM5"], gpu_book())
    jobs = [r for r in read("cluster_job_log.csv")
            if int(r["gpu_request"]) > 0 and r["gpu_product"] == "NVIDIA-H100-80GB-HBM3"]
    demand = got["demand (H100_80GB_SXM5)"]
    assert demand["rows"] == len(jobs)
    hours = [
        (datetime.fromisoformat(r["deleted"]) - datetime.fromisoformat(r["created"]))
        .total_seconds() / 3600 for r in jobs
    ]  # fmt: skip
    assert demand["gpu_hours"] == pytest.approx(
        sum(int(r["gpu_request"]) * h for r, h in zip(jobs, hours, strict=True))
    )
    assert demand["interruptible_share"] == pytest.approx(
        sum(r["priority_class"] == "preemptible" for r in jobs) / len(jobs)
    )


def test_texas_hour_ending_local_stamps_land_on_utc_hours() -> None:
    got = inspect(TEXAS)
    expected = ercot_hb_west()
    check_series(got["power_usd_mwh.west"], expected)
    # The autumn night has 25 hours, all present, one hour apart.
    times = [t for t, _ in expected]
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(times))


@pytest.mark.parametrize("config", [EUROPE, TEXAS], ids=["europe", "texas"])
def test_backtest_runs_on_files_as_they_come(config: Path, tmp_path: Path) -> None:
    proc = hashpivot("backtest", "-c", str(config), "--no-ray", "--no-baselines",
                     "--report", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    settings = yaml.safe_load(config.read_text())["backtest"]
    span = settings["end"] - settings["start"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["period"]["steps"] == int(span.total_seconds() // 3600)
    assert "hold every node" not in proc.stderr


def _variant(tmp_path: Path, config: Path, edit: dict[str, Any]) -> Path:
    data = yaml.safe_load(config.read_text())
    for dotted, value in edit.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    for name in DATA.iterdir():
        if name.suffix != ".yaml":
            shutil.copy(name, tmp_path / name.name)
    out = tmp_path / config.name
    out.write_text(yaml.safe_dump(data))
    return out


def test_newest_first_file_without_sort_is_refused_naming_line(tmp_path: Path) -> None:
    config = _variant(tmp_path, EUROPE, {"market.power_usd_mwh.default.sort": None})
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    lines = (DATA / "dayahead_de_fr.csv").read_text().splitlines()
    second_de = [i + 1 for i, line in enumerate(lines) if ";DE-LU;" in line][1]
    assert "dayahead_de_fr.csv" in proc.stderr and f"line {second_de}" in proc.stderr
    assert "rows out of time order" in proc.stderr and "sort: true" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cpu_only_rows_fail_config_check_not_the_backtest(tmp_path: Path) -> None:
    config = _variant(tmp_path, TEXAS, {"demand.filter": None, "demand.gpu_model_column": None,
                                        "demand.gpu_models": None})  # fmt: skip
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    lines = (DATA / "cluster_job_log.csv").read_text().splitlines()
    first_cpu = next(i + 1 for i, line in enumerate(lines) if line.split(",")[4] == "0")
    assert f"cluster_job_log.csv, line {first_cpu}, column 'gpu_request'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_foreign_currency_without_a_rate_is_refused(tmp_path: Path) -> None:
    config = _variant(tmp_path, EUROPE, {"market.power_usd_mwh.default.fx": None})
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    assert "market.power_usd_mwh.default" in proc.stderr and "needs fx" in proc.stderr


@pytest.mark.parametrize("rate", [0, -1.08])
def test_a_currency_rate_that_is_not_positive_is_refused(tmp_path: Path, rate: float) -> None:
    config = _variant(tmp_path, EUROPE, {"market.power_usd_mwh.default.fx": rate})
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    assert "market.power_usd_mwh.default" in proc.stderr and str(config) in proc.stderr
    assert ".fx: " in proc.stderr and "a currency rate is USD per unit, above 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_fx_series_rate_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    config = _variant(tmp_path, EUROPE, {})
    rates = (tmp_path / "ecb_eurusd.csv").read_text().splitlines()
    day = rates[3].split(",")[0]
    rates[3] = f"{day},0"
    (tmp_path / "ecb_eurusd.csv").write_text("\n".join(rates) + "\n")
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    assert "ecb_eurusd.csv" in proc.stderr and "line 4" in proc.stderr
    assert "OBS_VALUE" in proc.stderr and "Traceback" not in proc.stderr


def test_late_series_start_is_reported_by_the_backtest(tmp_path: Path) -> None:
    # The bundled daily BTC extract begins on 2023-01-01 and is known a day later.
    config = tmp_path / "late.yaml"
    lag = 86400
    config.write_text(yaml.safe_dump({
        "fleet": [{"profile": "s21", "count": 2, "mode": "mine"}],
        "market": {
            "btc_usd": {"path": "bundled:recorded/btc_daily.csv", "time_column": "date",
                        "value_column": "price_usd", "unit": "usd", "observed_lag_s": lag},
            "difficulty": 1.1e14, "fees_btc_per_block": 0.1,
            "power_usd_mwh": {"default": 40.0},
        },
        "backtest": {"start": "2023-01-01T00:00:00Z", "end": "2023-01-03T00:00:00Z"},
    }))  # fmt: skip
    proc = hashpivot("backtest", "-c", str(config), "--no-ray", "--no-baselines",
                     "--report", str(tmp_path / "r"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stderr.split())
    assert "btc_usd is first known at 2023-01-02T00:00:00Z" in flat
    assert f"hold every node for the first {lag // 3600} h" in flat
    check = hashpivot("config", "check", str(config))
    assert check.returncode == 0, check.stderr
    assert f"hold every node for the first {lag // 3600} h" in " ".join(check.stdout.split())


def test_config_check_reports_every_source() -> None:
    proc = hashpivot("config", "check", str(EUROPE))
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    empty = sum(1 for r in read("chain_daily_export.csv") if not r["BlkCnt"])
    good = sum(1 for r in read("chain_daily_export.csv") if r["BlkCnt"])
    assert f"fees_btc_per_block: {good:,} rows" in out and f"{empty} row(s) left out" in out
    de = sum(1 for r in read("dayahead_de_fr.csv", ";") if r["Area"] == "DE-LU")
    assert f"power_usd_mwh.de-lu: {de:,} rows" in out
    assert "demand (H100_80GB_SXM5):" in out and "gpu_hours" in out


def test_inspect_reads_parquet_through_the_command(tmp_path: Path) -> None:
    import duckdb

    out = tmp_path / "klines.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{DATA / 'btcusdt_1h_klines.csv'}')) TO '{out}'")
    proc = hashpivot("data", "inspect", str(out), "--value-column", "close",
                     "--set", "time=to_timestamp(open_time / 1000)", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["sources"][0]
    closes = [v for _, v in klines()]
    assert found["rows"] == len(closes) and found["median"] == pytest.approx(
        statistics.median(closes))


def test_inspect_a_file_with_options_and_a_plot(tmp_path: Path) -> None:
    png = tmp_path / "power.png"
    proc = hashpivot("data", "inspect", str(DATA / "dayahead_de_fr.csv"),
                     "--value-column", "Day-ahead Price [EUR/MWh]",
                     "--set", "separator=;", "--set", "decimal=,", "--set", "sort=true",
                     "--set", "time_column=MTU (UTC)", "--set", "key_column=Area",
                     "--set", "key=FR", "--json", "--plot", str(png))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["sources"][0]
    fr = [float(r["Day-ahead Price [EUR/MWh]"].replace(",", "."))
          for r in read("dayahead_de_fr.csv", ";") if r["Area"] == "FR"]  # fmt: skip
    assert found["rows"] == len(fr) and found["max"] == pytest.approx(max(fr))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Without a value column: the columns and first rows, as read.
    proc = hashpivot("data", "inspect", str(DATA / "ercot_rt_hubs.csv"), "--rows", "2")
    assert proc.returncode == 0, proc.stderr
    assert "DeliveryDate (VARCHAR)" in proc.stdout and "11/01/2023 | 01:00 | HB_WEST" in proc.stdout


def test_empty_rows_matter_only_where_the_backtest_reads(tmp_path: Path) -> None:
    # Hourly power with one empty hour three days before the start: outside the period,
    # but inside the 14-day history a history-reading policy (lookahead) looks back on.
    start = datetime(2025, 1, 20, tzinfo=UTC)
    hours = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(24 * 22)]
    empty = start - timedelta(days=3)
    rows = [f"{t:%Y-%m-%dT%H:%M:%SZ},{'' if t == empty else 30 + h % 24}"
            for h, t in enumerate(hours)]  # fmt: skip
    (tmp_path / "power.csv").write_text("time,usd_per_mwh\n" + "\n".join(rows) + "\n")
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({
        "fleet": [{"profile": "s21", "count": 2, "mode": "mine"}],
        "market": {"btc_usd": 97000.0, "difficulty": 1.1e14, "fees_btc_per_block": 0.1,
                   "power_usd_mwh": {"default": {
                       "path": "power.csv", "value_column": "usd_per_mwh",
                       "unit": "usd_per_mwh", "observed_lag_s": 3600}}},
        "backtest": {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()},
    }))  # fmt: skip
    line = 2 + hours.index(empty)
    for policy, fails in (("hysteresis", False), ("lookahead", True)):
        proc = hashpivot("backtest", "-c", str(config), "-p", policy, "--no-ray",
                         "--no-baselines", "--report", str(tmp_path / policy))  # fmt: skip
        assert (proc.returncode == 2) == fails, proc.stderr
        if fails:
            assert f"power.csv, line {line}, column 'usd_per_mwh': missing value" in proc.stderr


def test_a_deletion_time_given_as_duration_is_refused(tmp_path: Path) -> None:
    config = _variant(tmp_path, TEXAS, {"demand.end_column": None,
                                        "demand.duration_column": "deleted"})  # fmt: skip
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    first = read("cluster_job_log.csv")[0]["deleted"]
    assert f"line 2, column 'deleted': not a number: {first!r}" in proc.stderr
    assert "end_column" in proc.stderr and "Traceback" not in proc.stderr


def power_site(tmp_path: Path, series: dict[str, Any], **sections: Any) -> Path:
    """A one-miner site whose power price is `power.csv` in `tmp_path`, read with
    `series` (its other prices fixed); `sections` are added to the file as they are."""
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({
        "fleet": [{"profile": "s21", "count": 1, "mode": "mine"}],
        "market": {"btc_usd": 97000.0, "difficulty": 1.1e14, "fees_btc_per_block": 0.1,
                   "power_usd_mwh": {"default": {
                       "path": "power.csv", "unit": "usd_per_mwh", **series}}},
        **sections,
    }))  # fmt: skip
    return config


@pytest.mark.parametrize("written", [
    "2025-01-01 00:00:00 America/Chicago",
    "2025-01-01T06:00:00Z ",  # a space before the separator
    "2025-01-01 07:00:00 CET",
    "2025-01-01T00:00:00-06:00",
    "2025-01-01 06:00:00 utc",
    "2025-01-01 00:00:00",  # no zone: the file's
])
def test_a_stamp_that_names_its_zone_is_that_instant(tmp_path: Path, written: str) -> None:
    # The file's time zone applies to stamps that name none, never a second time to one
    # that names its own (by offset, abbreviation or zone name).
    (tmp_path / "power.csv").write_text(f"time,v\n{written},30\n2025-01-01 01:00:00,31\n")
    config = power_site(tmp_path, {"value_column": "v", "timezone": "America/Chicago"})
    found = inspect(config)["power_usd_mwh.default"]
    assert [t for t, _ in found["first"]] == ["2025-01-01T06:00Z", "2025-01-01T07:00Z"]


@pytest.mark.parametrize(("series", "column", "value", "bound"), [
    ("btc_usd", "close_usd", "-107489", "above 0"),
    ("btc_usd", "close_usd", "0", "above 0"),
    ("gpu_usd_per_gpu_hour.H100_80GB_SXM5", "usd_per_gpu_hour", "-2.5", "0 or more"),
])
def test_a_market_value_out_of_its_range_is_refused_where_the_backtest_needs_it(
    tmp_path: Path, series: str, column: str, value: str, bound: str
) -> None:
    # A negative BTC or GPU price is a wrong column or a corrupt file: never booked. Like
    # an unreadable value it is left out, an error where the period needs its row.
    site = Path(__file__).parents[2] / "examples" / "gpu-only" / "site.yaml"
    data = yaml.safe_load(site.read_text())
    spec = data["market"]
    for key in series.split("."):
        spec = spec[key]
    name = spec["path"].removeprefix("bundled:recorded/")
    bundled = Path(__file__).parents[2] / "orchestrator" / "data" / "recorded" / name
    spec["path"] = name
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(data))
    for day, needed in (("2025-10-22", True), ("2025-11-10", False)):
        lines = bundled.read_text().splitlines()
        header = lines[0].split(",")
        row = next(i for i, line in enumerate(lines)
                   if line.startswith(day)
                   and ("key" not in spec or f",{spec['key']}," in f",{line},"))
        cells = lines[row].split(",")
        cells[header.index(column)] = value
        lines[row] = ",".join(cells)
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        proc = hashpivot("backtest", "-c", str(config), "-p", "greedy", "--no-ray",
                         "--no-baselines", "--from", "2025-10-22", "--to", "2025-10-24",
                         "--report", str(tmp_path / "out"))  # fmt: skip
        assert "Traceback" not in proc.stderr
        if not needed:
            assert proc.returncode == 0, proc.stderr
            continue
        assert proc.returncode == 2, proc.stderr
        assert f"{name}, line {row + 1}, column '{column}'" in proc.stderr
        assert f"series {series} takes values {bound}" in proc.stderr


@pytest.mark.parametrize(("field", "value", "message"), [
    ("market.power_usd_mwh.default.unit", "sat", "unit 'sat' is not a unit of power_usd_mwh"),
    ("market.fees_btc_per_block.unit", "usd_per_kwh",
     "unit 'usd_per_kwh' is not a unit of fees_btc_per_block"),
    ("market.btc_usd", -1.0, "-1.0: btc_usd takes values above 0"),
])
def test_a_market_series_in_a_unit_it_cannot_have_is_refused(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    site = Path(__file__).parents[2] / "examples" / "gpu-only" / "site.yaml"
    config = _variant(tmp_path, site, {field: value})
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    assert str(config) in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("hours", [600, 30_000])  # a row inside / past the sniffed sample
@pytest.mark.parametrize(("broken", "why"), [
    ('{time},"{value}', "a quote that is never closed"),  # the rest of the file, as read
    ("{time},{value},9", "3 fields, the header has 2"),
])
def test_a_row_the_csv_reader_cannot_split_is_named_in_one_short_line(
    tmp_path: Path, hours: int, broken: str, why: str
) -> None:
    start = datetime(2022, 1, 1, tzinfo=UTC)
    rows = [f"{start + timedelta(hours=h):%Y-%m-%dT%H:%M:%SZ},{20 + h % 7}.5"
            for h in range(hours)]  # fmt: skip
    bad = hours - 100
    time, value = rows[bad].split(",")
    rows[bad] = broken.format(time=time, value=value)
    (tmp_path / "power.csv").write_text("time,v\n" + "\n".join(rows) + "\n")
    config = power_site(tmp_path, {"value_column": "v"})
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, proc.stderr
    assert f"power.csv, line {bad + 2}: cannot read as csv: {why}" in lines[0]
    # No hints naming the reader's own options, which a site file cannot set.
    assert "strict_mode" not in lines[0] and "ignore_errors" not in lines[0]


def test_columns_an_expression_reads_are_typed_from_every_row(tmp_path: Path) -> None:
    # Whole numbers first and decimals only past the rows a reader would sample: the
    # column is a number column, every value as written (none rounded to a whole one).
    start = datetime(2022, 1, 1, tzinfo=UTC)
    values = [f"{20 + h % 7}" if h < 21_000 else f"{20 + h % 7}.25" for h in range(25_000)]
    rows = [f"{start + timedelta(hours=h):%Y-%m-%dT%H:%M:%SZ},{v},x"
            for h, v in enumerate(values)]  # fmt: skip
    rows[24_000] = rows[24_000][:-1] + "n/a"  # an unused column: no matter
    (tmp_path / "power.csv").write_text("time,v,note\n" + "\n".join(rows) + "\n")
    period = {"start": "2022-01-05T00:00:00Z", "end": "2022-01-10T00:00:00Z"}
    config = power_site(tmp_path, {"value": "v * 2"}, backtest=period)
    proc = hashpivot("data", "inspect", str(config), "--json", "--rows", "100000")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["sources"][0]
    numbers = [2 * float(v) for v in values]
    assert found["rows"] == len(numbers)
    assert [v for _, v in found["first"]][20_990:21_010] == numbers[20_990:21_010]
    assert found["max"] == max(numbers) and found["median"] == statistics.median(numbers)


def test_a_column_of_numbers_and_some_text_stays_text_for_the_sql_to_clean(
    tmp_path: Path,
) -> None:
    # One 'n/a' past the sampled rows: arithmetic on the column is refused with the way
    # out; TRY_CAST reads it as empty, an error only where the period needs it.
    start = datetime(2022, 1, 1, tzinfo=UTC)
    values = [f"{20 + h % 7}.5" for h in range(25_000)]
    values[23_000] = "n/a"
    rows = [f"{start + timedelta(hours=h):%Y-%m-%dT%H:%M:%SZ},{v}"
            for h, v in enumerate(values)]  # fmt: skip
    (tmp_path / "power.csv").write_text("time,v\n" + "\n".join(rows) + "\n")
    period = {"start": "2022-01-05T00:00:00Z", "end": "2022-01-10T00:00:00Z"}
    config = power_site(tmp_path, {"value": "v * 2"}, backtest=period)
    proc = hashpivot("config", "check", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("column 'v' holds text in some rows, e.g. 'n/a': TRY_CAST(v AS DOUBLE) reads "
            "those as empty") in proc.stderr
    assert "Candidate functions" not in proc.stderr
    config = power_site(tmp_path, {"value": "TRY_CAST(v AS DOUBLE) * 2"}, backtest=period)
    proc = hashpivot("data", "inspect", str(config), "--json", "--rows", "100000")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["sources"][0]
    assert found["rows"] == len(values) - 1 and found["max"] == 2 * 26.5
    proc = hashpivot("backtest", "-c", str(config), "-p", "greedy", "--no-ray",
                     "--no-baselines", "--from", "2024-08-16", "--to", "2024-08-17",
                     "--report", str(tmp_path / "out"))  # fmt: skip
    assert (start + timedelta(hours=23_000)).date().isoformat() == "2024-08-16"
    assert proc.returncode == 2, proc.stderr
    assert "power.csv, line 23002" in proc.stderr
    assert "no value: a cell the expression reads is empty or not a number" in proc.stderr
    # Text-cleaning SQL works on a column that stays text: thousands separators.
    rows = ["time,price"] + [f"2022-01-01T{h:02d}:00:00Z,\"{1000 + h:,}.5\"" if h % 2 else
                             f"2022-01-01T{h:02d}:00:00Z,{h}.5" for h in range(24)]
    (tmp_path / "power.csv").write_text("\n".join(rows) + "\n")
    config = power_site(tmp_path, {"value": "replace(price, ',', '')::DOUBLE"})
    proc = hashpivot("data", "inspect", str(config), "--json", "--rows", "100")
    assert proc.returncode == 0, proc.stderr
    got = [v for _, v in json.loads(proc.stdout)["sources"][0]["first"]]
    assert got == [1000 + h + 0.5 if h % 2 else h + 0.5 for h in range(24)]


def test_a_blank_row_in_a_job_trace_is_no_job(tmp_path: Path) -> None:
    # Only separators, as a spreadsheet export writes an emptied row: skipped, as in a
    # recorded series, and the backtest serves the same jobs as without it.
    site = Path(__file__).parents[2] / "examples" / "gpu-only" / "site.yaml"
    data = yaml.safe_load(site.read_text())
    trace = Path(__file__).parents[2] / "orchestrator" / "data" / "recorded" / "ai_jobs_trace.csv"
    lines = trace.read_text().splitlines()
    blank = "," * (lines[0].count(","))
    summaries = []
    for name, rows in (("as-is", lines), ("blank", [*lines[:5], blank, *lines[5:], blank])):
        (tmp_path / f"{name}.csv").write_text("\n".join(rows) + "\n")
        data["demand"]["path"] = f"{name}.csv"
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(data))
        proc = hashpivot("backtest", "-c", str(config), "-p", "greedy", "--no-ray",
                         "--no-baselines", "--from", "2025-10-22", "--to", "2025-10-24",
                         "--report", str(tmp_path / name))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    served = [s["policies"]["greedy"]["jobs_served"] for s in summaries]
    assert served[0] > 0 and served[0] == served[1]


@pytest.mark.parametrize(
    ("option", "sql"),
    [("query", "SELECT * FROM src; COPY (SELECT 1) TO '{out}'"),
     ("filter", "true) ; COPY (SELECT 1) TO '{out}' ; SELECT (1"),
     ("value", "usd_per_mwh) ; COPY (SELECT 1) TO '{out}' ; SELECT (1")],
)  # fmt: skip
def test_config_check_refuses_site_file_sql_beyond_one_select(
        tmp_path: Path, option: str, sql: str) -> None:
    golden = Path(__file__).parents[1] / "fixtures" / "golden"
    for name in ("power.csv", "jobs.csv"):
        shutil.copy(golden / name, tmp_path / name)
    site = yaml.safe_load((golden / "site.yaml").read_text())
    out = tmp_path / "written.csv"
    series = site["market"]["power_usd_mwh"]["default"]
    series[option] = sql.format(out=out)
    if option == "value":
        del series["value_column"]
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    done = hashpivot("config", "check", str(tmp_path / "site.yaml"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{option}: must be one SQL" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert not out.exists()
