"""Contract: pyasic, unmodified, against replayed miner APIs on loopback sockets.

Three firmware families (Antminer stock, LuxOS, VNish; fixtures and sources in
fixtures/miners/README.md) are discovered by pyasic's own factory on the real ports,
read, curtailed and resumed through `AsicSite` and `PyasicDriver` — the code the
controller runs. Faults: a miner that hangs (timeout), one that answers garbage, one
that ignores a curtail command, and an address where nothing listens.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("pyasic")

from orchestrator.adapters.asic.driver import PyasicDriver
from orchestrator.adapters.asic.fleet import asic_fleet
from orchestrator.adapters.asic.site import AsicSite, MinerStatus, MinerTarget
from orchestrator.models import Mode, Site
from orchestrator.models.asic_config import AsicConfig
from orchestrator.models.hardware import builtin_catalog
from tests.contract.fixtures.miners.emulator import EmulatedMiner, MinerLab

FAMILIES = ("antminer", "luxos", "vnish")
FIRMWARE = {"antminer": "Stock", "luxos": "LuxOS", "vnish": "VNish"}


def _can_bind_port_80() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
            s.close()
            probe = socket.socket()
            probe.bind(("127.3.2.1", 80))
            probe.close()
        except OSError:
            return False
    return True


pytestmark = pytest.mark.skipif(
    not _can_bind_port_80(),
    reason="needs loopback addresses beyond 127.0.0.1 and port 80 (root on Linux)",
)


@pytest.fixture
def lab() -> Iterator[MinerLab]:
    lab = MinerLab()
    yield lab
    lab.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _site(miners: list[EmulatedMiner], clock: Clock | None = None, **asic: object) -> AsicSite:
    config = AsicConfig.model_validate({
        "ranges": [{"addresses": [m.ip for m in miners], "site": "hall"}],
        "io": {"timeout_s": 1.0, "retries": 1, "retry_backoff_s": 0.05},
        **asic,
    })
    kwargs = {} if clock is None else {"clock": clock}
    # Read-backs of a command are bounded well inside the per-call timeout.
    driver = PyasicDriver(discovery_timeout_s=2.0, confirm_s=0.5, confirm_poll_s=0.1)
    return AsicSite(config, ["hall"], driver, **kwargs)


def _by_ip(statuses: list[MinerStatus]) -> dict[str, MinerStatus]:
    return {st.reading.address: st for st in statuses}


@pytest.mark.parametrize("family", FAMILIES)
def test_discovers_and_reads_each_family(lab: MinerLab, family: str) -> None:
    miner = lab.add(family)
    site = _site([miner])
    st = _by_ip(asyncio.run(site.refresh()))[miner.ip]
    r = st.reading
    assert r.reachable, r.error
    assert (r.make, r.model, r.firmware) == ("AntMiner", "S19 XP", FIRMWARE[family])
    assert r.hashrate_ths == pytest.approx(141.23, abs=0.01)
    assert r.expected_hashrate_ths == pytest.approx(140.0)
    assert r.temperature_c is not None and 40 < r.temperature_c < 80
    assert r.hashing and st.mining
    # Stock Antminer firmware reports no power; LuxOS and VNish do.
    assert r.watts == {"antminer": None, "luxos": 3010.0, "vnish": 2950.0}[family]


def test_fleet_rows_measured_where_reported_nameplate_flagged_elsewhere(lab: MinerLab) -> None:
    miners = [lab.add(f) for f in FAMILIES]
    statuses = asyncio.run(_site(miners).refresh())
    view = asic_fleet(statuses, [Site(name="hall", power_cap_kw=100)], builtin_catalog())
    fleet = view.fleet
    rows = {f: fleet.index_of(m.ip) for f, m in zip(FAMILIES, miners, strict=True)}
    assert all(fleet.profiles[fleet.profile[i]].name == "s19-xp" for i in rows.values())
    assert fleet.hashrate_measured[list(rows.values())].all()
    assert fleet.hashrate[rows["luxos"]] == pytest.approx(141.23, abs=0.01)
    assert not view.watts_measured[rows["antminer"]]
    assert fleet.watts_mine[rows["antminer"]] == 3010.0  # the catalog's nameplate
    assert view.watts_measured[rows["vnish"]] and fleet.watts_mine[rows["vnish"]] == 2950.0
    assert (fleet.mode[list(rows.values())] == Mode.MINE).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_curtail_then_resume_each_family(lab: MinerLab, family: str) -> None:
    miner = lab.add(family)
    site = _site([miner])

    async def scenario() -> tuple[bool, bool, MinerStatus, MinerStatus]:
        await site.refresh()
        site.set_targets({miner.ip: MinerTarget(mine=False, priority=0.1, delta_w=3000.0)})
        step = await site.step()
        assert step.curtailed == (miner.ip,), step
        asleep = _by_ip(await site.refresh())[miner.ip]
        slept = not miner.mining
        site.set_targets({miner.ip: MinerTarget(mine=True, priority=0.1, delta_w=3000.0)})
        step = await site.step()
        assert step.resumed == (miner.ip,), step
        awake = _by_ip(await site.refresh())[miner.ip]
        return slept, miner.mining, asleep, awake

    slept, woke, asleep, awake = asyncio.run(scenario())
    assert slept and woke
    assert not asleep.reading.hashing and asleep.reading.hashrate_ths == 0.0
    assert awake.reading.hashing


def test_errors_the_miner_reports_are_read(lab: MinerLab) -> None:
    stock = lab.add("antminer", errors=True)
    vnish = lab.add("vnish", errors=True)
    statuses = _by_ip(asyncio.run(_site([stock, vnish]).refresh()))
    assert "fan 2 speed too low" in statuses[stock.ip].reading.errors
    assert "chain 2: no chips found" in statuses[vnish.ip].reading.errors


def test_power_target_where_the_firmware_has_one(lab: MinerLab) -> None:
    lux = lab.add("luxos")
    stock = lab.add("antminer")
    site = _site([lux, stock])

    async def scenario() -> tuple[str | None, str | None, MinerStatus]:
        await site.refresh()
        lux_result = await site.set_power_target(lux.ip, 2600)
        stock_result = await site.set_power_target(stock.ip, 2600)
        return lux_result, stock_result, _by_ip(await site.refresh())[lux.ip]

    lux_result, stock_result, after = asyncio.run(scenario())
    assert lux_result is None
    assert lux.profile == "415MHz"  # the largest LuxOS profile within 2600 W
    assert after.reading.watts_limit == 2500.0
    assert stock_result is not None and "not supported" in stock_result


def test_hanging_miner_times_out_and_is_reported(lab: MinerLab) -> None:
    good = lab.add("luxos")
    slow = lab.add("luxos")
    site = _site([good, slow], io={"timeout_s": 0.5, "retries": 1, "retry_backoff_s": 0.0})

    async def scenario() -> dict[str, MinerStatus]:
        await site.refresh()
        slow.hang = True  # accepts connections, never answers again
        return _by_ip(await site.refresh())

    statuses = asyncio.run(scenario())
    assert statuses[good.ip].reading.reachable
    bad = statuses[slow.ip]
    assert not bad.reading.reachable
    assert "no answer within 0.5 s" in (bad.reading.error or "")
    assert bad.mining  # unknown: counted at full draw, never as headroom
    assert bad.reading.model == "S19 XP"  # still known, so it stays in the fleet
    assert sum(1 for s in slow.seen if s == "rpc (hung)") >= 2  # tried again


@pytest.mark.parametrize("family", ["antminer", "luxos"])
def test_garbage_reply_is_not_a_reading(lab: MinerLab, family: str) -> None:
    miner = lab.add(family)
    site = _site([miner])

    async def scenario() -> MinerStatus:
        await site.refresh()
        miner.garbage = True
        return _by_ip(await site.refresh())[miner.ip]

    st = asyncio.run(scenario())
    assert not st.reading.reachable
    assert st.mining
    view = asic_fleet([st], [Site(name="hall")], builtin_catalog())
    assert not view.fleet.reachable[0] and view.fleet.mode[0] == Mode.MINE


@pytest.mark.parametrize("family", FAMILIES)
def test_miner_ignoring_curtail_is_never_counted_as_curtailed(lab: MinerLab, family: str) -> None:
    """The firmware accepts the command (stock Antminer support in pyasic answers True
    whatever happens) and the miner keeps hashing: the read-back says so at once, the
    miner counts at full draw, and the next ramp step sends the command again."""
    miner = lab.add(family, ignore_curtail=True)
    clock = Clock()
    site = _site([miner], clock, verify_after_s=120.0)

    sent: list[int] = []

    async def scenario() -> tuple[dict[str, str], MinerStatus, tuple[str, ...]]:
        await site.refresh()
        site.set_targets({miner.ip: MinerTarget(mine=False, priority=0.1, delta_w=3000.0)})
        first = await site.step()
        sent.append(sum(1 for cmd in miner.seen if _is_curtail(cmd)))
        now = _by_ip(site.statuses())[miner.ip]
        clock.now += 60
        again = await site.step()
        sent.append(sum(1 for cmd in miner.seen if _is_curtail(cmd)))
        return first.failed, now, again.curtailed + first.curtailed

    failed, now, again = asyncio.run(scenario())
    assert miner.ip in failed and "curtail" in failed[miner.ip]
    assert now.mining and now.pending is None
    view = asic_fleet([now], [Site(name="hall")], builtin_catalog())
    assert view.fleet.mode[0] == Mode.MINE  # its draw stays counted against the cap
    assert again == () and miner.mining
    assert sent[0] > 0 and sent[1] == 2 * sent[0]  # sent again, as often as the first time


def _is_curtail(seen: str) -> bool:
    """The command each family's curtail sends, as the emulator logs it."""
    return seen in ("http POST /api/v1/mining/stop", "http POST /api/v1/mining/pause",
                    "http POST /cgi-bin/set_miner_conf.cgi") or seen.startswith("rpc curtail")


