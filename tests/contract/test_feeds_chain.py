"""Chain readers (mempool, Blockchain.com, Esplora) against recorded bodies."""

from __future__ import annotations

import json

import pytest

from orchestrator.adapters.market.chain import (
    BlockchainInfoChain,
    EsploraChain,
    MempoolChain,
)
from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.quality import FeedRejectError, Reject
from orchestrator.models.feeds_config import ChainSource, HttpSettings
from tests.contract.feedserver import (
    DIFFICULTY,
    NOW,
    TIP,
    FeedServer,
    Reply,
    SleepLog,
    fixture_bytes,
    fixture_fees_sat,
    live_config,
    mempool_page,
    serve_market,
)


@pytest.fixture
def http(http_settings: HttpSettings, sleeps: SleepLog) -> FeedHttpClient:
    return FeedHttpClient(http_settings, sleep=sleeps)


def mempool(server: FeedServer, http: FeedHttpClient, window: int) -> MempoolChain:
    return MempoolChain(
        ChainSource(kind="mempool", base_url=f"{server.base}/mempool/api"), http, window=window
    )


def test_fixture_pages_match_the_fee_formula() -> None:
    blocks = json.loads(fixture_bytes("mempool_v1_blocks.json"))
    assert [b["extras"]["totalFees"] for b in blocks] == [
        fixture_fees_sat(b["height"]) for b in blocks
    ]


