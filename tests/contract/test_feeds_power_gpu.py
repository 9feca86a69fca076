"""Power price (ERCOT-style CSV, JSON, fixed) and GPU rental price feeds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.adapters.market.gpu import JsonGpuFeed
from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.power import CsvPowerFeed, JsonPowerFeed
from orchestrator.adapters.market.quality import FeedRejectError, Reject
from orchestrator.models.feeds_config import (
    HttpCsvPower,
    HttpJsonGpuPrices,
    HttpJsonPower,
    HttpSettings,
)
from tests.contract.feedserver import NOW, FeedServer, Reply, SleepLog, live_config, serve_market


@pytest.fixture
def http(http_settings: HttpSettings, sleeps: SleepLog) -> FeedHttpClient:
    return FeedHttpClient(http_settings, sleep=sleeps)


def ercot(server: FeedServer, key: str = "HB_WEST") -> HttpCsvPower:
    return HttpCsvPower(
        url=f"{server.base}/ercot/hub.csv",
        time_columns=["DeliveryDate", "HourEnding"],
        time_format="%m/%d/%Y %H:%M",
        hour_ending=True,
        timezone="America/Chicago",
        key_column="SettlementPoint",
        key=key,
        value_column="SettlementPointPrice",
    )


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_ercot_csv_latest_started_interval(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    cand = CsvPowerFeed(ercot(feed_server), http).read(NOW)  # 08:13 CST
    # HE 09:00 covers 08:00–09:00 CST = 14:00Z; HE 10 has not started (a forecast).
    assert cand.value == 33.42
    assert cand.observed_s == ts("2025-01-04T14:00:00")
    north = CsvPowerFeed(ercot(feed_server, "HB_NORTH"), http).read(NOW)
    assert north.value == 30.05


def test_ercot_hour_ending_24(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    # 00:30 CST on 4 Jan: the last interval started is HE 24:00 of 3 Jan (23:00 CST).
    cand = CsvPowerFeed(ercot(feed_server), http).read(ts("2025-01-04T06:30:00"))
    assert cand.value == 22.10
    assert cand.observed_s == ts("2025-01-04T05:00:00")


def test_csv_schema_drift(feed_server: FeedServer, http: FeedHttpClient) -> None:
    feed_server.route(
        "/ercot/hub.csv",
        Reply(body=b"DeliveryDate,HourEnding,SettlementPoint,Price\n", content_type="text/csv"),
    )
    with pytest.raises(FeedRejectError) as err:
        CsvPowerFeed(ercot(feed_server), http).read(NOW)
    assert err.value.reason == Reject.SCHEMA
    assert "SettlementPointPrice" in str(err.value)


def test_csv_truncated_row(feed_server: FeedServer, http: FeedHttpClient) -> None:
    body = (
        b"DeliveryDate,HourEnding,SettlementPoint,SettlementPointPrice\n01/04/2025,09:00,HB_WEST\n"
    )
    feed_server.route("/ercot/hub.csv", Reply(body=body, content_type="text/csv"))
    with pytest.raises(FeedRejectError) as err:
        CsvPowerFeed(ercot(feed_server), http).read(NOW)
    assert err.value.reason == Reject.SCHEMA


def test_json_power(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    src = HttpJsonPower(
        url=f"{feed_server.base}/power.json",
        value_path="data.-1.price",
        time_path="data.-1.interval_start",
    )
    cand = JsonPowerFeed(src, http).read(NOW)
    assert (cand.value, cand.observed_s) == (31.25, ts("2025-01-04T14:00:00"))
    kwh = src.model_copy(update={"unit": "usd_per_kwh"})
    assert JsonPowerFeed(kwh, http).read(NOW).value == 31250.0


def test_fixed_power_never_goes_stale(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    config = live_config(feed_server, power_sources={}, power_usd_mwh_fixed=45.0)
    src = LiveMarketSource.from_config(config, sleep=lambda s: None)
    src.refresh(NOW)
    later = NOW + 10 * 86_400
    src.refresh(later)
    good = src.quality.last_good("power_usd_mwh.default")
    assert good is not None and good.value == 45.0 and good.observed_at.timestamp() == later


def gpu_source(server: FeedServer, **over: object) -> HttpJsonGpuPrices:
    data: dict[str, object] = {
        "url": f"{server.base}/gpu/offers.json",
        "items_path": "data",
        "model_field": "gpu_type",
        "price_field": "price_usd_hr",
        "models": {"H100_80GB": "H100_80GB_SXM5", "H200_141GB": "H200_141GB"},
    }
    data.update(over)
    return HttpJsonGpuPrices.model_validate(data)


def test_gpu_offers_median_per_model(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    got = JsonGpuFeed(gpu_source(feed_server), http).read(NOW)
    assert sorted(got) == ["H100_80GB_SXM5", "H200_141GB"]  # A100 is not mapped
    assert got["H100_80GB_SXM5"].value == 2.15
    assert got["H200_141GB"].value == 3.4
    low = JsonGpuFeed(gpu_source(feed_server, aggregate="min"), http).read(NOW)
    assert low["H100_80GB_SXM5"].value == 2.05


def test_gpu_offer_times(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    got = JsonGpuFeed(gpu_source(feed_server, time_field="seen"), http).read(NOW)
    assert got["H100_80GB_SXM5"].observed_s == ts("2025-01-04T13:40:00")  # oldest offer


def test_gpu_price_in_cents_is_out_of_range(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.json(
        "/gpu/offers.json",
        '{"data": [{"gpu_type": "H100_80GB", "price_usd_hr": 215}]}',
    )
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    src.refresh(NOW)
    assert src.quality.last_good("gpu_usd_per_gpu_hour.H100_80GB_SXM5") is None
    assert src.rejection_counts()["gpu_usd_per_gpu_hour.H100_80GB_SXM5"] == {"out_of_range": 1}


def test_gpu_schema_drift(feed_server: FeedServer, http: FeedHttpClient) -> None:
    feed_server.json("/gpu/offers.json", '{"offers": []}')
    with pytest.raises(FeedRejectError) as err:
        JsonGpuFeed(gpu_source(feed_server), http).read(NOW)
    assert err.value.reason == Reject.SCHEMA


def test_live_gpu_price_overrides_the_fixed_one_and_does_not_revert(
    feed_server: FeedServer,
) -> None:
    serve_market(feed_server)
    config = live_config(
        feed_server,
        fees_window_blocks=15,
        gpu_usd_per_gpu_hour_fixed={"H100_80GB_SXM5": 1.9, "B200_180GB": 5.0},
    )
    src = LiveMarketSource.from_config(config, sleep=lambda s: None)
    snap = src.snapshot(NOW)
    assert snap.gpu_usd_per_gpu_hour["H100_80GB_SXM5"].value == 2.15
    assert snap.gpu_usd_per_gpu_hour["B200_180GB"].value == 5.0
    feed_server.route("/gpu/offers.json", Reply(status=500))
    src.refresh(NOW + 600)
    good = src.quality.last_good("gpu_usd_per_gpu_hour.H100_80GB_SXM5")
    assert good is not None and good.value == 2.15 and good.observed_at.timestamp() == NOW


DAY_AHEAD = (b"time,price\n"
             b"2025-01-04T16:00:00Z,41.5\n"   # rows in any order
             b"2025-01-04T14:00:00Z,33.0\n"   # the hour in force at NOW (14:13Z)
             b"2025-01-04T15:00:00Z,39.0\n"
             b"2025-01-04T15:00:00Z,38.0\n"   # listed again: the later row stands
             b"2025-01-04T17:00:00Z,\n"       # not priced yet: left out
             b"2025-01-04T18:00:00Z,99999\n"  # past the plausible range
             b"2025-01-04T19:00:00Z,-12.5\n")  # negative prices happen


def test_a_csv_that_lists_later_hours_offers_them_ahead_of_the_price_in_force(
        feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    feed_server.route("/dayahead.csv", Reply(body=DAY_AHEAD, content_type="text/csv"))
    source = HttpCsvPower(url=f"{feed_server.base}/dayahead.csv", value_column="price")
    cand = CsvPowerFeed(source, http).read(NOW)
    assert cand.value == 33.0 and cand.observed_s == ts("2025-01-04T14:00:00")
    assert cand.ahead == ((ts("2025-01-04T15:00:00"), 38.0), (ts("2025-01-04T16:00:00"), 41.5),
                          (ts("2025-01-04T18:00:00"), 99999.0),
                          (ts("2025-01-04T19:00:00"), -12.5))

    # Through the live source: the hours ahead become history rows after now, known when
    # read; the implausible one is left out and counted, the price in force still taken.
    config = live_config(feed_server, fees_window_blocks=15)
    config = config.model_copy(update={"power_sources": {"default": source}})
    live = LiveMarketSource.from_config(config, sleep=lambda s: None)
    live.refresh(NOW)
    assert live.quality.last_good("power_usd_mwh.default") is not None
    assert live.rejection_counts()["power_usd_mwh.default"] == {"out_of_range": 1}
    ahead = live.history(NOW).after(NOW)
    assert ahead.times_s.tolist() == [ts("2025-01-04T15:00:00"), ts("2025-01-04T16:00:00"),
                                      ts("2025-01-04T19:00:00")]
    assert ahead.site_power_usd_mwh[:, 0].tolist() == [38.0, 41.5, -12.5]
    assert ahead.known_at_s.tolist() == [NOW] * 3
    # Nothing ahead is known before the reading that published it.
    assert live.history(NOW - 1.0).times_s.size == 0