def test_nothing_listening_is_not_a_miner_and_a_vanished_one_is_unreachable(
    lab: MinerLab,
) -> None:
    miner = lab.add("luxos")
    empty = f"{lab.prefix}.250"
    config = AsicConfig.model_validate({
        "ranges": [{"addresses": [miner.ip, empty], "site": "hall"}],
        "io": {"timeout_s": 1.0, "retries": 0},
    })
    site = AsicSite(config, ["hall"], PyasicDriver(discovery_timeout_s=1.0))

    async def scenario() -> tuple[list[MinerStatus], list[MinerStatus]]:
        first = await site.refresh()
        for server in miner.servers:
            lab.loop.call_soon_threadsafe(server.close)
        await asyncio.sleep(0.2)
        return first, await site.refresh()

    first, second = asyncio.run(scenario())
    assert [s.reading.address for s in first] == [miner.ip]
    (gone,) = second
    assert not gone.reading.reachable and gone.mining


def test_explicit_firmware_and_custom_ports_skip_discovery(lab: MinerLab) -> None:
    miner = lab.add("luxos")
    config = AsicConfig.model_validate({
        "ranges": [{"addresses": [miner.ip], "site": "hall", "firmware": "luxos",
                    "model": "Antminer S19 XP", "rpc_port": 4028}],
    })
    statuses = asyncio.run(AsicSite(config, ["hall"], PyasicDriver()).refresh())
    assert statuses[0].reading.firmware == "LuxOS"
    assert not any(s.startswith("http") for s in miner.seen)  # no web probe: no discovery
    assert np.isclose(statuses[0].reading.hashrate_ths or 0, 141.23, atol=0.01)


