"""Faults outside Kubernetes: market feeds (timeouts, outages, poisoned values), the wall
clock jumping, the disk filling up under the journal, the Ray controller actor dying.

Feeds and clocks run the real cycle (live feeds from a local HTTP server, guards, journal,
`KubeActuator`) on the in-memory Kubernetes API, so every pass is exact; the disk and Ray
faults run the real `Controller` in a dry-run on recorded data.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.models.config import ControllerMode, load_config
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import FeedServer, Reply, fixture_bytes
from tests.faults.checks import check_sim_journal
from tests.faults.fake_site import FakeSite
from tests.faults.k8s_site import market_values, serve_fresh_market
from tests.faults.ledger import IN_MEMORY, SIMULATED, FaultLedger

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
GOOD_BTC = 97012.35
STATS = {k: v for k, v in json.loads(fixture_bytes("blockchain_info_stats.json")).items()
         if k != "timestamp"}  # without a timestamp, a reading is as fresh as its fetch
GOOD_DIFFICULTY = float(STATS["difficulty"])
BCI = "/bci/stats"
SPOT = "/coinbase/v2/prices/BTC-USD/spot"


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    serve_fresh_market(server)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def live_site(tmp: Path, server: FeedServer, **http: Any) -> tuple[FakeSite, LiveMarketSource]:
    config = LiveMarketConfig.model_validate(market_values(server, timeout_s=0.3, **http))
    market = LiveMarketSource.from_config(config, sleep=lambda s: None)
    return FakeSite(tmp, market=market), market


def rejections(market: LiveMarketSource) -> int:
    return sum(sum(r.values()) for r in market.rejection_counts().values())


def market_values_used(site: FakeSite) -> tuple[set[float], set[float]]:
    records = [r for r in read_journal(site.folder) if r.market is not None]
    return ({r.market.btc_usd.value for r in records if r.market},
            {r.market.difficulty.value for r in records if r.market})


def flip_with_a_gap(site: FakeSite, fault: Any, restore: Any, *, cycles: int = 3,
                    dt: float = 600.0) -> list[str]:
    """Start a flip to AI, break the feeds for `cycles` cycles `dt` apart (past the 900 s
    time-to-live of the spot price), mend them, finish the flip. Returns the journal's
    `market_rejected` reasons of the held cycles."""
    site.want("ai")
    site.step()  # the flip starts on good data
    fault()
    site.step(cycles, dt=dt)
    held = [r.market_rejected for r in read_journal(site.folder) if r.market_rejected]
    restore()
    site.run_until(lambda: set(site.states().values()) <= {"AI", "MINING", "IDLE"}
                   and list(site.states().values()).count("AI") >= 2, "the flip finished")
    return [h for h in held if h]


# -- market feeds ---------------------------------------------------------------------------


def test_feeds_time_out(tmp_path: Path, feeds: FeedServer, ledger: FaultLedger) -> None:
    site, market = live_site(tmp_path, feeds)
    with ledger.run("feed-timeout", IN_MEMORY) as run:
        before = feeds.hits(BCI) + feeds.hits(SPOT)

        def hang() -> None:
            feeds.route(BCI, Reply(hang=True))
            feeds.route(SPOT, Reply(hang=True))

        counted: list[int] = []

        def mend() -> None:
            counted.append(feeds.hits(BCI) + feeds.hits(SPOT) - before - 2)
            serve_fresh_market(feeds)

        held = flip_with_a_gap(site, hang, mend)
        run.inject(counted[0])
        assert counted[0] == 6 and market.rejection_counts()["chain"]["timeout"] == 3
        assert held and all("time-to-live" in h for h in held), held
        site.check(run)


def test_feeds_down(tmp_path: Path, feeds: FeedServer, ledger: FaultLedger) -> None:
    site, market = live_site(tmp_path, feeds)
    with ledger.run("feed-outage", IN_MEMORY) as run:
        counts: list[int] = []

        def down() -> None:
            counts.append(rejections(market))
            feeds.route(BCI, Reply(status=503))
            feeds.route(SPOT, Reply(status=200, body=b'{"data": {"amou', cut_at=10))

        def mend() -> None:
            counts.append(rejections(market))
            serve_fresh_market(feeds)

        held = flip_with_a_gap(site, down, mend)
        run.inject(counts[1] - counts[0])
        assert counts[1] - counts[0] == 6, market.rejection_counts()
        assert held
        site.check(run)


POISON = {
    SPOT: [
        b'{"data": {"amount": "NaN", "base": "BTC", "currency": "USD"}}',
        b'{"data": {"amount": "-97012.35", "base": "BTC", "currency": "USD"}}',
        b'{"data": {"amount": "970123500000", "base": "BTC", "currency": "USD"}}',
        b'{"data": {"amount": "970123.5", "base": "BTC", "currency": "USD"}}',  # x10, alone
        b'{"data": {"amount": "89000.00", "base": "BTC", "currency": "EUR"}}',
        b'{"data": {"amount": 97012.35}}',
        b'["not", "a", "quote"]',
        b"<html>maintenance</html>",
    ],
    BCI: [
        json.dumps({**STATS, "difficulty": 1.0}).encode(),
        json.dumps({**STATS, "difficulty": GOOD_DIFFICULTY * 50}).encode(),
        json.dumps({**STATS, "difficulty": "Infinity"}).encode(),
        b'{"difficulty": NaN, "n_blocks_total": 877320}',
        json.dumps({**STATS, "n_blocks_total": -1}).encode(),
        json.dumps({**STATS, "hash_rate": STATS["hash_rate"] * 1e9}).encode(),
        b"{" * 100,
        b"x" * 3000,
    ],
}


def test_poisoned_values_never_reach_a_decision(
    tmp_path: Path, feeds: FeedServer, ledger: FaultLedger
) -> None:
    site, market = live_site(tmp_path, feeds, max_response_bytes=2048)
    with ledger.run("feed-poisoned", IN_MEMORY) as run:
        site.want("ai")
        site.step()
        served = 0
        for spot, chain in zip(POISON[SPOT], POISON[BCI], strict=True):
            feeds.route(SPOT, Reply(body=spot))
            feeds.route(BCI, Reply(body=chain))
            before = rejections(market)
            site.step(dt=120.0)
            assert rejections(market) - before >= 2, market.rejection_counts()
            served += 2
        run.inject(served)
        serve_fresh_market(feeds)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        btc, difficulty = market_values_used(site)
        assert btc == {GOOD_BTC} and difficulty == {GOOD_DIFFICULTY}, (btc, difficulty)
        site.check(run)


# -- the wall clock -------------------------------------------------------------------------


def test_clock_jumps(tmp_path: Path, feeds: FeedServer, ledger: FaultLedger) -> None:
    site, _ = live_site(tmp_path, feeds)
    site.tenant("job-a", interruptible=False, lease_h=2.0)
    with ledger.run("clock-jump", IN_MEMORY) as run:
        site.want("ai")
        site.step()
        for i, jump in enumerate((6 * 3600.0, -3 * 3600.0, -86_400.0, 2 * 86_400.0)):
            site.tenant(f"job-{i}", gpus=4)  # demand moves as the clock jumps
            site.clock.t += jump  # NTP steps the wall clock; the site's own time does not
            run.inject()
            site.step(2)
            # The smoothed demand stays between the demand levels seen (a step back in
            # time must not extrapolate it into a wrong number).
            level = site.cycle.expected_gpus
            assert level is not None and math.isfinite(level) and 4.0 <= level <= 4.0 * (i + 2)
        site.run_until(lambda: list(site.states().values()).count("AI") >= 2, "the flip")
        site.check(run)


# -- the disk under the journal -------------------------------------------------------------


def capped_golden(tmp: Path, cap_kw: float = 22.0) -> Path:
    """The golden dry-run site with a power cap that binds."""
    for name in ("power.csv", "jobs.csv"):
        shutil.copy(GOLDEN / name, tmp / name)
    data = yaml.safe_load((GOLDEN / "site.yaml").read_text())
    data["sites"][0]["power_cap_kw"] = cap_kw
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class FullDisk:
    """The journal's file system, filling up: while `full`, a write stores part of its
    line (the first time) or nothing, then fails with ENOSPC, as a real full disk does."""

    def __init__(self, journal_file: Path, *, after_writes: int, failures: int) -> None:
        self.file = journal_file
        self.after = after_writes
        self.failures_left = failures
        self.writes = 0
        self.failed = 0

    @contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
        real_open = Path.open
        disk = self

        class Handle:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def write(self, text: str) -> int:
                disk.writes += 1
                if disk.writes > disk.after and disk.failures_left > 0:
                    disk.failures_left -= 1
                    if disk.failed == 0:
                        self.inner.write(text[: len(text) // 2])
                        self.inner.flush()
                    disk.failed += 1
                    raise OSError(errno.ENOSPC, "No space left on device")
                return int(self.inner.write(text))

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def __enter__(self) -> Handle:
                return self

            def __exit__(self, *exc: object) -> None:
                self.inner.close()

        def fake_open(path: Path, mode: str = "r", *args: Any, **kw: Any) -> Any:
            handle = real_open(path, mode, *args, **kw)
            if path == disk.file and "a" in mode:
                return Handle(handle)
            return handle

        monkeypatch.setattr(Path, "open", fake_open)
        yield self


def test_disk_fills_up_while_journaling(
    tmp_path: Path, ledger: FaultLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(capped_golden(tmp_path))
    journal = tmp_path / "journal"
    seen: list[str] = []
    controller = Controller(
        config, RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(journal)),
        on_cycle=lambda outcome: seen.append(outcome.record.decision_id),
    )
    disk = FullDisk(journal / "journal.jsonl", after_writes=11, failures=3)
    with ledger.run("disk-full", SIMULATED) as run:
        with disk.installed(monkeypatch):
            controller.run(20)
        controller.close()
        run.inject(disk.failed)
        assert disk.failed == 3
        cluster = controller.wiring.extras["cluster"]
        # Write 12 is cycle 6's result: half of it lands, the cycle had acted, it stands.
        # Writes 13 and 14 are cycle 7's plan: refused, so not acted on, and tried again.
        assert controller.metrics.cycles.labels("journal_failed")._value.get() == 2
        # 20 cycles in the journal: the failed ones were tried again, none was lost.
        records = list(read_journal(journal))
        assert [r.decision_id for r in records] == seen and len(seen) == 20
        # The write that failed half-way is one torn line; if it was a result line, that
        # cycle's plan (acted on) has no result: both are the fault, nothing else is lost.
        check_sim_journal(run, journal, config, applied=sorted(cluster.applied),
                          cycles=len(seen), torn_allowed=2)


# -- Ray --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="hashpivot-fault-tests")
    yield
    ray.shutdown()


@pytest.mark.ray
def test_controller_actor_dies(tmp_path: Path, ledger: FaultLedger, ray_local: None) -> None:
    import time

    import ray

    from orchestrator.runtime.controller import start_actors

    config = load_config(capped_golden(tmp_path))
    journal = tmp_path / "journal"
    options = RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(journal), pace_s=0.2)
    with ledger.run("ray-actor-death", SIMULATED) as run:
        actor, cluster = start_actors(config, options)
        ref = actor.run.remote(30)
        for kill_at in (8, 18):
            deadline = time.monotonic() + 120
            while sum(1 for _ in read_journal(journal)) < kill_at:
                assert time.monotonic() < deadline, "the controller made no progress"
                time.sleep(0.1)
            ray.kill(actor, no_restart=False)  # a crash: Ray restarts it, run() is retried
            run.inject()
        ray.get(ref, timeout=300)
        applied = ray.get(cluster.applied.remote())
        records = list(read_journal(journal))
        ids = [r.decision_id for r in records]
        assert len(ids) == 30 and len(set(ids)) == 30
        assert len(applied) == len(set(applied))
        check_sim_journal(run, journal, config, applied=applied, cycles=30, torn_allowed=2)
        ray.kill(actor, no_restart=True)
        ray.kill(cluster, no_restart=True)
