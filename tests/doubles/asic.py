"""Simulated miners behind the `MinerDriver` port, for tests and benchmarks.

No sockets: each miner is a few fields, each call an `asyncio.sleep` of the configured
latency. Faults are per miner: unreachable, hanging (never answers), garbage (answers
nothing usable) and ignoring curtail commands (accepts them and keeps hashing, which the
read-back after the command shows, as it does with pyasic). The
wire protocols themselves are covered by the contract tests against pyasic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from orchestrator.adapters.asic.readings import MinerReading, unreachable
from orchestrator.models.asic_config import AsicRange
from orchestrator.models.hardware import builtin_catalog


@dataclass
class SimMiner:
    address: str
    make: str
    model: str
    hashrate_ths: float
    watts: float
    idle_watts: float = 15.0
    mining: bool = True
    power_limit_w: float | None = None
    unreachable: bool = False
    hangs: bool = False
    garbage: bool = False
    ignores_curtail: bool = False
    commands: list[str] = field(default_factory=list)

    @property
    def draw_w(self) -> float:
        if not self.mining:
            return self.idle_watts
        if self.power_limit_w is not None:
            return min(self.watts, self.power_limit_w)
        return self.watts

    @property
    def rate_ths(self) -> float:
        if not self.mining:
            return 0.0
        return self.hashrate_ths * self.draw_w / self.watts


#: Catalog profile → pyasic make and model as it reports them.
SIM_MODELS = {
    "s9": ("AntMiner", "S9"),
    "s19": ("AntMiner", "S19"),
    "s19-pro": ("AntMiner", "S19 Pro"),
    "s19j-pro": ("AntMiner", "S19j Pro"),
    "s19-xp": ("AntMiner", "S19 XP"),
    "s21": ("AntMiner", "S21"),
    "s21-pro": ("AntMiner", "S21 Pro"),
    "m30s": ("WhatsMiner", "M30S++ V20"),
    "m50s": ("WhatsMiner", "M50S++ VK30"),
}


def sim_miner(address: str, profile: str, *, derate: float = 1.0, **faults: bool) -> SimMiner:
    """A miner of a catalog profile; `derate` scales its hashrate (worn boards)."""
    p = builtin_catalog()[profile]
    make, model = SIM_MODELS.get(profile, ("AntMiner", profile.upper()))
    miner = SimMiner(address, make, model, p.mine_hashrate * derate, p.watts_mine,
                     p.watts_idle)
    for name, value in faults.items():
        if not hasattr(miner, name) or not isinstance(getattr(miner, name), bool):
            raise TypeError(f"unknown simulated fault {name!r}")
        setattr(miner, name, value)
    return miner


class SimulatedDriver:
    """The `MinerDriver` port over `SimMiner`s, with a fixed per-call latency."""

    def __init__(self, miners: list[SimMiner], *, latency_s: float = 0.0,
                 clock_s: float = 0.0) -> None:
        self.miners = {m.address: m for m in miners}
        self.latency_s = latency_s
        self.now_s = clock_s
        self.calls = 0

    async def _wire(self, miner: SimMiner) -> None:
        self.calls += 1
        if miner.hangs:
            await asyncio.Event().wait()  # never answers: the caller's timeout ends it
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if miner.unreachable:
            raise ConnectionRefusedError(f"{miner.address}: connection refused")

    async def connect(self, address: str, spec: AsicRange) -> str | None:
        miner = self.miners.get(address)
        if miner is None:
            return None
        await self._wire(miner)
        return address

    async def read(self, handle: str) -> MinerReading:
        m = self.miners[handle]
        await self._wire(m)
        if m.garbage:
            return unreachable(handle, self.now_s, "miner answered without usable data")
        return MinerReading(
            address=handle, reachable=True, read_at_s=self.now_s, make=m.make, model=m.model,
            firmware="Sim", hashrate_ths=m.rate_ths, expected_hashrate_ths=m.hashrate_ths,
            watts=m.draw_w, watts_limit=m.power_limit_w or m.watts, temperature_c=60.0,
            is_mining=m.mining,
        )

    async def curtail(self, handle: str) -> bool:
        m = self.miners[handle]
        await self._wire(m)
        m.commands.append("curtail")
        if not m.ignores_curtail:
            m.mining = False
        # As `PyasicDriver`: a curtail counts once a read-back shows the miner stopped.
        return not m.mining

    async def resume(self, handle: str) -> bool:
        m = self.miners[handle]
        await self._wire(m)
        m.commands.append("resume")
        m.mining = True
        return True

    async def set_power_target(self, handle: str, watts: int) -> bool:
        m = self.miners[handle]
        await self._wire(m)
        m.commands.append(f"power {watts}")
        m.power_limit_w = float(watts)
        return True

    def draw_w(self) -> float:
        """What every simulated miner draws now, W (unreachable ones too: they still run)."""
        return float(sum(m.draw_w for m in self.miners.values()))
