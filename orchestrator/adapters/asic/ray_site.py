"""A site's miners in a Ray actor: the same site host as `LocalSiteHandle`, on the
actor's event loop. Imported only when `asic.use_ray` is on, so a controller run without
Ray never loads it."""

from __future__ import annotations

import contextlib
from typing import Any

import ray

from orchestrator.adapters.asic.actor import DriverFactory, _SiteHost
from orchestrator.adapters.asic.site import MinerStatus, MinerTarget, StepReport
from orchestrator.models.asic_config import AsicConfig, AsicRange


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class AsicSiteActor:
    """One site's miners in a Ray actor (async: calls interleave on its event loop)."""

    def __init__(self, config: AsicConfig, site_names: list[str], ranges: list[AsicRange],
                 driver: DriverFactory) -> None:
        self.host = _SiteHost(config, site_names, ranges, driver)

    async def refresh(self) -> list[MinerStatus]:
        return await self.host.refresh()

    async def set_targets(self, targets: dict[str, MinerTarget],
                          headroom_w: dict[str, float]) -> None:
        await self.host.set_targets(targets, headroom_w)

    async def step(self) -> StepReport:
        return await self.host.step()

    async def set_power_target(self, address: str, watts: int) -> str | None:
        return await self.host.set_power_target(address, watts)

    async def stop(self) -> None:
        await self.host.stop()

    async def ping(self) -> bool:
        return True


class RaySiteHandle:
    def __init__(self, name: str, config: AsicConfig, site_names: list[str],
                 ranges: list[AsicRange], driver: DriverFactory) -> None:
        self.name = name
        self.actor = AsicSiteActor.options(  # type: ignore[attr-defined]
            max_concurrency=64).remote(config, site_names, ranges, driver)

    def _get(self, ref: Any, timeout_s: float) -> Any:
        try:
            return ray.get(ref, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError as exc:
            ray.cancel(ref)
            raise TimeoutError(f"ASIC site {self.name}: no answer within {timeout_s:g} s") \
                from exc

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the actor is up (its process and imports take seconds)."""
        self._get(self.actor.ping.remote(), timeout_s)

    def refresh(self, timeout_s: float) -> list[MinerStatus]:
        result: list[MinerStatus] = self._get(self.actor.refresh.remote(), timeout_s)
        return result

    def set_targets(self, targets: dict[str, MinerTarget], headroom_w: dict[str, float],
                    timeout_s: float) -> None:
        self._get(self.actor.set_targets.remote(targets, headroom_w), timeout_s)

    def step(self, timeout_s: float) -> StepReport:
        result: StepReport = self._get(self.actor.step.remote(), timeout_s)
        return result

    def set_power_target(self, address: str, watts: int, timeout_s: float) -> str | None:
        result: str | None = self._get(self.actor.set_power_target.remote(address, watts),
                                       timeout_s)
        return result

    def close(self) -> None:
        # Closing must not raise: the actor may already be gone.
        with contextlib.suppress(Exception):
            ray.get(self.actor.stop.remote(), timeout=30)
        ray.kill(self.actor)
