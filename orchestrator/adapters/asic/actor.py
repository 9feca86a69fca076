"""Where a site's miners are talked to: a Ray actor (ray_site.py), or an event loop
thread in-process (here).

Both are `SiteHandle`s: synchronous calls the decision loop can make with a deadline.
The I/O itself runs on the handle's own event loop (the actor's, or the thread's), and
the ramp runs there as a background task between decision cycles, so thousands of
miners never hold up a decision.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from orchestrator.adapters.asic.driver import MinerDriver, PyasicDriver
from orchestrator.adapters.asic.site import AsicSite, MinerStatus, MinerTarget, StepReport
from orchestrator.models.asic_config import AsicConfig, AsicRange

T = TypeVar("T")

#: Builds the driver inside the actor's process (drivers hold sockets: they do not pickle).
DriverFactory = Callable[[], MinerDriver]


def pyasic_driver(config: AsicConfig) -> DriverFactory:
    timeout = config.io.timeout_s

    def make() -> MinerDriver:
        return PyasicDriver(discovery_timeout_s=timeout)

    return make


class SiteHandle(Protocol):
    name: str

    def refresh(self, timeout_s: float) -> list[MinerStatus]: ...

    def set_targets(self, targets: dict[str, MinerTarget], headroom_w: dict[str, float],
                    timeout_s: float) -> None: ...

    def step(self, timeout_s: float) -> StepReport: ...

    def set_power_target(self, address: str, watts: int, timeout_s: float) -> str | None: ...

    def wait_ready(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


class _SiteHost:
    """An `AsicSite` and its background ramp loop, on whatever event loop runs it."""

    def __init__(self, config: AsicConfig, site_names: list[str], ranges: list[AsicRange],
                 driver: DriverFactory, clock: Callable[[], float] | None = None,
                 auto_ramp: bool = True) -> None:
        kwargs: dict[str, Any] = {"ranges": ranges}
        self.auto_ramp = auto_ramp
        if clock is not None:
            kwargs["clock"] = clock
        self.site = AsicSite(config, site_names, driver(), **kwargs)
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def _ensure_ramp(self) -> None:
        if not self.auto_ramp:
            return
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self.site.run_ramp(self._stop))

    async def refresh(self) -> list[MinerStatus]:
        return await self.site.refresh()

    async def set_targets(self, targets: dict[str, MinerTarget],
                          headroom_w: dict[str, float]) -> None:
        self.site.set_targets(targets, headroom_w)
        self._ensure_ramp()

    async def step(self) -> StepReport:
        report = await self.site.step()
        return replace(report, ramped=self.site.take_ramped())

    async def set_power_target(self, address: str, watts: int) -> str | None:
        return await self.site.set_power_target(address, watts)

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            await self._task


class LocalSiteHandle:
    """The same site host on an event loop thread of this process (no Ray)."""

    def __init__(self, name: str, config: AsicConfig, site_names: list[str],
                 ranges: list[AsicRange], driver: DriverFactory,
                 clock: Callable[[], float] | None = None, auto_ramp: bool = True) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name=f"asic-{name}")
        self.thread.start()
        self.host = _SiteHost(config, site_names, ranges, driver, clock, auto_ramp)

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise TimeoutError(f"ASIC site {self.name}: no answer within {timeout_s:g} s") \
                from exc

    def wait_ready(self, timeout_s: float) -> None:
        return None

    def refresh(self, timeout_s: float) -> list[MinerStatus]:
        return self._run(self.host.refresh(), timeout_s)

    def set_targets(self, targets: dict[str, MinerTarget], headroom_w: dict[str, float],
                    timeout_s: float) -> None:
        self._run(self.host.set_targets(targets, headroom_w), timeout_s)

    def step(self, timeout_s: float) -> StepReport:
        return self._run(self.host.step(), timeout_s)

    def set_power_target(self, address: str, watts: int, timeout_s: float) -> str | None:
        return self._run(self.host.set_power_target(address, watts), timeout_s)

    def close(self) -> None:
        if self.loop.is_running():
            try:
                self._run(self.host.stop(), 30.0)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=30)
        self.loop.close()
