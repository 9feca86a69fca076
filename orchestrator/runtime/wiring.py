"""The composition root: which adapter stands behind each port, by mode.

| port     | live                 | shadow               | dry-run                  |
|----------|----------------------|----------------------|--------------------------|
| clock    | wall                 | wall                 | replay (recorded grid)   |
| market   | live feeds           | live feeds           | recorded files           |
| demand   | pending GPU pods     | pending GPU pods     | recorded job trace       |
| fleet    | K8s nodes + miners   | K8s nodes + miners   | simulated site           |
| actuator | K8s (leader only) +  | records, writes none,| simulated site           |
|          | miners (ramped)      | commands no miner    |                          |

Miners come from the `asic` section (pyasic, per-site loops); a config with miners and no
`kubernetes` section runs on the miners alone. Every mode decides through the same
decision step (`engine.step`), called by `runtime.cycle`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.backtest.cluster import ReplayClock, SimulatedCluster
from orchestrator.backtest.runner import prepare_backtest
from orchestrator.errors import ConfigError
from orchestrator.framework.policy import Policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.models.demand import DemandSnapshot
from orchestrator.ports import ActuationResult, Actuator, Clock, FleetSource
from orchestrator.runtime.cycle import CycleDeps
from orchestrator.runtime.journal import JsonlJournal, StepMemoryStore
from orchestrator.runtime.metrics import ControllerMetrics

log = logging.getLogger("hashpivot.runtime")


class WallClock:
    def now_s(self) -> float:
        return time.time()


@dataclass
class Wiring:
    """The adapters of one controller and how to advance and close them."""

    deps: CycleDeps
    #: Advance to the next cycle; False when there is nothing more (a dry-run's end).
    advance: Callable[[], bool]
    #: Continue after this time (a restart resuming from the journal).
    resume_after: Callable[[float], None]
    #: True when this replica may act (always, except a live standby).
    is_leader: Callable[[], bool]
    close: Callable[[], None]
    extras: dict[str, Any] = field(default_factory=dict)


def dry_run(
    config: HashpivotConfig,
    policy: Policy,
    journal: JsonlJournal,
    metrics: ControllerMetrics | None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    cluster: Any = None,
) -> Wiring:
    """Recorded market, replay clock and the simulated site (`cluster`: ports of one that
    lives elsewhere, e.g. in its own Ray actor)."""
    inputs = prepare_backtest(config, start=start, end=end,
                              needs_history=policy.uses_history or config.scoring.nowcasts_power)
    from orchestrator.backtest.recorded import RecordedMarketSource
    from orchestrator.models.config import base_dir

    assert config.market is not None  # prepare_backtest checked
    market = RecordedMarketSource(config.market, base_dir(config), inputs.fleet)
    if cluster is None:
        cluster = SimulatedCluster(inputs)
    clock = ReplayClock(inputs.times)
    deps = CycleDeps(clock=clock, market=market, demand=cluster, fleet=cluster,
                     actuator=cluster, journal=journal, metrics=metrics,
                     memory=StepMemoryStore(journal.folder))
    return Wiring(deps, clock.advance, clock.seek, lambda: True, lambda: None,
                  {"cluster": cluster, "clock": clock})


def kubernetes(
    config: HashpivotConfig,
    mode: ControllerMode,
    journal: JsonlJournal,
    metrics: ControllerMetrics | None,
    *,
    kubeconfig: str | None = None,
    api: Any = None,
    clock: Clock | None = None,
) -> Wiring:
    """Live or shadow: watched nodes and pods, live feeds, leader election (live only:
    taking a Lease is a write, and shadow writes nothing). With an `asic` section the
    miners join the same fleet table and cap; a site with miners and no `kubernetes`
    section runs on the miners alone."""
    if mode != config.controller.mode:
        config = config.model_copy(
            update={"controller": config.controller.model_copy(update={"mode": mode})}
        )
    if config.asic is not None and "kubernetes" not in config.model_fields_set:
        return _miners_only(config, mode, journal, metrics, clock=clock)

    from orchestrator.adapters.k8s.freeze import FreezableActuator, kill_switch
    from orchestrator.adapters.k8s.wiring import build_adapters
    from orchestrator.adapters.market.live import LiveMarketSource

    adapters = build_adapters(config, api=api, kubeconfig=kubeconfig)
    if not adapters.start(sync_timeout_s=60.0):
        adapters.stop()
        raise ConfigError("could not list nodes and pods from the cluster within 60 s")
    fleet: FleetSource = adapters.fleet
    freeze = kill_switch(adapters.kube, config.kubernetes.namespace)
    actuator: Actuator = adapters.actuator if freeze is None else FreezableActuator(
        adapters.actuator, freeze)
    asic = None
    if config.asic is not None:
        from orchestrator.adapters.asic.service import build_mixed

        try:
            fleet, actuator, asic = build_mixed(config, fleet, actuator,
                                                shadow=mode != ControllerMode.LIVE,
                                                use_ray=_asic_on_ray(config))
        except Exception:
            adapters.stop()
            raise
    fleet = _with_telemetry(config, fleet)
    market = LiveMarketSource.from_config(config.live_market)
    deps = CycleDeps(clock=clock or WallClock(), market=market, demand=adapters.demand,
                     fleet=fleet, actuator=actuator, journal=journal,
                     metrics=metrics, feed_rejections=market.rejection_counts, freeze=freeze,
                     memory=StepMemoryStore(journal.folder))

    def close() -> None:
        adapters.stop()
        market.close()
        if asic is not None:
            asic.close()

    def is_leader() -> bool:
        return mode != ControllerMode.LIVE or adapters.is_leader()

    return Wiring(deps, lambda: True, lambda _t: None, is_leader, close,
                  {"adapters": adapters, "asic": asic})


def _with_telemetry(config: HashpivotConfig, fleet: FleetSource) -> FleetSource:
    """`telemetry.enabled`: the GPU nodes' watts as their NVML agents measure them. The
    agents are Ray actors, so this needs the controller under Ray; without Ray, or where
    a node has no NVML, the nameplate watts stay (and the log says why)."""
    if not config.telemetry.enabled:
        return fleet
    if not _ray_running():
        log.warning("telemetry: enabled but the controller runs without Ray (--no-ray): GPU "
                    "power stays at nameplate values")
        return fleet
    from orchestrator.adapters.telemetry.agent import TelemetryCollector, spawn_gpu_agents
    from orchestrator.adapters.telemetry.apply import MeasuredFleetSource

    agents = spawn_gpu_agents(resource=config.telemetry.resource)
    if not agents:
        return fleet  # spawn_gpu_agents logged why
    log.info("telemetry: %d NVML agent(s) on Ray nodes offering %r", len(agents),
             config.telemetry.resource)
    return MeasuredFleetSource(fleet, TelemetryCollector(agents,
                                                         timeout_s=config.telemetry.timeout_s))


class NoPendingJobs:
    """`DemandSource` of a site without Kubernetes: no AI jobs wait anywhere."""

    def demand(self, now_s: float) -> DemandSnapshot:
        return DemandSnapshot(source="none: no kubernetes section",
                              observed_at=datetime.fromtimestamp(now_s, UTC))


class NoNodes:
    """`Actuator` for the (absent) Kubernetes nodes of a site with miners only."""

    def apply(self, plan: Any, fleet: Any) -> ActuationResult:
        return ActuationResult()


def _asic_on_ray(config: HashpivotConfig) -> bool:
    """Miners' site loops as Ray actors when the config asks and Ray runs (`hashpivot run`
    hosts the controller in Ray by default); in-process loops otherwise."""
    return bool(config.asic is not None and config.asic.use_ray and _ray_running())


def _ray_running() -> bool:
    """Whether this process is part of a Ray session. A process that never imported Ray
    is not, and asking must not import it (`--no-ray` starts without Ray)."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def _miners_only(
    config: HashpivotConfig,
    mode: ControllerMode,
    journal: JsonlJournal,
    metrics: ControllerMetrics | None,
    *,
    clock: Clock | None,
) -> Wiring:
    """A mining hall without Kubernetes: miners read and curtailed through their firmware,
    live feeds, no AI demand. One replica (there is no Lease to elect a leader with)."""
    from orchestrator.adapters.asic.service import AsicFleet, RoutingActuator
    from orchestrator.adapters.market.live import LiveMarketSource

    asic = AsicFleet.from_config(config, use_ray=_asic_on_ray(config))
    try:
        market = LiveMarketSource.from_config(config.live_market)
    except Exception:
        asic.close()
        raise
    # Shadow reads and plans; the routing actuator reports what miners would be told.
    actuator = RoutingActuator(NoNodes(), asic, shadow=mode != ControllerMode.LIVE)
    deps = CycleDeps(clock=clock or WallClock(), market=market, demand=NoPendingJobs(),
                     fleet=asic, actuator=actuator, journal=journal, metrics=metrics,
                     feed_rejections=market.rejection_counts,
                     memory=StepMemoryStore(journal.folder))

    def close() -> None:
        asic.close()
        market.close()

    return Wiring(deps, lambda: True, lambda _t: None, lambda: True, close, {"asic": asic})


def journal_for(config: HashpivotConfig, folder: str | Path | None = None) -> JsonlJournal:
    return JsonlJournal(folder or config.controller.journal_dir,
                        max_bytes=config.controller.journal_max_bytes)
