"""The controller: the decision cycle on a cadence, hosted in a restartable Ray actor.

`Controller` is the plain loop (usable without Ray). `ControllerActor` hosts it as a
named actor that Ray restarts after a crash; a restarted controller reads the last
decision from the journal and the fleet from the cluster (or, in a dry-run, from the
simulated-cluster actor, which outlives it), so nothing is decided or applied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray

from orchestrator.backtest.cluster import SimulatedCluster
from orchestrator.engine.plan import Plan
from orchestrator.errors import HashpivotError
from orchestrator.framework.registry import load_policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.models.demand import DemandSnapshot, DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.ports import ActuationResult
from orchestrator.runtime import wiring
from orchestrator.runtime.cycle import CycleOutcome, DecisionCycle
from orchestrator.runtime.journal import JournalError, last_record, read_journal
from orchestrator.runtime.logs import configure_logging, describe_cycle
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
    #: `text` or `json`: how the Ray controller actor (its own process) logs.
    log_format: str = "text"


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
        self.metrics = ControllerMetrics(sites=[site.name for site in config.sites])
        self.health = Health(config.controller.interval_s)
        self._stop = threading.Event()
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
        if options.mode == ControllerMode.LIVE:
            self._node_events()
        self.cycles_run = 0
        self._resume()

    def _node_events(self) -> None:
        """Live only (shadow writes nothing): Events on the nodes each cycle touches, when
        the cluster client can write them."""
        from orchestrator.adapters.k8s.events import NodeEvents

        adapters = self.wiring.extras.get("adapters")
        create = getattr(getattr(adapters, "kube", None), "create_event", None)
        if callable(create):
            elector = getattr(adapters, "elector", None)
            instance = str(getattr(elector, "identity", "") or "hashpivot")
            self.wiring.extras["events"] = NodeEvents(create, instance)

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
        # Counting reads the whole journal: only a run told when to stop needs it, so a
        # controller that runs until stopped starts as fast with any journal size.
        done = self.journaled_cycles() if total_cycles is not None else 0
        live = self.options.mode == ControllerMode.LIVE
        while (total_cycles is None or done < total_cycles) and not self._stop.is_set():
            pause = (self.options.pace_s if self.options.mode == ControllerMode.DRY_RUN
                     else self.config.controller.interval_s)
            leader = self.wiring.is_leader()
            # "May write": only a live leader writes; shadow and dry-run write nothing real.
            self.metrics.leader.set(1.0 if live and leader else 0.0)
            self.health.standby = live and not leader
            self.metrics.deciding.set(1.0 if leader or not live else 0.0)
            if leader or not live:
                try:
                    outcome = self.cycle.run_once()
                except JournalError as exc:
                    # Nothing was acted on (no record, no action). Keep the process: a full
                    # disk is not fixed by a restart. The same decision time is tried again;
                    # liveness fails if the journal stays unwritable.
                    log.error("cycle skipped, the journal cannot be written: %s", exc)
                    self.metrics.cycles.labels("journal_failed").inc()
                    self.health.fail(f"journal cannot be written: {exc}")
                    self._wait(max(pause, JOURNAL_RETRY_S))
                    continue
                except Exception as exc:
                    # Whatever a server, a miner or a policy did, the loop goes on: the
                    # cycle is skipped (nothing was journaled, so nothing was acted on),
                    # readiness says why, and the next interval tries again.
                    log.error("cycle failed, nothing decided: %s: %s", type(exc).__name__,
                              exc, exc_info=log.isEnabledFor(logging.DEBUG))
                    self.metrics.cycles.labels("failed").inc()
                    self.health.fail(f"last cycle failed: {type(exc).__name__}: {exc}")
                    self._wait(max(pause, JOURNAL_RETRY_S))
                    continue
                self.health.beat()
                self.metrics.last_cycle.set(time.time())
                self.cycles_run += 1
                done += 1
                self._report(outcome)
                if self.on_cycle is not None:
                    self.on_cycle(outcome)
            if not self.wiring.advance():
                break
            self._wait(pause)
        return self.status()

    def _report(self, outcome: CycleOutcome) -> None:
        """One INFO line per cycle, warnings for what an operator should look at, and the
        Kubernetes Events of the nodes it touched (when the wiring has an event sink)."""
        site_names = [site.name for site in self.config.sites]
        if outcome.plan is None:  # a whole cycle held: count it under its reason
            held = str(outcome.record.plan.get("held") or "")
            why = "policy_failed" if held.startswith("policy failed") else "market_unusable"
            self.metrics.holds.labels(why).inc()
        message, fields, warnings = describe_cycle(outcome, site_names)
        log.info(message, extra={"cycle": fields})
        rejected = self.metrics.new_rejections
        if rejected:
            warnings.append("feed values rejected: " + ", ".join(
                f"{what} ×{n}" for what, n in sorted(rejected.items())))
            rejected.clear()
        for warning in warnings:
            log.warning("%s: %s", outcome.record.decision_id, warning)
        asic = self.wiring.extras.get("asic")
        if asic is not None:
            self.metrics.observe_miners(asic.states())
            unreadable = [a for a, why in asic.notes().items() if why.startswith("unreadable")]
            if unreadable:
                log.warning("%s: %d miner(s) unreadable, counted at their last known draw: %s",
                            outcome.record.decision_id, len(unreadable),
                            ", ".join(unreadable[:10]))
        events = self.wiring.extras.get("events")
        if events is not None:
            try:
                events.publish(outcome.plan, {c.node: c.text for c in outcome.record.changes})
            except Exception as exc:  # events are for people; a failure must not stop a cycle
                log.warning("node events not written: %s", exc)

    def stop(self) -> None:
        """Ask `run` to return after the cycle in progress (SIGTERM)."""
        self._stop.set()

    def _wait(self, seconds: float) -> None:
        """Sleep until the next cycle; a live leader keeps switches under way moving
        meanwhile (a flip takes several steps, each seconds apart, not cycles apart)."""
        reconcile = getattr(self.wiring.deps.actuator, "reconcile", None)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, RECONCILE_EVERY_S)):
                return
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

    def pending_summary(self, now_s: float) -> DemandSummary:
        result: DemandSummary = ray.get(self.handle.pending_summary.remote(now_s))
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

    def pending_summary(self, now_s: float) -> DemandSummary:
        return self.cluster.pending_summary(now_s)

    def apply(self, plan: Plan) -> ActuationResult:
        return self.cluster.apply(plan)

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


def journal_path(options: RunOptions) -> Path:
    return Path(options.journal_dir)