class _NoGpus:
    """The Kubernetes side of a hall with no GPU nodes."""

    def __init__(self, sites: list[Site]) -> None:
        from orchestrator.models import FleetTable

        self.table = FleetTable.build([], sites, np.zeros(0, dtype=np.int32))

    def fleet(self, now_s: float):
        return self.table

    def apply(self, plan, fleet):
        from orchestrator.ports import ActuationResult

        return ActuationResult()


def test_engine_plan_to_miners_in_efficiency_order_with_ramp(lab: MinerLab) -> None:
    """A price spike: the engine idles all three; the ramp (2 miners a window) takes the
    two least efficient now — the VNish measures 2950 W, the others 3010 W — and the
    most efficient one in the next window."""
    from orchestrator.adapters.asic.service import AsicFleet, MixedFleetSource, RoutingActuator
    from orchestrator.engine.plan import build_context, decide
    from orchestrator.framework.registry import load_policy
    from orchestrator.models.config import GuardConfig, HashpivotConfig
    from orchestrator.models.demand import DemandSummary
    from tests.conftest import make_prices

    miners = {f: lab.add(f) for f in FAMILIES}
    sites = [Site(name="hall", power_cap_kw=50)]
    clock = Clock()
    config = HashpivotConfig(sites=sites, asic={
        "ranges": [{"addresses": [m.ip for m in miners.values()], "site": "hall"}],
        "ramp": {"max_miners_per_window": 2, "window_s": 60, "step_s": 10},
        "io": {"timeout_s": 2.0}, "use_ray": False,
    })
    asic = AsicFleet.from_config(config, driver=lambda: PyasicDriver(discovery_timeout_s=2.0),
                                 clock=clock, auto_ramp=False)
    try:
        gpus = _NoGpus(sites)
        source, router = MixedFleetSource(gpus, asic), RoutingActuator(gpus, asic)
        fleet = source.fleet(clock.now)
        guards = GuardConfig(min_dwell_s=0, max_fleet_switch_share_per_hour=1.0)
        ctx = build_context(now_s=clock.now, prices=make_prices(fleet, power_usd_mwh=200.0,
                                                                observed_s=clock.now),
                            demand=DemandSummary.empty(0), fleet=fleet, guards=guards)
        plan = decide(ctx, load_policy("power-capped", {}), guards)
        assert (plan.target == Mode.IDLE).all()
        result = router.apply(plan, fleet)
        asleep = {f for f, m in miners.items() if not m.mining}
        assert asleep == {"antminer", "luxos"}
        assert result.deferred == {miners["vnish"].ip: "ramp: waiting for budget or power "
                                                       "headroom"}
        clock.now += 30
        assert asic.handles[0].step(10.0).curtailed == ()  # window not over yet
        clock.now += 31
        assert asic.handles[0].step(10.0).curtailed == (miners["vnish"].ip,)
        assert not miners["vnish"].mining
    finally:
        asic.close()


