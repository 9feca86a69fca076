"""LiveMarketSource end to end against the local server: last good values, staleness,
the safe state, and the counts the metrics export."""

from __future__ import annotations

import math

import pytest

from orchestrator.adapters.market.live import LiveMarketSource, MarketStaleError
from orchestrator.adapters.market.quality import Reject
from orchestrator.errors import FeedError
from orchestrator.ports import MarketSource
from tests.contract.feedserver import (
    DIFFICULTY,
    NOW,
    TIP,
    FeedServer,
    Reply,
    fixture_fees_sat,
    live_config,
    serve_market,
)


def all_down(server: FeedServer) -> None:
    for path in list(server.routes):
        server.route(path, Reply(status=503))


def test_snapshot_carries_every_value_with_source_and_time(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = LiveMarketSource.from_config(live_config(feed_server), sleep=lambda s: None)
    assert isinstance(src, MarketSource)
    snap = src.snapshot(NOW)
    assert snap.difficulty.value == DIFFICULTY
    assert snap.difficulty.source == "mempool@127.0.0.1"
    fees = sum(fixture_fees_sat(h) for h in range(TIP - 143, TIP + 1)) / 144 / 1e8
    assert snap.fees_btc_per_block.value == pytest.approx(fees)
    assert snap.subsidy_btc.value == 3.125
    assert snap.btc_usd.value == 97012.35
    assert snap.power_usd_mwh["default"].value == 33.42
    assert {m: o.value for m, o in snap.gpu_usd_per_gpu_hour.items()} == {
        "H100_80GB_SXM5": 2.15,
        "H200_141GB": 3.4,
    }
    for name, obs in snap.values():
        assert obs.observed_at.timestamp() <= NOW, name
    status = src.status(NOW)
    assert not any(s.stale for s in status.values())
    assert src.rejection_counts() == {}
    src.close()


def test_dead_feeds_keep_last_good_values_until_their_ttl(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    rejected: list[tuple[str, Reject]] = []
    config = live_config(feed_server, fees_window_blocks=15)
    src = LiveMarketSource.from_config(
        config, sleep=lambda s: None, on_reject=lambda f, r, d: rejected.append((f, r))
    )
    first = src.snapshot(NOW)
    all_down(feed_server)
    # Within every TTL: the same values, with their original observation times.
    later = NOW + config.ttl.btc_usd_s - 120
    again = src.snapshot(later)
    assert again == first
    assert ("btc_usd", Reject.SERVER_ERROR) in rejected
    assert ("chain", Reject.SERVER_ERROR) in rejected
    # Past the BTC/USD TTL: refused, with the stale feed named and the last good market.
    with pytest.raises(MarketStaleError) as err:
        src.snapshot(NOW + config.ttl.btc_usd_s + 1)
    assert set(err.value.stale) >= {"btc_usd"}
    assert "power_usd_mwh.default" not in err.value.stale
    assert err.value.snapshot == first
    assert src.status(NOW + config.ttl.btc_usd_s + 1)["btc_usd"].stale


def test_feeds_recover_after_the_outage(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    config = live_config(feed_server, fees_window_blocks=15)
    src = LiveMarketSource.from_config(config, sleep=lambda s: None)
    src.snapshot(NOW)
    all_down(feed_server)
    with pytest.raises(MarketStaleError):
        src.snapshot(NOW + 3600)
    serve_market(feed_server)
    fresh = src.snapshot(NOW + 3600)
    assert fresh.btc_usd.observed_at.timestamp() == NOW + 3600  # Coinbase/Kraken: fetch time


def test_no_value_ever_is_a_feed_error(feed_server: FeedServer) -> None:
    src = LiveMarketSource.from_config(live_config(feed_server), sleep=lambda s: None)
    with pytest.raises(FeedError) as err:
        src.snapshot(NOW)
    assert not isinstance(err.value, MarketStaleError)
    assert "btc_usd" in str(err.value)


def test_no_power_source_is_named(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = LiveMarketSource.from_config(
        live_config(feed_server, power_sources={}), sleep=lambda s: None
    )
    with pytest.raises(FeedError, match="power_usd_mwh_fixed"):
        src.snapshot(NOW)


def test_future_timestamp_is_rejected(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.json(
        "/bitstamp/api/v2/ticker/btcusd/",
        f'{{"last": "97008", "timestamp": "{int(NOW + 7200)}", "pair": "BTC/USD"}}',
    )
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply(status=500))
    feed_server.route("/kraken/0/public/Ticker?pair=XBTUSD", Reply(status=500))
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    src.refresh(NOW)
    assert src.quality.last_good("btc_usd") is None
    assert src.rejection_counts()["btc_usd"]["future_timestamp"] == 1


def test_small_clock_skew_is_clamped_to_the_fetch_time(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.json(
        "/bitstamp/api/v2/ticker/btcusd/",
        f'{{"last": "97008", "timestamp": "{int(NOW + 30)}", "pair": "BTC/USD"}}',
    )
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    snap = src.snapshot(NOW)
    assert snap.btc_usd.observed_at.timestamp() == NOW


def test_history_is_kept_per_poll(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    for k in range(3):
        src.refresh(NOW + 60 * k)
    hist = src.history(NOW + 60)
    assert list(hist.times_s) == [NOW, NOW + 60]
    assert all(math.isfinite(v) and v > 0 for v in hist.hashprice_usd_ph_day)
    assert list(hist.power_usd_mwh) == [33.42, 33.42]
    assert src.history(NOW - 1).times_s.size == 0


def test_snapshot_polls_at_most_every_poll_interval(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15, poll_interval_s=60.0),
        sleep=lambda s: None,
    )
    src.snapshot(NOW)
    n = feed_server.hits("/coinbase/v2/prices/BTC-USD/spot")
    src.snapshot(NOW + 30)
    assert feed_server.hits("/coinbase/v2/prices/BTC-USD/spot") == n
    src.snapshot(NOW + 60)
    assert feed_server.hits("/coinbase/v2/prices/BTC-USD/spot") == n + 1
