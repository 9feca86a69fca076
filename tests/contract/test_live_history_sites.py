"""The live feed cache keeps every power site's price, the BTC price and difficulty in
its history, as they were at each poll, and lines the sites up with the fleet's."""

from __future__ import annotations

import math

import numpy as np

from orchestrator.adapters.market.live import LiveMarketSource
from tests.contract.feedserver import NOW, FeedServer, live_config, serve_market

FAR_USD_MWH = 80.0


def test_history_keeps_each_site_btc_and_difficulty(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    config = live_config(feed_server, fees_window_blocks=15)
    sources = {**config.power_sources, "far": {"kind": "fixed", "usd_mwh": FAR_USD_MWH}}
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15, power_sources=sources),
        sleep=lambda s: None,
    )
    snaps = [src.snapshot(NOW + 60 * k) for k in range(3)]
    hist = src.history(NOW + 60)
    assert hist.times_s.tolist() == [NOW, NOW + 60]
    assert hist.known_at_s.tolist() == hist.times_s.tolist()  # a poll knows what it holds
    assert hist.site_names == ("default", "far")
    default = snaps[0].power_usd_mwh["default"].value
    assert hist.site_power_usd_mwh.tolist() == [[default, FAR_USD_MWH]] * 2
    assert hist.btc_usd.tolist() == [s.btc_usd.value for s in snaps[:2]]
    assert hist.difficulty.tolist() == [s.difficulty.value for s in snaps[:2]]
    assert all(math.isfinite(v) and v > 0 for v in hist.hashprice_usd_ph_day)

    # A fleet's sites: its own column where one is keyed by its name, else 'default'.
    aligned = hist.for_sites(("far", "hall", "annex"))
    np.testing.assert_array_equal(aligned.site_power_usd_mwh,
                                  [[FAR_USD_MWH, default, default]] * 2)
    assert aligned.power_usd_mwh.tolist() == [FAR_USD_MWH] * 2  # the first site's
    assert src.history(NOW - 1).times_s.size == 0
