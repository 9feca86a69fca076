"""A chain source that names a block height the chain cannot have reached (a corrupted
body, a testnet or another chain's mirror) must not become the block height: taken, it
would zero the block subsidy and refuse every honest height after it as a regression."""

from __future__ import annotations

import json

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.quality import Reject
from orchestrator.economics import subsidy_btc_at_height
from orchestrator.models.feeds_config import LiveMarketConfig
from tests.contract.feedserver import NOW, FeedServer, Reply, fixture_bytes
from tests.faults.k8s_site import market_values

BCI = "/bci/stats"


def stats(height: int) -> bytes:
    body = json.loads(fixture_bytes("blockchain_info_stats.json"))
    body.pop("timestamp")  # observed when fetched
    body["n_blocks_total"] = height
    return json.dumps(body).encode()


def source(server: FeedServer) -> LiveMarketSource:
    config = LiveMarketConfig.model_validate(market_values(server, timeout_s=0.5))
    return LiveMarketSource.from_config(config, sleep=lambda s: None)


def test_a_height_the_chain_cannot_have_reached_is_refused_and_the_true_one_follows(
    feed_server: FeedServer,
) -> None:
    honest = int(json.loads(fixture_bytes("blockchain_info_stats.json"))["n_blocks_total"])
    # 64 halvings on: a subsidy of zero, were it believed.
    wild = 64 * 210_000
    assert subsidy_btc_at_height(wild) == 0.0 < subsidy_btc_at_height(honest)
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture("coinbase_spot.json"))
    feed_server.route(BCI, Reply(body=stats(wild)))
    market = source(feed_server)
    market.refresh(NOW)
    assert market.quality.last_good("block_height") is None
    assert market.quality.last_good("subsidy_btc") is None
    counts = market.rejection_counts()
    assert counts["block_height"][Reject.IMPLAUSIBLE.value] == 1, counts
    # The same source, healthy again a minute later: its height and difficulty are taken.
    feed_server.route(BCI, Reply(body=stats(honest)))
    market.refresh(NOW + 60)
    height = market.quality.last_good("block_height")
    subsidy = market.quality.last_good("subsidy_btc")
    assert height is not None and height.value == honest
    # 50 BTC halved every 210,000 blocks.
    assert subsidy is not None and subsidy.value == 50 / 2 ** (honest // 210_000)
    assert market.quality.last_good("difficulty") is not None
    assert Reject.HEIGHT_REGRESSED.value not in market.rejection_counts().get("block_height", {})


def test_a_height_far_ahead_of_the_last_one_is_refused(feed_server: FeedServer) -> None:
    honest = int(json.loads(fixture_bytes("blockchain_info_stats.json"))["n_blocks_total"])
    feed_server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture("coinbase_spot.json"))
    feed_server.route(BCI, Reply(body=stats(honest)))
    market = source(feed_server)
    market.refresh(NOW)
    # A minute later the source claims a day's blocks more (144 at one per ten minutes).
    feed_server.route(BCI, Reply(body=stats(honest + 2 * 144)))
    market.refresh(NOW + 60)
    height = market.quality.last_good("block_height")
    assert height is not None and height.value == honest
    # Ten minutes on, one more block is what the chain makes.
    feed_server.route(BCI, Reply(body=stats(honest + 1)))
    market.refresh(NOW + 660)
    height = market.quality.last_good("block_height")
    assert height is not None and height.value == honest + 1