def test_stock_antminer_curtail_of_a_miner_that_is_gone_is_not_a_success(
    lab: MinerLab,
) -> None:
    """Built from config (firmware and model given, no discovery), a miner whose address
    no longer answers is never reported curtailed."""
    from orchestrator.models.asic_config import AsicRange

    empty = f"{lab.prefix}.251"
    driver = PyasicDriver(discovery_timeout_s=1.0, confirm_s=0.3, confirm_poll_s=0.1)

    async def scenario() -> bool:
        spec = AsicRange(addresses=[empty], firmware="antminer", model="S19 XP")
        handle = await driver.connect(empty, spec)
        try:
            return await driver.curtail(handle)
        except Exception:  # a transport error is a failure too
            return False

    assert not asyncio.run(scenario())


def test_braiins_os_with_its_web_interface_down_reads_from_its_api(lab: MinerLab) -> None:
    """Braiins OS serves its firmware version only over the web interface. Asked for it,
    pyasic fails the whole read when that interface does not answer; hashpivot does not
    ask, so the miner reads (and counts) by its cgminer-style API."""
    from orchestrator.adapters.asic.driver import _READ_FIELDS
    from orchestrator.models.asic_config import AsicRange
    from tests.contract.fixtures.miners.emulator import load_fixture

    miner = lab.add("braiins")
    rpc = load_fixture("braiins_s9.json")["rpc"]
    config = AsicConfig.model_validate({
        "ranges": [{"addresses": [miner.ip], "site": "hall", "firmware": "braiins",
                    "model": "Antminer S9"}],
        "io": {"timeout_s": 2.0, "retries": 0},
    })
    site = AsicSite(config, ["hall"], PyasicDriver(discovery_timeout_s=2.0))
    st = _by_ip(asyncio.run(site.refresh()))[miner.ip]
    r = st.reading
    assert r.reachable and r.hashing
    assert r.hashrate_ths == pytest.approx(rpc["summary"]["SUMMARY"][0]["MHS 1m"] / 1e6)
    assert r.watts == rpc["tunerstatus"]["TUNERSTATUS"][0]["ApproximateMinerPowerConsumption"]
    # One board reports −83 °C: dropped, the others averaged.
    boards = [t["Board"] for t in rpc["temps"]["TEMPS"] if t["Board"] > -40]
    assert r.temperature_c == pytest.approx(sum(boards) / len(boards))
    view = asic_fleet([st], [Site(name="hall")], builtin_catalog())
    assert view.fleet.profiles[view.fleet.profile[0]].name == "s9"
    assert view.watts_measured[0] and view.fleet.watts_mine[0] == r.watts

    async def with_firmware_version() -> str:
        spec = AsicRange(addresses=[miner.ip], firmware="braiins", model="Antminer S9")
        handle = await PyasicDriver(discovery_timeout_s=2.0).connect(miner.ip, spec)
        try:
            await handle.get_data(include=[*_READ_FIELDS, "fw_ver"])
        except Exception as exc:  # what asking for it did
            return type(exc).__name__
        return "read"

    assert asyncio.run(with_firmware_version()) == "APIError"


