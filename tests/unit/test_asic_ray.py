"""ASIC site actors on a local Ray: fan-out, background ramp, a late site reported."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray")

from orchestrator.adapters.asic.service import AsicFleet  # noqa: E402
from orchestrator.adapters.asic.site import MinerTarget  # noqa: E402
from orchestrator.models import Mode, Site  # noqa: E402
from orchestrator.models.config import HashpivotConfig  # noqa: E402
from tests.doubles.asic import SimulatedDriver, sim_miner  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _config(**asic: object) -> HashpivotConfig:
    return HashpivotConfig(
        sites=[Site(name="north", power_cap_kw=500), Site(name="south", power_cap_kw=500)],
        asic={"ranges": [{"addresses": ["10.2.0.1-10.2.0.20"], "site": "north"},
                         {"addresses": ["10.3.0.1-10.3.0.20"], "site": "south"}],
              "ramp": {"max_miners_per_window": 5, "window_s": 0.5, "step_s": 0.1},
              **asic},
    )


def _driver(latency_s: float = 0.0, north_latency_s: float | None = None):
    def make() -> SimulatedDriver:
        miners = [sim_miner(f"10.2.0.{k}", "s19-xp") for k in range(1, 21)]
        miners += [sim_miner(f"10.3.0.{k}", "s21") for k in range(1, 21)]
        return SimulatedDriver(miners, latency_s=latency_s)

    return make


def test_one_actor_per_site_reads_and_ramps_in_the_background(local_ray: None) -> None:
    asic = AsicFleet.from_config(_config(), driver=_driver(), use_ray=True)
    try:
        view = asic.refresh()
        assert view.fleet.n == 40
        assert {h.name for h in asic.handles} == {"north", "south"}
        north = {a: MinerTarget(mine=False, priority=0.1, delta_w=3000.0)
                 for a in [f"10.2.0.{k}" for k in range(1, 21)]}
        handle = next(h for h in asic.handles if h.name == "north")
        handle.set_targets(north, {"north": 1e9}, 30.0)
        # The actor's own loop keeps stepping (5 miners per 0.5 s window) until done.
        for _ in range(600):
            fleet = asic.refresh().fleet
            if (fleet.mode[fleet.site == 0] == Mode.IDLE).all():
                break
            time.sleep(0.05)
        assert (fleet.mode[fleet.site == 0] == Mode.IDLE).all()
        assert (fleet.mode[fleet.site == 1] == Mode.MINE).all()
    finally:
        asic.close()


def test_a_late_site_keeps_its_last_readings_and_is_reported(local_ray: None) -> None:
    config = _config(io={"read_timeout_s": 0.5})
    asic = AsicFleet.from_config(config, driver=_driver(latency_s=0.0), use_ray=True)
    try:
        first = asic.refresh().fleet
        assert first.n == 40 and not asic.site_errors
        slow = AsicFleet.from_config(config, driver=_driver(latency_s=2.0), use_ray=True)
        try:
            slow.statuses = dict(asic.statuses)  # what it read before it became slow
            view = slow.refresh()
            assert set(slow.site_errors) == {"north", "south"}
            assert "no answer" in slow.site_errors["north"]
            assert view.fleet.n == 40  # the previous readings, not an empty site
        finally:
            slow.close()
    finally:
        asic.close()
