"""What a miner says, as hashpivot reads it: flags against measurements, sleep, sensors
outside physical ranges. Inputs are pyasic `MinerData` records as pyasic builds them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pyasic")

from pyasic.data import MinerData
from pyasic.data.boards import HashBoard
from pyasic.device.algorithm.hashrate import AlgoHashRate
from pyasic.device.algorithm.hashrate.unit.sha256 import SHA256Unit

from orchestrator.adapters.asic.readings import (
    MAX_HASHRATE_THS,
    MAX_WATTS,
    TEMPERATURE_RANGE_C,
    from_pyasic,
)


def ths(value: float) -> object:
    return AlgoHashRate.SHA256(rate=value, unit=SHA256Unit.TH)


def board(slot: int, temp: float | None, rate: float = 22.0) -> HashBoard:
    return HashBoard(slot=slot, temp=temp, chip_temp=temp, hashrate=ths(rate), missing=False)


def test_measured_hashrate_beats_a_false_mining_flag() -> None:
    """A Whatsminer hashing 67 TH/s whose mining flag says False is hashing."""
    data = MinerData(ip="10.0.0.1", is_mining=False, wattage=3300,
                     hashboards=[board(i, 60.0, 67.0 / 3) for i in range(3)])
    reading = from_pyasic("10.0.0.1", data, 0.0)
    assert reading.hashrate_ths == pytest.approx(67.0)
    assert reading.hashing


def test_zero_hashrate_beats_a_true_mining_flag() -> None:
    data = MinerData(ip="10.0.0.1", is_mining=True, wattage=18,
                     hashboards=[board(i, 40.0, 0.0) for i in range(3)])
    assert not from_pyasic("10.0.0.1", data, 0.0).hashing


def test_a_sleeping_miner_without_a_summary_is_asleep_not_unreachable() -> None:
    """Stock Antminer firmware in sleep mode gives no usable summary (no hashrate, no
    power); its configuration's work mode says it sleeps."""
    data = MinerData(ip="10.0.0.1", is_mining=False)
    reading = from_pyasic("10.0.0.1", data, 0.0)
    assert reading.reachable and reading.error is None
    assert not reading.hashing and reading.hashrate_ths == 0.0


def test_no_data_and_no_flag_is_no_reading() -> None:
    reading = from_pyasic("10.0.0.1", MinerData(ip="10.0.0.1"), 0.0)
    assert not reading.reachable and reading.error


@pytest.mark.parametrize("bad", [-83.0, -41.0, 151.0, 1e9])
def test_temperatures_outside_physical_range_are_dropped(bad: float) -> None:
    lo, hi = TEMPERATURE_RANGE_C
    assert not lo <= bad <= hi
    data = MinerData(ip="10.0.0.1", wattage=3000,
                     hashboards=[board(0, 62.0), board(1, bad), board(2, 64.0)])
    reading = from_pyasic("10.0.0.1", data, 0.0)
    assert reading.temperature_c == pytest.approx((62.0 + 64.0) / 2)


def test_only_bad_temperatures_leave_none() -> None:
    data = MinerData(ip="10.0.0.1", wattage=3000, hashboards=[board(0, -83.0)])
    assert from_pyasic("10.0.0.1", data, 0.0).temperature_c is None


def test_impossible_hashrate_and_power_are_dropped() -> None:
    data = MinerData(ip="10.0.0.1", wattage=4_000_000_000, is_mining=True,
                     hashboards=[board(0, 60.0, MAX_HASHRATE_THS * 2)])
    reading = from_pyasic("10.0.0.1", data, 0.0)
    assert reading.hashrate_ths is None and reading.watts is None
    assert not reading.reachable  # nothing usable left: no reading, the miner counts at full draw


# -- whatever pyasic hands over, a reading is made or refused, never an exception ---------

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True),
    st.text(max_size=5), st.lists(st.integers(), max_size=2), st.just(object()),
    st.builds(ths, st.floats(0, 1e6)),
)
boards = st.lists(st.builds(SimpleNamespace, temp=junk, hashrate=junk), max_size=4)


@settings(max_examples=300, deadline=None)
@given(hashrate=junk, expected=junk, wattage=junk, limit=junk, env=junk, flag=junk,
       hbs=st.one_of(st.none(), boards), errors=st.one_of(st.none(), st.lists(junk, max_size=2)))
def test_any_miner_data_makes_a_sane_reading(hashrate: object, expected: object,
                                              wattage: object, limit: object, env: object,
                                              flag: object, hbs: object, errors: object) -> None:
    data = SimpleNamespace(make="AntMiner", model="S19 XP", firmware="Stock", hashrate=hashrate,
                           expected_hashrate=expected, wattage=wattage, wattage_limit=limit,
                           env_temp=env, is_mining=flag, hashboards=hbs, errors=errors)
    r = from_pyasic("10.0.0.1", data, 0.0)
    lo, hi = TEMPERATURE_RANGE_C
    if r.temperature_c is not None:
        assert lo <= r.temperature_c <= hi
    if r.hashrate_ths is not None:
        assert 0.0 <= r.hashrate_ths <= MAX_HASHRATE_THS
    if r.watts is not None:
        assert 0.0 < r.watts <= MAX_WATTS
    assert r.is_mining in (True, False, None)
    if r.reachable:
        assert r.hashrate_ths is not None or r.watts is not None


@pytest.mark.parametrize("timeout_s", [1.0, 2.0, 5.0, 30.0])
def test_a_command_read_back_ends_inside_the_per_call_timeout(timeout_s: float) -> None:
    """The site bounds each call by `io.timeout_s` (and gives it as the discovery
    timeout): a read-back running past it would turn a refused curtail into a retry."""
    from orchestrator.adapters.asic.driver import PyasicDriver

    driver = PyasicDriver(discovery_timeout_s=timeout_s)
    assert driver.confirm_s + driver.confirm_poll_s < timeout_s


class _NoReadBack:
    """A miner that takes the command and then never answers a read (its API hung)."""

    ip = "10.0.0.9"

    def __init__(self) -> None:
        self.reads = 0

    async def stop_mining(self) -> bool:
        return True

    async def resume_mining(self) -> bool:
        return True

    async def get_data(self, include: object = None) -> object:
        self.reads += 1
        await asyncio.Event().wait()  # never set: the read never returns
        raise AssertionError("unreachable")


@pytest.mark.parametrize("verb", ["curtail", "resume"])
def test_a_read_back_that_never_answers_is_a_refusal_inside_the_per_call_timeout(
    verb: str,
) -> None:
    """The site bounds each call by `io.timeout_s`: a read-back that hangs must end as a
    refused command before that, not as the call's own timeout (which the site retries)."""
    from orchestrator.adapters.asic.driver import PyasicDriver

    timeout_s = 1.0
    driver = PyasicDriver(discovery_timeout_s=timeout_s)
    miner = _NoReadBack()

    async def command() -> bool:
        fn = driver.curtail if verb == "curtail" else driver.resume
        return await asyncio.wait_for(fn(miner), timeout_s)

    assert asyncio.run(command()) is False
    assert miner.reads >= 1
