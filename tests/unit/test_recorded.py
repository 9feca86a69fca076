"""Recorded series: no look-ahead, and bad files give errors naming file, line and column."""

from __future__ import annotations

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
    return SeriesSource(path=str(path), value_column="v", **kw)  # type: ignore[arg-type]


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