def test_mempool_average_of_last_144_blocks(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    feed = mempool(feed_server, http, 144)
    reading = feed.read(NOW)
    assert reading.problems == []
    assert reading.height == TIP
    assert reading.difficulty == DIFFICULTY
    expected = sum(fixture_fees_sat(h) for h in range(TIP - 143, TIP + 1)) / 144 / 1e8
    assert reading.fees_btc_per_block == pytest.approx(expected, rel=1e-12)
    assert reading.fees_method == "per_block"
    assert reading.hashrate_hs == pytest.approx(7.923e20)
    # Tip page + 9 more pages of 15 cover 144 blocks.
    pages = [p for p in feed_server.requests if p.startswith("/mempool/api/v1/blocks")]
    assert len(pages) == 10


def test_mempool_fee_cache_needs_one_page_per_poll(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    serve_market(feed_server)
    feed = mempool(feed_server, http, 144)
    feed.read(NOW)
    # One new block: the tip page moves up by one; nothing older is fetched again.
    feed_server.route("/mempool/api/v1/blocks", Reply(body=mempool_page(TIP + 1)))
    before = len(feed_server.requests)
    reading = feed.read(NOW + 600)
    pages = [p for p in feed_server.requests[before:] if p.startswith("/mempool/api/v1/blocks")]
    assert pages == ["/mempool/api/v1/blocks"]
    expected = sum(fixture_fees_sat(h) for h in range(TIP - 142, TIP + 2)) / 144 / 1e8
    assert reading.fees_btc_per_block == pytest.approx(expected, rel=1e-12)


def test_mempool_without_per_block_fees_uses_the_daily_total(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    serve_market(feed_server)
    feed_server.route("/mempool/api/v1/blocks", Reply.fixture("mempool_v1_blocks_no_extras.json"))
    reading = mempool(feed_server, http, 144).read(NOW)
    assert reading.fees_method == "daily_total"
    assert reading.fees_btc_per_block == pytest.approx(1012345678 / 144 / 1e8)
    assert [p.reason for p in reading.problems] == [Reject.SCHEMA]


def test_mempool_schema_drift_fails_the_reading(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    serve_market(feed_server)
    feed_server.route("/mempool/api/v1/blocks", Reply.fixture("mempool_v1_blocks_drift.json"))
    with pytest.raises(FeedRejectError) as err:
        mempool(feed_server, http, 144).read(NOW)
    assert err.value.reason == Reject.SCHEMA
    assert "difficulty" in str(err.value)


def test_mempool_hashrate_in_wrong_units_drops_the_difficulty(
    feed_server: FeedServer, http: FeedHttpClient
) -> None:
    serve_market(feed_server)
    doc = json.loads(fixture_bytes("mempool_hashrate_3d.json"))
    doc["currentHashrate"] = 792.3  # EH/s instead of H/s
    feed_server.json("/mempool/api/v1/mining/hashrate/3d", json.dumps(doc))
    reading = mempool(feed_server, http, 15).read(NOW)
    assert reading.difficulty is None
    assert Reject.UNITS in [p.reason for p in reading.problems]
    assert reading.height == TIP  # what was not contradicted still counts


def test_blockchain_info_stats(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    reading = BlockchainInfoChain(
        ChainSource(kind="blockchain_info", base_url=f"{feed_server.base}/bci"), http
    ).read(NOW)
    assert reading.problems == []
    assert reading.height == TIP
    assert reading.difficulty == 109782075598905
    # total_fees_btc is in satoshi: 1034567890 sat over 146 blocks.
    assert reading.fees_btc_per_block == pytest.approx(1034567890 / 1e8 / 146)
    assert reading.fees_method == "daily_total"
    assert reading.hashrate_hs == pytest.approx(7.92e20)
    assert reading.observed_s == NOW - 60


def test_esplora_blocks(feed_server: FeedServer, http: FeedHttpClient) -> None:
    serve_market(feed_server)
    reading = EsploraChain(
        ChainSource(kind="esplora", base_url=f"{feed_server.base}/esplora/api"), http
    ).read(NOW)
    assert (reading.height, reading.difficulty, reading.fees_btc_per_block) == (
        TIP,
        DIFFICULTY,
        None,
    )


def test_primary_down_falls_back_per_quantity(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    feed_server.route("/mempool/api/v1/blocks", Reply(status=500))
    rejected: list[tuple[str, str]] = []
    src = LiveMarketSource.from_config(
        live_config(feed_server),
        sleep=lambda s: None,
        on_reject=lambda feed, reason, detail: rejected.append((feed, reason.value)),
    )
    snap = src.snapshot(NOW)
    assert snap.difficulty.source == "blockchain_info@127.0.0.1"
    assert snap.fees_btc_per_block.source == "blockchain_info@127.0.0.1:daily_total"
    assert snap.fees_btc_per_block.value == pytest.approx(1034567890 / 1e8 / 146)
    assert snap.subsidy_btc.value == 3.125
    assert ("chain", "server_error") in rejected
    assert src.rejection_counts()["chain"]["server_error"] == 1
    # Esplora was not needed: blockchain.info answered everything.
    assert feed_server.hits("/esplora/api/blocks") == 0


def test_difficulty_in_wrong_units_is_out_of_range(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    blocks = json.loads(fixture_bytes("esplora_blocks.json"))
    for b in blocks:
        b["difficulty"] = 109.78  # in T
    feed_server.json("/esplora/api/blocks", json.dumps(blocks))
    feed_server.route("/mempool/api/v1/blocks", Reply(status=503))
    feed_server.route("/bci/stats", Reply(status=404))
    src = LiveMarketSource.from_config(live_config(feed_server), sleep=lambda s: None)
    src.refresh(NOW)
    assert src.quality.last_good("difficulty") is None
    assert src.rejection_counts()["difficulty"] == {"out_of_range": 1}


def test_difficulty_change_mid_epoch_is_refused(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    src.refresh(NOW)
    # One block later, same adjustment period, a different difficulty: poisoned.
    feed_server.route(
        "/mempool/api/v1/blocks", Reply(body=mempool_page(TIP + 1, difficulty=DIFFICULTY * 1.5))
    )
    feed_server.route("/bci/stats", Reply(status=500))
    feed_server.route("/esplora/api/blocks", Reply(status=500))
    src.refresh(NOW + 600)
    good = src.quality.last_good("difficulty")
    assert good is not None and good.value == DIFFICULTY
    assert src.rejection_counts()["difficulty"] == {"difficulty_mid_epoch": 1}


def test_difficulty_change_at_the_boundary_is_accepted(feed_server: FeedServer) -> None:
    serve_market(feed_server)
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    src.refresh(NOW)
    boundary = (TIP // 2016 + 1) * 2016
    feed_server.route(
        "/mempool/api/v1/blocks", Reply(body=mempool_page(boundary, difficulty=DIFFICULTY * 1.04))
    )
    for start in range(boundary - 15, boundary - 60, -15):
        feed_server.route(f"/mempool/api/v1/blocks/{start}", Reply(body=mempool_page(start)))
    doc = json.loads(fixture_bytes("mempool_hashrate_3d.json"))
    feed_server.json("/mempool/api/v1/mining/hashrate/3d", json.dumps(doc))
    # Read when the chain can have reached the boundary (a block per ten minutes).
    src.refresh(NOW + (boundary - TIP) * 600)
    good = src.quality.last_good("difficulty")
    assert good is not None and good.value == pytest.approx(DIFFICULTY * 1.04)


def test_difficulty_confirmed_by_a_second_source_reanchors(feed_server: FeedServer) -> None:
    """A poisoned first value must not lock out the truth forever."""
    serve_market(feed_server)
    bad = json.loads(fixture_bytes("blockchain_info_stats.json"))
    bad["difficulty"] = DIFFICULTY * 2
    bad["hash_rate"] = 792000000000.0 * 2
    feed_server.route("/mempool/api/v1/blocks", Reply(status=500))
    feed_server.json("/bci/stats", json.dumps(bad))
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15), sleep=lambda s: None
    )
    src.refresh(NOW)
    good = src.quality.last_good("difficulty")
    assert good is not None and good.value == DIFFICULTY * 2
    # Mempool returns with the true value; Esplora (the next source) agrees with it.
    feed_server.route("/mempool/api/v1/blocks", Reply.fixture("mempool_v1_blocks.json"))
    feed_server.route("/bci/stats", Reply(status=500))
    src.refresh(NOW + 60)
    good = src.quality.last_good("difficulty")
    assert good is not None and good.value == DIFFICULTY
    assert "+" in good.source


def test_cold_start_difficulty_x1000_without_its_hashrate_waits_for_a_second_source(
    feed_server: FeedServer,
) -> None:
    serve_market(feed_server)
    x1000 = mempool_page(TIP, difficulty=DIFFICULTY * 1000)
    feed_server.route("/mempool/api/v1/blocks", Reply(body=x1000))
    feed_server.route("/mempool/api/v1/mining/hashrate/3d", Reply(status=503))
    feed_server.route("/bci/stats", Reply(status=503))
    feed_server.route("/esplora/api/blocks", Reply(status=503))
    src = LiveMarketSource.from_config(live_config(feed_server, fees_window_blocks=15),
                                       sleep=lambda s: None)
    report = src.refresh(NOW)
    assert src.quality.last_good("difficulty") is None
    assert ("difficulty", "unconfirmed") in [(f, r) for f, r, _ in report.rejected]
    # Blockchain.com answers with the true difficulty, its hashrate agreeing: that is taken.
    serve_market(feed_server)
    feed_server.route("/mempool/api/v1/blocks", Reply(status=503))
    src.refresh(NOW + 60)
    good = src.quality.last_good("difficulty")
    assert good is not None and good.value == pytest.approx(DIFFICULTY, rel=1e-6)


def test_a_mirror_stuck_on_old_blocks_goes_stale(feed_server: FeedServer) -> None:
    """Stamped with its tip block's time, a mirror that stops advancing ages like any
    other source (it used to read as fresh at every fetch)."""
    serve_market(feed_server)
    only_mempool = [{"kind": "mempool", "base_url": f"{feed_server.base}/mempool/api"}]
    src = LiveMarketSource.from_config(
        live_config(feed_server, fees_window_blocks=15, chain_sources=only_mempool),
        sleep=lambda s: None,
    )
    src.refresh(NOW)
    tip_time = json.loads(fixture_bytes("mempool_v1_blocks.json"))[0]["timestamp"]
    later = NOW + src.quality.ttl_s("difficulty") + 3600
    src.refresh(later)  # the same tip, served again hours later
    good = src.quality.last_good("difficulty")
    assert good is not None and good.observed_at.timestamp() == tip_time
    assert src.quality.is_stale("difficulty", later)
    assert src.quality.age_s("difficulty", later) == later - tip_time
