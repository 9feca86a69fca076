"""Talking to one miner: the `MinerDriver` port and its pyasic implementation.

Every protocol detail (cgminer JSON on 4028, Antminer CGI with digest auth, VNish and
LuxOS APIs, …) stays inside pyasic. Timeouts, retries and bounded concurrency are not
here but in `site.AsicSite`, so the simulated driver gets the same treatment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

from orchestrator.adapters.asic.readings import MinerReading, from_pyasic
from orchestrator.models.asic_config import AsicRange

log = logging.getLogger("hashpivot.asic.driver")

#: Miner handle: the driver's own object for one miner (a pyasic miner here).
Handle = Any


class MinerDriver(Protocol):
    async def connect(self, address: str, spec: AsicRange) -> Handle | None:
        """Identify the miner at `address` (None: nothing there we can control)."""
        ...

    async def read(self, handle: Handle) -> MinerReading:
        """Model, hashrate, power, temperature, errors and mining state."""
        ...

    async def curtail(self, handle: Handle) -> bool:
        """Stop hashing (sleep/pause, control board stays up). True: the miner accepted."""
        ...

    async def resume(self, handle: Handle) -> bool:
        ...

    async def set_power_target(self, handle: Handle, watts: int) -> bool:
        """Lower (or restore) the power target; False where the firmware has none."""
        ...


#: Config `firmware` name → pyasic MinerTypes member name.
FIRMWARE_TYPES = {
    "antminer": "ANTMINER",
    "stock": "ANTMINER",
    "braiins": "BRAIINS_OS",
    "bosminer": "BRAIINS_OS",
    "luxos": "LUX_OS",
    "vnish": "VNISH",
    "whatsminer": "WHATSMINER",
    "epic": "EPIC",
    "avalon": "AVALONMINER",
}

#: What a read asks pyasic for: only what decisions use. The firmware version is not
#: asked for: pyasic reads it from Braiins OS over the web interface, and a miner whose
#: web interface is down (its cgminer API answering) then failed to read at all.
_READ_FIELDS = (
    "hashrate",
    "expected_hashrate",
    "hashboards",
    "wattage",
    "wattage_limit",
    "errors",
    "is_mining",
)


class PyasicDriver:
    """Miners through pyasic. Discovery by its MinerFactory, or by config when the range
    names the firmware (custom ports: pyasic's discovery only probes the standard ones)."""

    def __init__(
        self,
        *,
        discovery_timeout_s: float = 5.0,
        confirm_s: float | None = None,
        confirm_poll_s: float = 0.5,
    ) -> None:
        """`confirm_s`: how long a curtail or resume is read back before it counts as
        refused. It must end inside the site's per-call timeout (`io.timeout_s`, which
        the site also gives as `discovery_timeout_s`): by default 60% of it, at most 3 s."""
        from pyasic import settings

        self.confirm_s = min(3.0, 0.6 * discovery_timeout_s) if confirm_s is None else confirm_s
        self.confirm_poll_s = min(confirm_poll_s, self.confirm_s / 3)

        # pyasic's own timeouts are global; ours (asyncio.wait_for) are per call and
        # shorter. Its factory timeout bounds each discovery probe inside ours.
        settings.update("factory_get_timeout", max(1, int(discovery_timeout_s)))
        settings.update("get_data_retries", 1)

    async def connect(self, address: str, spec: AsicRange) -> Handle | None:
        if spec.firmware is not None:
            miner = _build(address, spec.firmware, spec.model)
        else:
            from pyasic.miners.factory import MinerFactory

            miner = await MinerFactory().get_miner(address)
            if miner is None or type(miner).__name__ == "UnknownMiner":
                return None
            miner = await _vnish_seen_as_stock(address, miner)
        if spec.rpc_port is not None and getattr(miner, "rpc", None) is not None:
            miner.rpc.port = spec.rpc_port
        if spec.web_port is not None and getattr(miner, "web", None) is not None:
            miner.web.port = spec.web_port
        _cache_command_list(miner)
        return miner

    async def read(self, handle: Handle) -> MinerReading:
        data = await handle.get_data(include=list(_READ_FIELDS))
        return from_pyasic(str(handle.ip), data, time.time())

    async def curtail(self, handle: Handle) -> bool:
        """Sleep the miner; True only once a read-back shows it stopped. Stock Antminer
        support in pyasic answers True without checking that the miner got the command
        (it does so for an address where nothing answers)."""
        return bool(await handle.stop_mining()) and await self._confirm(handle, want=False)

    async def resume(self, handle: Handle) -> bool:
        return bool(await handle.resume_mining()) and await self._confirm(handle, want=True)

    async def _confirm(self, handle: Handle, *, want: bool) -> bool:
        """Read the miner back until it shows `want` (hashing or not), for `confirm_s`.
        A resumed miner may need minutes to hash: the firmware's mining flag, read from
        its configuration, confirms it took the command; a curtail needs the hashrate
        to fall (or, where no hashrate is given, the flag)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_s
        while True:
            try:
                # Each read is cut at the deadline: a hung API must end as a refusal
                # inside the site's per-call timeout, not as that timeout.
                data = await asyncio.wait_for(handle.get_data(include=list(_READ_FIELDS)),
                                              max(deadline - loop.time(), 0.0))
                reading = from_pyasic(str(handle.ip), data, time.time())
            except Exception as exc:  # an unreachable miner did not take the command
                log.debug("%s: read-back failed: %s", getattr(handle, "ip", "?"), exc)
                reading = None
            if reading is not None and reading.reachable and confirmed(reading, want):
                return True
            if loop.time() + self.confirm_poll_s > deadline:
                return False
            await asyncio.sleep(self.confirm_poll_s)

    async def set_power_target(self, handle: Handle, watts: int) -> bool:
        return bool(await handle.set_power_limit(int(watts)))


def confirmed(reading: MinerReading, want: bool) -> bool:
    """Whether a read-back shows a curtail (`want` False) or resume (True) took effect."""
    if not want:
        return not reading.hashing
    return reading.is_mining is True or (reading.hashrate_ths or 0.0) > 0.0


async def _vnish_seen_as_stock(address: str, miner: Handle) -> Handle:
    """VNish 3.8 names itself 'Antminer … (vnish 3.8.6)' in its API version and has no
    'AnthillOS' page, so pyasic's discovery takes it for stock firmware, whose commands
    VNish does not take. Its version reply says VNish: rebuild it as VNish."""
    if getattr(miner, "firmware", None) is None or str(miner.firmware) != "Stock":
        return miner
    if not any(c.__name__.startswith("Antminer") for c in type(miner).__mro__):
        return miner
    try:
        reply = await miner.rpc.version()
    except Exception:  # no answer: keep what discovery found
        return miner
    if "vnish" not in json.dumps(reply).lower():
        return miner
    log.info("%s: VNish reporting itself as stock Antminer firmware", address)
    model = getattr(miner, "model", None)
    return _build(address, "vnish", f"Antminer {model}" if model else None)


_COMMANDS: dict[type, list[str]] = {}


def _cache_command_list(miner: Handle) -> None:
    """pyasic lists an API's commands with dir() on every multicommand (most of a read's
    CPU time at thousands of miners); the list is fixed per class, so compute it once."""
    for api in (getattr(miner, "rpc", None), getattr(miner, "web", None)):
        get = getattr(api, "get_commands", None)
        if api is None or not callable(get):
            continue
        cls = type(api)
        if cls not in _COMMANDS:
            _COMMANDS[cls] = list(get())
        commands = _COMMANDS[cls]
        api.get_commands = lambda commands=commands: commands


def _build(address: str, firmware: str, model: str | None) -> Handle:
    from pyasic.miners.factory import MINER_CLASSES, MinerTypes

    key = FIRMWARE_TYPES.get(firmware.lower())
    if key is None:
        raise ValueError(f"unknown firmware {firmware!r}; known: {sorted(FIRMWARE_TYPES)}")
    classes = MINER_CLASSES[MinerTypes[key]]
    cls = classes.get(model.upper() if model else None) or classes[None]
    return cls(address)
