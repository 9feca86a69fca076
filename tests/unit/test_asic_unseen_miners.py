"""A configured miner that has not answered since the controller started is a fleet row:
at its nameplate draw, unreachable, never commanded, reported like one whose reads fail.

The driver here answers only for the addresses it is given; every other call fails the
way a miner that is switched off or cut from the network does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.adapters.asic.fleet import asic_fleet
from orchestrator.adapters.asic.readings import MinerReading, profile_for_model
from orchestrator.adapters.asic.site import NEVER_ANSWERED, AsicSite, MinerTarget
from orchestrator.models import Mode, Site, builtin_catalog
from orchestrator.models.asic_config import AsicConfig, AsicRange
from orchestrator.models.hardware import HardwareKind

SITES = [Site(name="hall", power_cap_kw=100)]


class PartialDriver:
    """Miners at `alive` answer; every other address refuses the connection."""

    def __init__(self, alive: dict[str, float]) -> None:
        self.alive = alive  # address → watts it reports
        self.calls: list[tuple[str, str]] = []

    def _check(self, what: str, address: str) -> None:
        self.calls.append((what, address))
        if address not in self.alive:
            raise ConnectionRefusedError(f"{address}: connection refused")

    async def connect(self, address: str, spec: AsicRange) -> Any:
        if spec.firmware is None:  # discovery asks the address what it is
            self._check("connect", address)
        return address  # a firmware range builds its handle without asking

    async def read(self, handle: Any) -> MinerReading:
        self._check("read", handle)
        return MinerReading(address=handle, reachable=True, read_at_s=0.0, make="AntMiner",
                            model="S19 XP", hashrate_ths=140.0, watts=self.alive[handle],
                            is_mining=True)

    async def curtail(self, handle: Any) -> bool:
        self._check("curtail", handle)
        return True

    async def resume(self, handle: Any) -> bool:
        self._check("resume", handle)
        return True

    async def set_power_target(self, handle: Any, watts: int) -> bool:
        self._check("power target", handle)
        return True


def _site(ranges: list[dict[str, Any]], driver: PartialDriver) -> AsicSite:
    config = AsicConfig.model_validate({
        "ranges": ranges, "io": {"timeout_s": 1.0, "retries": 0, "retry_backoff_s": 0.0},
    })
    return AsicSite(config, ["hall"], driver)


def _largest_asic_watts() -> float:
    return max(p.watts_mine for p in builtin_catalog().values() if p.kind == HardwareKind.ASIC)


@pytest.mark.parametrize("model", ["Antminer S21", "S19j Pro"])
def test_a_firmware_range_miner_that_never_answered_counts_at_its_model_nameplate(
    model: str,
) -> None:
    driver = PartialDriver({"10.0.0.1": 3100.0})
    site = _site([{"addresses": ["10.0.0.1", "10.0.0.2"], "site": "hall",
                   "firmware": "antminer", "model": model}], driver)
    statuses = asyncio.run(site.refresh())
    assert [st.reading.address for st in statuses] == ["10.0.0.1", "10.0.0.2"]
    unseen = statuses[1]
    assert not unseen.reading.reachable and not unseen.answered and unseen.mining
    assert unseen.reading.error is not None and unseen.reading.error.startswith(NEVER_ANSWERED)

    view = asic_fleet(statuses, SITES, builtin_catalog())
    f = view.fleet
    i = f.index_of("10.0.0.2")
    expected = builtin_catalog()[str(profile_for_model(None, model))]
    assert f.profiles[f.profile[i]].name == expected.name
    assert f.watts_mine[i] == expected.watts_mine
    assert f.mode[i] == Mode.MINE and not f.reachable[i]
    # Counted in what the site draws, next to the miner that answered.
    assert f.watts_mine.sum() == pytest.approx(3100.0 + expected.watts_mine)
    assert set(view.unreadable) == {"10.0.0.2"}
    assert str(round(expected.watts_mine)) in view.unreadable["10.0.0.2"]
    assert "10.0.0.2" not in view.unknown_models


def test_a_populated_discovery_range_keeps_an_address_that_never_answered() -> None:
    driver = PartialDriver({"10.0.0.1": 3100.0})
    ranges = [{"addresses": ["10.0.0.1", "10.0.0.2"], "site": "hall", "populated": True}]
    statuses = asyncio.run(_site(ranges, driver).refresh())
    view = asic_fleet(statuses, SITES, builtin_catalog())
    i = view.fleet.index_of("10.0.0.2")
    # Nothing is known of it: the largest nameplate draw of the catalog's ASICs.
    assert view.fleet.watts_mine[i] == _largest_asic_watts()
    assert not view.fleet.reachable[i] and view.fleet.mode[i] == Mode.MINE
    assert "connection refused" in view.unreadable["10.0.0.2"]


def test_a_discovery_range_leaves_out_an_address_where_nothing_answers() -> None:
    driver = PartialDriver({"10.0.0.1": 3100.0})
    ranges = [{"addresses": ["10.0.0.1", "10.0.0.2"], "site": "hall"}]
    statuses = asyncio.run(_site(ranges, driver).refresh())
    assert [st.reading.address for st in statuses] == ["10.0.0.1"]


def test_a_miner_that_never_answered_gets_no_command_and_is_read_once_it_answers() -> None:
    driver = PartialDriver({"10.0.0.1": 3100.0})
    site = _site([{"addresses": ["10.0.0.1", "10.0.0.2"], "site": "hall",
                   "firmware": "antminer", "model": "Antminer S19 XP"}], driver)

    async def scenario() -> tuple[Any, Any, list[Any]]:
        await site.refresh()
        off = MinerTarget(mine=False, priority=0.1, delta_w=3000.0)
        site.set_targets({"10.0.0.1": off, "10.0.0.2": off})
        step = await site.step()
        power = await site.set_power_target("10.0.0.2", 2000)
        driver.alive["10.0.0.2"] = 2950.0  # switched on
        return step, power, await site.refresh()

    step, power, later = asyncio.run(scenario())
    assert step.curtailed == ("10.0.0.1",)
    assert step.refused == {"10.0.0.2": "unreachable"}
    assert power is not None
    commands = [c for c in driver.calls if c[0] in ("curtail", "resume", "power target")]
    assert ("curtail", "10.0.0.2") not in commands
    assert all(address != "10.0.0.2" for _, address in commands)
    back = {st.reading.address: st for st in later}["10.0.0.2"]
    assert back.answered and back.reading.reachable and back.reading.watts == 2950.0


def test_a_miner_that_answered_then_failed_keeps_what_it_said() -> None:
    driver = PartialDriver({"10.0.0.1": 3100.0})
    site = _site([{"addresses": ["10.0.0.1"], "site": "hall", "firmware": "antminer",
                   "model": "Antminer S21"}], driver)

    async def scenario() -> Any:
        await site.refresh()
        del driver.alive["10.0.0.1"]
        return (await site.refresh())[0]

    st = asyncio.run(scenario())
    assert st.answered and not st.reading.reachable
    assert st.reading.model == "S19 XP"  # what it reported, not what the range guessed
    assert not st.reading.error or not st.reading.error.startswith(NEVER_ANSWERED)


def test_populated_defaults_to_firmware_ranges() -> None:
    assert AsicRange(addresses=["10.0.0.1"], firmware="luxos").every_address_a_miner
    assert not AsicRange(addresses=["10.0.0.0/24"]).every_address_a_miner
    assert AsicRange(addresses=["10.0.0.0/30"], populated=True).every_address_a_miner
    assert not AsicRange(addresses=["10.0.0.1"], firmware="luxos",
                         populated=False).every_address_a_miner


def test_a_populated_range_with_a_profile_counts_that_profile() -> None:
    driver = PartialDriver({})
    ranges = [{"addresses": ["10.0.0.7"], "site": "hall", "populated": True, "profile": "s21"}]
    statuses = asyncio.run(_site(ranges, driver).refresh())
    view = asic_fleet(statuses, SITES, builtin_catalog())
    assert view.fleet.watts_mine[0] == builtin_catalog()["s21"].watts_mine
    assert view.fleet.profiles[view.fleet.profile[0]].name == "s21"
    assert not view.fleet.reachable[0]
