"""Hostile answers from mempool's `difficulty-adjustment` and `fees/recommended`, and a
difficulty ×1000 at cold start whose hashrate endpoint does not answer.

The real cycle runs (live feeds from a local HTTP server, guards, journal,
`KubeActuator`) on the in-memory Kubernetes API with one mempool API as the only chain
source: every cycle must end normally and be journaled, each hostile body is refused
with a named reason, no decision uses a refused value, and the four invariants hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import (
    DIFFICULTY,
    TIP,
    FeedServer,
    Reply,
    fixture_bytes,
    mempool_page,
)
from tests.faults.fake_site import FakeSite
from tests.faults.k8s_site import market_values
from tests.faults.ledger import IN_MEMORY, FaultLedger

BASE = "/mempool/api/v1"
ADJUSTMENT = f"{BASE}/difficulty-adjustment"
RECOMMENDED = f"{BASE}/fees/recommended"
HASHRATE = f"{BASE}/mining/hashrate/3d"
SPOT = "/coinbase/v2/prices/BTC-USD/spot"
GOOD_ADJUSTMENT = json.loads(fixture_bytes("mempool_difficulty_adjustment.json"))
GOOD_RATES = json.loads(fixture_bytes("mempool_fees_recommended.json"))
#: sat/vB × a full block (1,000,000 vB) / 1e8 sat per BTC.
GOOD_FEES = GOOD_RATES["hourFee"] * 1e6 / 1e8
IMPLIED_S = DIFFICULTY * 2**32 / json.loads(fixture_bytes("mempool_hashrate_3d.json"))[
    "currentHashrate"]


def _adj(**change: object) -> bytes:
    return json.dumps({**GOOD_ADJUSTMENT, **change}).encode()


HOSTILE_ADJUSTMENT = [
    b"[" * 5000 + b"]" * 5000,  # past the decoder's nesting limit
    b'{"timeAvg": ' * 3000 + b"1" + b"}" * 3000,
    _adj(timeAvg=60_123),  # ten times too fast: no chain runs at 60 s a block
    _adj(timeAvg=IMPLIED_S * 2.6 * 1000),  # contradicts the difficulty and hashrate
    _adj(timeAvg=-601_234),
    _adj(timeAvg="9" * 400),
    _adj(timeAvg=[[601_234]]),
    _adj(nextRetargetHeight=878_977),  # not an adjustment boundary
    _adj(timeAvg=None),
    b"<html>502 Bad Gateway</html>",
]

HOSTILE_RATES = [
    b"[" * 5000 + b"]" * 5000,
    json.dumps({"hourFee": -4}).encode(),
    json.dumps({"hourFee": 0}).encode(),
    json.dumps({"hourFee": 1e9}).encode(),  # 10,000 BTC a block: past the plausible range
    json.dumps({"hourFee": {"sat/vB": 4}}).encode(),
    json.dumps({"minimumFee": 1}).encode(),
    b'{"hourFee": ' + b"9" * 400 + b"}",
    json.dumps([4, 5, 6]).encode(),
]


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    server.route(SPOT, Reply.fixture("coinbase_spot.json"))
    server.route(HASHRATE, Reply.fixture("mempool_hashrate_3d.json"))
    server.route(ADJUSTMENT, Reply.fixture("mempool_difficulty_adjustment.json"))
    server.route(RECOMMENDED, Reply.fixture("mempool_fees_recommended.json"))
    # Fees only from `fees/recommended`: blocks without extras, reward stats down.
    server.route(f"{BASE}/mining/reward-stats/15", Reply(status=503))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mempool_site(tmp: Path, server: FeedServer) -> tuple[FakeSite, LiveMarketSource]:
    values = market_values(server, timeout_s=0.3)
    values["chain_sources"] = [{"kind": "mempool", "base_url": f"{server.base}/mempool/api"}]
    values["fees_window_blocks"] = 15
    market = LiveMarketSource.from_config(LiveMarketConfig.model_validate(values),
                                          sleep=lambda s: None)
    return FakeSite(tmp, market=market), market


def fresh_tip(server: FeedServer, site: FakeSite, *, difficulty: float = DIFFICULTY) -> None:
    """The tip block mined a minute ago, its page without per-block fees."""
    page = json.loads(mempool_page(TIP, difficulty=difficulty, tip_time=site.clock.t - 60))
    for block in page:
        block.pop("extras")
    server.route(f"{BASE}/blocks", Reply(body=json.dumps(page).encode()))


def chain_rejections(market: LiveMarketSource) -> int:
    return sum(market.rejection_counts().get("chain", {}).values())


def used(site: FakeSite) -> tuple[set[float], set[float]]:
    records = [r for r in read_journal(site.folder) if r.market is not None]
    return ({r.market.difficulty.value for r in records if r.market},
            {r.market.fees_btc_per_block.value for r in records if r.market})


def test_hostile_difficulty_adjustment_bodies_lose_only_their_check(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger
) -> None:
    site, market = mempool_site(tmp_path, feeds)
    with ledger.run("feed-mempool-adjustment", IN_MEMORY) as run:
        fresh_tip(feeds, site)
        site.want("ai")
        site.step()
        assert market.quality.last_good("difficulty") is not None
        for body in HOSTILE_ADJUSTMENT:
            run.inject()
            feeds.route(ADJUSTMENT, Reply(body=body))
            fresh_tip(feeds, site)
            before = (chain_rejections(market), len(list(read_journal(site.folder))))
            site.step(dt=60.0)  # raises if anything escapes the cycle
            after = (chain_rejections(market), len(list(read_journal(site.folder))))
            assert after[0] > before[0], (body[:60], market.rejection_counts())
            assert after[1] == before[1] + 1  # the cycle was journaled
        counts = market.rejection_counts()["chain"]
        assert "malformed" not in counts, counts
        assert counts["units"] == 2 and counts["bad_json"] >= 3, counts
        feeds.route(ADJUSTMENT, Reply.fixture("mempool_difficulty_adjustment.json"))
        fresh_tip(feeds, site)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        difficulty, fees = used(site)
        assert difficulty == {DIFFICULTY}, difficulty
        assert len(fees) == 1 and fees.pop() == pytest.approx(GOOD_FEES), fees
        site.check(run)


def test_hostile_recommended_fees_are_refused(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger
) -> None:
    site, market = mempool_site(tmp_path, feeds)
    with ledger.run("feed-mempool-fees", IN_MEMORY) as run:
        fresh_tip(feeds, site)
        site.want("ai")
        site.step()
        good = market.quality.last_good("fees_btc_per_block")
        assert good is not None and good.value == pytest.approx(GOOD_FEES)
        for body in HOSTILE_RATES:
            run.inject()
            feeds.route(RECOMMENDED, Reply(body=body))
            fresh_tip(feeds, site)
            before = sum(sum(r.values()) for r in market.rejection_counts().values())
            site.step(dt=60.0)
            after = sum(sum(r.values()) for r in market.rejection_counts().values())
            assert after > before, (body[:60], market.rejection_counts())
        counts = market.rejection_counts()
        assert counts["fees_btc_per_block"]["out_of_range"] == 1, counts
        assert "malformed" not in counts.get("chain", {}), counts
        feeds.route(RECOMMENDED, Reply.fixture("mempool_fees_recommended.json"))
        fresh_tip(feeds, site)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        _, fees = used(site)
        assert len(fees) == 1 and fees.pop() == pytest.approx(GOOD_FEES), fees
        site.check(run)


def test_a_first_difficulty_x1000_without_its_hashrate_is_never_used(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger
) -> None:
    feeds.route(HASHRATE, Reply(status=503))
    feeds.route(ADJUSTMENT, Reply(status=503))
    site, market = mempool_site(tmp_path, feeds)
    with ledger.run("feed-cold-start-difficulty", IN_MEMORY) as run:
        site.want("ai")
        for _ in range(3):
            run.inject()
            fresh_tip(feeds, site, difficulty=DIFFICULTY * 1000)
            site.step(dt=60.0)
        assert market.quality.last_good("difficulty") is None
        assert market.rejection_counts()["difficulty"]["unconfirmed"] == 3
        # Every cycle held, saying the difficulty is what it lacks.
        held = [r.market_rejected for r in read_journal(site.folder)]
        assert len(held) == 3 and all(h and "difficulty" in h for h in held), held
        fresh_tip(feeds, site)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        difficulty, _ = used(site)
        assert difficulty == {DIFFICULTY}, difficulty
        site.check(run)