def test_a_sleeping_antminer_without_a_summary_is_asleep_and_resumed(lab: MinerLab) -> None:
    """Asleep, it answers no summary; its configuration says it sleeps. It is an idle
    miner that can be woken, not an unreachable one held at full draw."""
    miner = lab.add("antminer", no_summary_asleep=True)
    site = _site([miner])

    async def scenario() -> tuple[MinerStatus, tuple[str, ...], bool]:
        await site.refresh()
        site.set_targets({miner.ip: MinerTarget(mine=False, priority=0.1, delta_w=3000.0)})
        assert (await site.step()).curtailed == (miner.ip,)
        asleep = _by_ip(await site.refresh())[miner.ip]
        site.set_targets({miner.ip: MinerTarget(mine=True, priority=0.1, delta_w=3000.0)})
        resumed = (await site.step()).resumed
        return asleep, resumed, miner.mining

    asleep, resumed, woke = asyncio.run(scenario())
    assert asleep.reading.reachable and not asleep.reading.hashing
    assert not asleep.mining
    view = asic_fleet([asleep], [Site(name="hall")], builtin_catalog())
    assert view.fleet.mode[0] == Mode.IDLE and view.fleet.reachable[0]
    assert resumed == (miner.ip,) and woke


def test_a_whatsminer_hashing_with_its_flag_off_counts_as_mining(lab: MinerLab) -> None:
    """Its status says `mineroff` while it hashes about 67 TH/s: the measurement wins,
    so it is a mining row at its measured draw, never idle power the cap could hand out."""
    from tests.contract.fixtures.miners.emulator import load_fixture

    miner = lab.add("whatsminer")
    summary = load_fixture("whatsminer_m30s.json")["rpc"]["summary"]["SUMMARY"][0]
    config = AsicConfig.model_validate({
        "ranges": [{"addresses": [miner.ip], "site": "hall", "firmware": "whatsminer",
                    "model": "M30S++V20"}],
        "io": {"timeout_s": 2.0, "retries": 0},
    })
    site = AsicSite(config, ["hall"], PyasicDriver(discovery_timeout_s=2.0))
    st = _by_ip(asyncio.run(site.refresh()))[miner.ip]
    assert st.reading.is_mining is False  # what pyasic reads from the firmware's flag
    assert st.reading.hashrate_ths == pytest.approx(summary["MHS 1m"] / 1e6)
    assert st.reading.hashing and st.mining
    view = asic_fleet([st], [Site(name="hall")], builtin_catalog())
    assert view.fleet.mode[0] == Mode.MINE
    assert view.fleet.watts_mine[0] == summary["Power"] and view.watts_measured[0]


def test_vnish_announcing_itself_as_an_antminer_is_driven_as_vnish(lab: MinerLab) -> None:
    """VNish 3.8.6 names itself 'Antminer S19 XP (vnish 3.8.6)': pyasic's discovery
    takes it for stock firmware, whose commands VNish does not take. hashpivot reads its
    version, drives it as VNish, and its curtail reaches it."""
    from pyasic.miners.factory import MinerFactory

    miner = lab.add("vnish", vnish_as_antminer=True)

    async def discovered() -> str:
        found = await MinerFactory().get_miner(miner.ip)
        return str(found.firmware)

    assert asyncio.run(discovered()) == "Stock"  # what discovery alone makes of it
    site = _site([miner])

    async def scenario() -> tuple[MinerStatus, tuple[str, ...]]:
        st = _by_ip(await site.refresh())[miner.ip]
        site.set_targets({miner.ip: MinerTarget(mine=False, priority=0.1, delta_w=3000.0)})
        return st, (await site.step()).curtailed

    st, curtailed = asyncio.run(scenario())
    assert st.reading.firmware == FIRMWARE["vnish"] and st.reading.reachable
    assert curtailed == (miner.ip,) and not miner.mining
    assert "http POST /api/v1/mining/stop" in miner.seen or (
        "http POST /api/v1/mining/pause" in miner.seen)
