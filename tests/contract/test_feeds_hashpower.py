"""GPU hashpower prices live: a marketplace's price list through `LiveMarketSource`, into
the snapshot the cycle prices GPU mining from, and through `hashpivot record` into a
recording the backtest replays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.recorder import record
from orchestrator.backtest.recorded import RecordedMarketSource
from orchestrator.engine.prices import snapshot_to_prices
from orchestrator.models import FleetTable, Site
from orchestrator.models.config import RecordedMarketConfig
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.models.hardware import GPU_HASHPOWER_ALGORITHM
from tests.conftest import profiles
from tests.contract.feedserver import (
    NOW,
    FeedServer,
    Reply,
    fixture_bytes,
    live_config,
    serve_market,
)

PRICES = json.loads(fixture_bytes("hashpower_prices.json"))["algos"]


def hashpower_config(server: FeedServer, **over: object) -> LiveMarketConfig:
    source = {"url": f"{server.base}/hashpower.json", "items_path": "algos",
              "algorithm_field": "a", "price_field": "p", "time_field": "t",
              "time_format": "unix_ms", "algorithms": {"KAWPOW": GPU_HASHPOWER_ALGORITHM},
              "scale": 0.5}
    return live_config(server, fees_window_blocks=15, hashpower_sources=[source], **over)


def serve(server: FeedServer) -> None:
    serve_market(server)
    server.route("/hashpower.json", Reply.fixture("hashpower_prices.json"))


def test_gpu_mining_is_priced_from_the_live_marketplace(feed_server: FeedServer) -> None:
    serve(feed_server)
    src = LiveMarketSource.from_config(hashpower_config(feed_server), sleep=lambda s: None)
    snap = src.snapshot(NOW)
    kawpow = next(p for p in PRICES if p["a"] == "KAWPOW")
    got = snap.hashpower_btc_per_unit_day[GPU_HASHPOWER_ALGORITHM]
    assert got.value == pytest.approx(kawpow["p"] * 0.5)
    assert got.observed_at.timestamp() == kawpow["t"] / 1000
    # The cycle's prices: BTC per unit per day × BTC/USD, as in backtests.
    fleet = FleetTable.build(profiles("s21", "h100-sxm-8x"), [Site(name="default")], [0, 1])
    prices = snapshot_to_prices(snap, fleet)
    j = fleet.algorithms.index(GPU_HASHPOWER_ALGORITHM)
    assert prices.usd_per_unit_day[j] == pytest.approx(kawpow["p"] * 0.5 * snap.btc_usd.value)


def test_numbered_algorithms_and_the_fixed_price(feed_server: FeedServer) -> None:
    serve(feed_server)
    data = hashpower_config(feed_server).model_dump(mode="json")
    data["hashpower_sources"][0]["algorithms"] = {"47": "other-hashpower"}
    data["hashpower_btc_per_unit_day_fixed"] = {GPU_HASHPOWER_ALGORITHM: 0.00001}
    cfg = LiveMarketConfig.model_validate(data)
    src = LiveMarketSource.from_config(cfg, sleep=lambda s: None)
    snap = src.snapshot(NOW)
    numbered = next(p for p in PRICES if p["a"] == 47)
    assert snap.hashpower_btc_per_unit_day["other-hashpower"].value == pytest.approx(
        numbered["p"] * 0.5)
    assert snap.hashpower_btc_per_unit_day[GPU_HASHPOWER_ALGORITHM].value == 0.00001


def test_a_dead_marketplace_goes_stale_instead_of_falling_back(feed_server: FeedServer) -> None:
    serve(feed_server)
    cfg = LiveMarketConfig.model_validate(
        {**hashpower_config(feed_server).model_dump(mode="json"),
         "hashpower_btc_per_unit_day_fixed": {GPU_HASHPOWER_ALGORITHM: 0.00001}})
    src = LiveMarketSource.from_config(cfg, sleep=lambda s: None)
    src.refresh(NOW)
    feed_server.route("/hashpower.json", Reply(status=503))
    later = NOW + cfg.ttl.hashpower_s + 60
    src.refresh(later)
    good = src.quality.last_good(f"hashpower_btc_per_unit_day.{GPU_HASHPOWER_ALGORITHM}")
    assert good is not None and good.value != 0.00001
    assert src.quality.is_stale(f"hashpower_btc_per_unit_day.{GPU_HASHPOWER_ALGORITHM}", later)


def test_recorded_hashpower_replays_unchanged(feed_server: FeedServer, tmp_path: Path) -> None:
    serve(feed_server)
    cfg = hashpower_config(feed_server)
    source = LiveMarketSource.from_config(cfg, sleep=lambda s: None)
    live = {}
    path = record(cfg, tmp_path, samples=1, interval_s=0, clock=lambda: NOW,
                  progress=lambda p: live.update(snap=source.last_good_snapshot()),
                  source=source)
    market = RecordedMarketConfig.model_validate(yaml.safe_load(path.read_text())["market"])
    fleet = FleetTable.build(profiles("h100-sxm-8x"), [Site(name="default")], [0])
    replay = RecordedMarketSource(market, tmp_path, fleet).snapshot(NOW)
    want = live["snap"].hashpower_btc_per_unit_day[GPU_HASHPOWER_ALGORITHM]
    got = replay.hashpower_btc_per_unit_day[GPU_HASHPOWER_ALGORITHM]
    assert (got.value, got.observed_at) == (want.value, want.observed_at)
