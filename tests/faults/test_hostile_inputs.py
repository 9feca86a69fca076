"""Faults in what remote servers send: bodies built to break parsers, a chain mirror that
stops advancing, a unit error in the only exchange at cold start.

The real cycle runs (live feeds from a local HTTP server, guards, journal, `KubeActuator`)
on the in-memory Kubernetes API: every cycle must end normally and be journaled, no
decision may use a refused value, and the four invariants hold throughout.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import TIP, FeedServer, Reply, mempool_page
from tests.faults.fake_site import FakeSite
from tests.faults.k8s_site import market_values
from tests.faults.ledger import IN_MEMORY, FaultLedger
from tests.faults.test_runtime_faults import (  # noqa: F401 - `feeds` is a fixture
    BCI,
    GOOD_BTC,
    GOOD_DIFFICULTY,
    SPOT,
    STATS,
    feeds,
    live_site,
    market_values_used,
    rejections,
    serve_fresh_market,
)

HOSTILE = {
    SPOT: [
        b"[" * 1000 + b"]" * 1000,  # 2 kB of valid JSON, at the decoder's recursion limit
        b"[" * 5000 + b"]" * 5000,  # past it
        b'{"data": ' * 3000 + b"1" + b"}" * 3000,
        b'{"data": {"amount": ' + b"9" * 400 + b', "base": "BTC", "currency": "USD"}}',
        b'{"data": {"amount": [[[[[["97012.35"]]]]]], "base": "BTC", "currency": "USD"}}',
        b'{"data": {"amount": "97012.35", "base": {"x": []}, "currency": null}}',
    ],
    BCI: [
        b"[" * 1000 + b"]" * 1000,
        b"[" * 5000 + b"]" * 5000,
        json.dumps({**STATS, "difficulty": "1e400"}).encode(),
        json.dumps({**STATS, "n_blocks_total": [STATS["n_blocks_total"]]}).encode(),
        json.dumps({**STATS, "timestamp": "9999-12-31T24:00:00"}).encode(),
        json.dumps({**STATS, "hash_rate": {"GH/s": STATS["hash_rate"]}}).encode(),
    ],
}


def test_hostile_bodies_never_stop_a_cycle(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger  # noqa: F811
) -> None:
    site, market = live_site(tmp_path, feeds)
    with ledger.run("feed-hostile", IN_MEMORY) as run:
        site.want("ai")
        site.step()
        served = 0
        for spot, chain in zip(HOSTILE[SPOT], HOSTILE[BCI], strict=True):
            feeds.route(SPOT, Reply(body=spot))
            feeds.route(BCI, Reply(body=chain))
            before = (rejections(market), len(list(read_journal(site.folder))))
            site.step(dt=60.0)  # raises if anything escapes the cycle
            after = (rejections(market), len(list(read_journal(site.folder))))
            assert after[0] - before[0] >= 2, market.rejection_counts()
            assert after[1] == before[1] + 1  # the cycle was journaled
            served += 2
        run.inject(served)
        counts = market.rejection_counts()
        assert "malformed" not in counts.get("btc_usd", {}), counts
        assert "malformed" not in counts.get("chain", {}), counts
        assert counts["btc_usd"]["bad_json"] >= 2 and counts["chain"]["bad_json"] >= 2
        serve_fresh_market(feeds)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        btc, difficulty = market_values_used(site)
        assert btc == {GOOD_BTC} and difficulty == {GOOD_DIFFICULTY}, (btc, difficulty)
        site.check(run)


def test_a_mirror_that_stops_advancing_goes_stale_and_holds(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger  # noqa: F811
) -> None:
    """A mempool mirror keeps answering with the same tip block: stamped with that
    block's time, the difficulty ages past its time-to-live and every node is held (it
    used to be stamped with the fetch time and read as fresh for ever)."""
    values = market_values(feeds, timeout_s=0.3)
    values["chain_sources"] = [{"kind": "mempool", "base_url": f"{feeds.base}/mempool/api"}]
    values["fees_window_blocks"] = 15
    market = LiveMarketSource.from_config(LiveMarketConfig.model_validate(values),
                                          sleep=lambda s: None)
    site = FakeSite(tmp_path, market=market)
    feeds.route("/mempool/api/v1/mining/hashrate/3d",
                Reply.fixture("mempool_hashrate_3d.json"))
    feeds.route("/mempool/api/v1/blocks",
                Reply(body=mempool_page(TIP, tip_time=site.clock.t - 60)))
    ttl = market.quality.ttl_s("difficulty")
    with ledger.run("feed-stuck-mirror", IN_MEMORY) as run:
        site.want("ai")
        site.step()
        assert not market.quality.is_stale("difficulty", site.clock.t)
        run.inject()  # from here on the mirror serves the same tip
        site.step(int(ttl // 1800) + 2, dt=1800.0)
        held = [r.market_rejected for r in read_journal(site.folder) if r.market_rejected]
        assert held and any("difficulty" in h and "time-to-live" in h for h in held), held
        assert market.quality.is_stale("difficulty", site.clock.t)
        # The mirror catches up: a new tip, mined a minute ago.
        feeds.route("/mempool/api/v1/blocks",
                    Reply(body=mempool_page(TIP + 1, tip_time=site.clock.t - 60)))
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        site.check(run)


def test_cold_start_cents_from_the_only_exchange_are_never_used(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger  # noqa: F811
) -> None:
    cents = {"data": {"amount": f"{GOOD_BTC * 100:.2f}", "base": "BTC", "currency": "USD"}}
    feeds.route(SPOT, Reply(body=json.dumps(cents).encode()))
    site, market = live_site(tmp_path, feeds)
    with ledger.run("feed-cold-start", IN_MEMORY) as run:
        site.want("ai")
        for _ in range(3):
            run.inject()
            site.step(dt=60.0)
        assert market.quality.last_good("btc_usd") is None
        assert market.rejection_counts()["btc_usd"]["implausible"] == 3
        serve_fresh_market(feeds)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        btc, _ = market_values_used(site)
        assert btc == {GOOD_BTC}, btc
        site.check(run)
