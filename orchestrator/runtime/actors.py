"""The controller hosted in Ray: a named, restartable controller actor and the dry-run's
simulated site in an actor of its own, which outlives controller restarts.

Only `hashpivot run --ray` (the default) imports this module, so a `--no-ray` controller
starts without loading Ray.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import ray

from orchestrator.backtest.cluster import SimulatedCluster
from orchestrator.backtest.sim import Ledger
from orchestrator.engine.plan import Plan
from orchestrator.errors import HashpivotError
from orchestrator.framework.registry import load_policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.models.demand import DemandSnapshot, DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.ports import ActuationResult
from orchestrator.runtime.controller import ACTOR_NAME, RAY_NAMESPACE, Controller, RunOptions
from orchestrator.runtime.logs import configure_logging


class ClusterProxy:
    """Fleet, demand and actuator ports over a `SimulatedClusterActor`."""

    def __init__(self, handle: Any):
        self.handle = handle

    def fleet(self, now_s: float) -> FleetTable:
        result: FleetTable = ray.get(self.handle.fleet.remote(now_s))
        return result

    def demand(self, now_s: float) -> DemandSnapshot:
        result: DemandSnapshot = ray.get(self.handle.demand.remote(now_s))
        return result

    def pending_summary(self, now_s: float) -> DemandSummary:
        result: DemandSummary = ray.get(self.handle.pending_summary.remote(now_s))
        return result

    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        result: ActuationResult = ray.get(self.handle.apply.remote(plan))
        return result

    def hear_grid(self, books: dict[str, Any] | None) -> None:
        ray.get(self.handle.hear_grid.remote(books))

    @property
    def ledger(self) -> Ledger:
        result: Ledger = ray.get(self.handle.ledger.remote())
        return result

    def totals(self) -> dict[str, float]:
        result: dict[str, float] = ray.get(self.handle.totals.remote())
        return result

    def plans_applied(self) -> int:
        return len(ray.get(self.handle.applied.remote()))


@ray.remote(num_cpus=0)
class SimulatedClusterActor:
    """The dry-run's simulated site, in its own actor so it survives controller restarts."""

    def __init__(self, config: HashpivotConfig, start: datetime | None, end: datetime | None):
        from orchestrator.backtest.runner import prepare_backtest

        policy = load_policy(config.policy.name, config.policy.params)
        inputs = prepare_backtest(config, start=start, end=end,
                                  needs_history=policy.uses_history
                                  or config.scoring.nowcasts_power)
        self.cluster = SimulatedCluster(inputs)

    def fleet(self, now_s: float) -> FleetTable:
        return self.cluster.fleet(now_s)

    def demand(self, now_s: float) -> DemandSnapshot:
        return self.cluster.demand(now_s)

    def pending_summary(self, now_s: float) -> DemandSummary:
        return self.cluster.pending_summary(now_s)

    def apply(self, plan: Plan) -> ActuationResult:
        return self.cluster.apply(plan)

    def hear_grid(self, books: dict[str, Any] | None) -> None:
        self.cluster.hear_grid(books)

    def ledger(self) -> Ledger:
        return self.cluster.ledger

    def totals(self) -> dict[str, float]:
        return self.cluster.totals()

    def applied(self) -> list[str]:
        return sorted(self.cluster.applied)


@ray.remote(  # type: ignore[call-overload]  # the stubs omit actors' max_concurrency
    max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=2)
class ControllerActor:
    """The controller loop in a named, restartable actor. Two calls may run at once, so
    `stop()` reaches a controller busy in `run()`."""

    def __init__(self, config: HashpivotConfig, options: RunOptions, cluster: Any = None):
        # Its own process: log the same way as the command that started it; Ray forwards
        # the lines to the command's output (and so to the pod log).
        configure_logging(options.log_format)
        self.controller: Controller | None = None
        self.startup_error: str | None = None
        try:
            self.controller = Controller(config, options, cluster=cluster)
        except HashpivotError as exc:
            # A user's error (credentials, server address, config): Ray would restart the
            # actor forever and print each failure; keep it for `run` to report once.
            self.startup_error = str(exc)

    def run(self, total_cycles: int | None) -> dict[str, Any]:
        """The controller's final status, or `{"startup_error": why}`."""
        if self.controller is None:
            return {"startup_error": self.startup_error}
        status = self.controller.run(total_cycles)
        if self.controller._stop.is_set():
            self.controller.close()  # hands the Lease over before the process goes
        return status

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    def status(self) -> dict[str, Any]:
        if self.controller is None:
            return {"startup_error": self.startup_error}
        return self.controller.status()

    def pid(self) -> int:
        import os

        return os.getpid()


def start_actors(config: HashpivotConfig, options: RunOptions) -> tuple[Any, Any]:
    """Create the controller actor (and, for a dry-run, the simulated cluster actor)."""
    cluster = None
    if options.mode == ControllerMode.DRY_RUN:
        cluster = SimulatedClusterActor.remote(config, options.start, options.end)  # type: ignore[attr-defined]
    actor = ControllerActor.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME, namespace=RAY_NAMESPACE, get_if_exists=False
    ).remote(config, options, cluster)
    return actor, cluster
