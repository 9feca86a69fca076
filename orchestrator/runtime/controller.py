"""The controller: the decision cycle on a cadence, hosted in a restartable Ray actor.

`Controller` is the plain loop (usable without Ray). `ControllerActor` hosts it as a
named actor that Ray restarts after a crash; a restarted controller reads the last
decision from the journal and the fleet from the cluster (or, in a dry-run, from the
simulated-cluster actor, which outlives it), so nothing is decided or applied twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray

from orchestrator.backtest.cluster import SimulatedCluster
from orchestrator.engine.plan import Plan
from orchestrator.framework.registry import load_policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.fleet import FleetTable
from orchestrator.ports import ActuationResult
from orchestrator.runtime import wiring
from orchestrator.runtime.cycle import CycleOutcome, DecisionCycle
from orchestrator.runtime.journal import JournalError, last_record, read_journal
from orchestrator.runtime.metrics import ControllerMetrics, Health, MetricsServer

log = logging.getLogger("hashpivot.controller")

ACTOR_NAME = "hashpivot-controller"
RECONCILE_EVERY_S = 5.0
RAY_NAMESPACE = "hashpivot"
#: Least wait before a cycle whose journal write failed is tried again, s.
JOURNAL_RETRY_S = 1.0


@dataclass(frozen=True)
class RunOptions:
    mode: ControllerMode
    journal_dir: str
    metrics_port: int | None = None
    kubeconfig: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    #: Seconds to wait between dry-run cycles (0: as fast as possible).
    pace_s: float = 0.0


class Controller:
    """The decision loop of one replica."""

    def __init__(
        self,
        config: HashpivotConfig,
        options: RunOptions,
        *,
        cluster: Any = None,
        on_cycle: Callable[[CycleOutcome], None] | None = None,
        api: Any = None,
        clock: Any = None,
    ):
        """`api` (a Kubernetes ApiClient) and `clock` replace the defaults built from
        the kubeconfig and the wall clock: tests count API calls and pin market time."""
        self.config = config
        self.options = options
        self.on_cycle = on_cycle
        self.policy = load_policy(config.policy.name, config.policy.params)
        self.journal = wiring.journal_for(config, options.journal_dir)
        self.metrics = ControllerMetrics()
        self.health = Health(config.controller.interval_s)
        self.server: MetricsServer | None = None
        if options.metrics_port is not None:
            self.server = MetricsServer(self.metrics, self.health, options.metrics_port).start()
        if options.mode == ControllerMode.DRY_RUN:
            # A cluster actor, when given, outlives this controller.
            self.wiring = wiring.dry_run(
                config, self.policy, self.journal, self.metrics, start=options.start,
                end=options.end, cluster=None if cluster is None else ClusterProxy(cluster),
            )
        else:
            self.wiring = wiring.kubernetes(config, options.mode, self.journal, self.metrics,
                                            kubeconfig=options.kubeconfig, api=api, clock=clock)
        self.cycle = DecisionCycle(config, options.mode.value, self.policy, self.wiring.deps)
        self.cycles_run = 0
        self._resume()

    def _resume(self) -> None:
        """Continue after the last journaled decision (a restart, or a second run)."""
        last = last_record(self.journal.folder)
        if last is not None:
            self.wiring.resume_after(last.now_s)
            log.info("resuming after decision %s", last.decision_id)

    def journaled_cycles(self) -> int:
        return sum(1 for _ in read_journal(self.journal.folder))

    def run(self, total_cycles: int | None = None) -> dict[str, Any]:
        """Run until the journal holds `total_cycles` cycles (None: until stopped, or the
        end of a dry-run's recording). Idempotent: a retried call does not redo cycles."""
        done = self.journaled_cycles()
        while total_cycles is None or done < total_cycles:
            pause = (self.options.pace_s if self.options.mode == ControllerMode.DRY_RUN
                     else self.config.controller.interval_s)
            if self.wiring.is_leader() or self.options.mode != ControllerMode.LIVE:
                try:
                    outcome = self.cycle.run_once()
                except JournalError as exc:
                    # Nothing was acted on (no record, no action). Keep the process: a full
                    # disk is not fixed by a restart. The same decision time is tried again;
                    # liveness fails if the journal stays unwritable.
                    log.error("cycle skipped, the journal cannot be written: %s", exc)
                    self.metrics.cycles.labels("journal_failed").inc()
                    self._wait(max(pause, JOURNAL_RETRY_S))
                    continue
                self.health.beat()
                self.metrics.last_cycle.set(time.time())
                self.cycles_run += 1
                done += 1
                if self.on_cycle is not None:
                    self.on_cycle(outcome)
            self.metrics.leader.set(1.0 if self.wiring.is_leader() else 0.0)
            if not self.wiring.advance():
                break
            self._wait(pause)
        return self.status()

    def _wait(self, seconds: float) -> None:
        """Sleep until the next cycle; a live leader keeps switches under way moving
        meanwhile (a flip takes several steps, each seconds apart, not cycles apart)."""
        reconcile = getattr(self.wiring.deps.actuator, "reconcile", None)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, RECONCILE_EVERY_S))
            live = self.options.mode == ControllerMode.LIVE
            if live and callable(reconcile) and self.wiring.is_leader():
                reconcile()

    def status(self) -> dict[str, Any]:
        last = last_record(self.journal.folder)
        out: dict[str, Any] = {
            "mode": self.options.mode.value,
            "cycles_this_process": self.cycles_run,
            "journal": str(self.journal.folder),
            "last_decision": None if last is None else last.decision_id,
            "last_plan": None if last is None else last.plan,
        }
        cluster = self.wiring.extras.get("cluster")
        if isinstance(cluster, SimulatedCluster | ClusterProxy):
            out["ledger"] = cluster.totals()
        if self.server is not None:
            out["metrics_port"] = self.server.port
        return out

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.wiring.close()


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

    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        result: ActuationResult = ray.get(self.handle.apply.remote(plan))
        return result

    def totals(self) -> dict[str, float]:
        result: dict[str, float] = ray.get(self.handle.totals.remote())
        return result


@ray.remote(num_cpus=0)
class SimulatedClusterActor:
    """The dry-run's simulated site, in its own actor so it survives controller restarts."""

    def __init__(self, config: HashpivotConfig, start: datetime | None, end: datetime | None):
        from orchestrator.backtest.runner import prepare_backtest

        policy = load_policy(config.policy.name, config.policy.params)
        inputs = prepare_backtest(config, start=start, end=end,
                                  needs_history=policy.uses_history)
        self.cluster = SimulatedCluster(inputs)

    def fleet(self, now_s: float) -> FleetTable:
        return self.cluster.fleet(now_s)

    def demand(self, now_s: float) -> DemandSnapshot:
        return self.cluster.demand(now_s)

    def apply(self, plan: Plan) -> ActuationResult:
        return self.cluster.apply(plan)

    def totals(self) -> dict[str, float]:
        return self.cluster.totals()

    def applied(self) -> list[str]:
        return sorted(self.cluster.applied)


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class ControllerActor:
    """The controller loop in a named, restartable actor."""

    def __init__(self, config: HashpivotConfig, options: RunOptions, cluster: Any = None):
        self.controller = Controller(config, options, cluster=cluster)

    def run(self, total_cycles: int | None) -> dict[str, Any]:
        return self.controller.run(total_cycles)

    def status(self) -> dict[str, Any]:
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


def journal_path(options: RunOptions) -> Path:
    return Path(options.journal_dir)
