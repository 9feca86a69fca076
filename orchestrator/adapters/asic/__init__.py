"""ASIC miners on the fleet and actuator ports, through pyasic (docs/asic.md).

- readings.py: `MinerReading` and the model → hardware profile mapping (pure).
- driver.py: the `MinerDriver` port and `PyasicDriver`.
- ramp.py: `plan_ramp_step` (pure) and the trailing-window budget.
- site.py: `AsicSite`, the asyncio fan-out of one site: timeouts, retries, bounded
  concurrency, command verification, ramp steps.
- fleet.py: miners as fleet rows, joined with GPU nodes; plans back to miner targets.
- actor.py: the in-process `LocalSiteHandle`; ray_site.py: `AsicSiteActor` (Ray),
  loaded only when `asic.use_ray` is on.
- service.py: `AsicFleet`, `MixedFleetSource`, `RoutingActuator`, `build_mixed`.

Importing this package does not import Ray or pyasic; the modules that need them do.
The socket-free driver the tests and benchmarks use (`SimulatedDriver`) lives in
`tests/doubles`.
"""

from orchestrator.adapters.asic.fleet import (
    AsicFleetView,
    asic_fleet,
    concat_fleets,
    miner_targets,
    plan_subset,
)
from orchestrator.adapters.asic.ramp import RampStep, RampWindow, plan_ramp_step
from orchestrator.adapters.asic.readings import MinerReading, profile_for_model
from orchestrator.adapters.asic.site import (
    AsicSite,
    MinerIOError,
    MinerStatus,
    MinerTarget,
    StepReport,
)

__all__ = [
    "AsicFleetView",
    "AsicSite",
    "MinerIOError",
    "MinerReading",
    "MinerStatus",
    "MinerTarget",
    "RampStep",
    "RampWindow",
    "StepReport",
    "asic_fleet",
    "concat_fleets",
    "miner_targets",
    "plan_ramp_step",
    "plan_subset",
    "profile_for_model",
]
