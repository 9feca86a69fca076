"""The composition root: which adapter stands behind each port, by mode.

| port     | live                 | shadow               | dry-run                  |
|----------|----------------------|----------------------|--------------------------|
| clock    | wall                 | wall                 | replay (recorded grid)   |
| market   | live feeds           | live feeds           | recorded files           |
| demand   | pending GPU pods     | pending GPU pods     | recorded job trace       |
| fleet    | K8s nodes            | K8s nodes            | simulated site           |
| actuator | K8s (leader only)    | records, writes none | simulated site           |
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.backtest.cluster import ReplayClock, SimulatedCluster
from orchestrator.backtest.runner import prepare_backtest
from orchestrator.errors import ConfigError
from orchestrator.framework.policy import Policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.ports import Actuator, Clock
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
    inputs = prepare_backtest(config, start=start, end=end, needs_history=policy.uses_history)
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
    taking a Lease is a write, and shadow writes nothing)."""
    from orchestrator.adapters.k8s.freeze import FreezableActuator, kill_switch
    from orchestrator.adapters.k8s.wiring import build_adapters
    from orchestrator.adapters.market.live import LiveMarketSource

    if mode != config.controller.mode:
        config = config.model_copy(
            update={"controller": config.controller.model_copy(update={"mode": mode})}
        )
    adapters = build_adapters(config, api=api, kubeconfig=kubeconfig)
    if not adapters.start(sync_timeout_s=60.0):
        adapters.stop()
        raise ConfigError("could not list nodes and pods from the cluster within 60 s")
    market = LiveMarketSource.from_config(config.live_market)
    freeze = kill_switch(adapters.kube, config.kubernetes.namespace)
    actuator: Actuator = adapters.actuator if freeze is None else FreezableActuator(
        adapters.actuator, freeze)
    deps = CycleDeps(clock=clock or WallClock(), market=market, demand=adapters.demand,
                     fleet=adapters.fleet, actuator=actuator, journal=journal,
                     metrics=metrics, feed_rejections=market.rejection_counts, freeze=freeze,
                     memory=StepMemoryStore(journal.folder))

    def close() -> None:
        adapters.stop()
        market.close()

    def is_leader() -> bool:
        return mode != ControllerMode.LIVE or adapters.is_leader()

    return Wiring(deps, lambda: True, lambda _t: None, is_leader, close,
                  {"adapters": adapters})


def journal_for(config: HashpivotConfig, folder: str | Path | None = None) -> JsonlJournal:
    return JsonlJournal(folder or config.controller.journal_dir,
                        max_bytes=config.controller.journal_max_bytes)
