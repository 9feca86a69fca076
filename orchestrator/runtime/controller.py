"""The controller: the decision cycle on a cadence, hosted in a restartable Ray actor.

`Controller` is the plain loop (usable without Ray, which this module never imports:
`hashpivot run --no-ray` starts without it). `ControllerActor`
(`orchestrator.runtime.actors`) hosts it as a named actor that Ray restarts after a
crash; a restarted controller reads the last decision from the journal and the fleet from
the cluster (or, in a dry-run, from the simulated-cluster actor, which outlives it), so
nothing is decided or applied twice.
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

from orchestrator.framework.registry import load_policy
from orchestrator.models.config import ControllerMode, HashpivotConfig
from orchestrator.runtime import wiring
from orchestrator.runtime.cycle import CycleOutcome, DecisionCycle
from orchestrator.runtime.journal import JournalError, last_record, read_journal
from orchestrator.runtime.logs import describe_cycle
from orchestrator.runtime.metrics import ControllerMetrics, Health, MetricsServer

log = logging.getLogger("hashpivot.controller")

ACTOR_NAME = "hashpivot-controller"
RECONCILE_EVERY_S = 5.0
RAY_NAMESPACE = "hashpivot"
#: A dry-run's simulated ledger, written in its journal folder when the run ends.
LEDGER_FILE = "ledger.csv"
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
            proxy = None
            if cluster is not None:  # a cluster actor, which outlives this controller
                from orchestrator.runtime.actors import ClusterProxy

                proxy = ClusterProxy(cluster)
            self.wiring = wiring.dry_run(
                config, self.policy, self.journal, self.metrics, start=options.start,
                end=options.end, cluster=proxy,
            )
        else:
            self.wiring = wiring.kubernetes(config, options.mode, self.journal, self.metrics,
                                            kubeconfig=options.kubeconfig, api=api, clock=clock)
        self.cycle = DecisionCycle(config, options.mode.value, self.policy, self.wiring.deps)
        if options.mode == ControllerMode.LIVE:
            self._node_events()
        self._grid_webhook()
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

    def _grid_webhook(self) -> None:
        """Serve the grid webhook on the controller's HTTP port, and acknowledge grid
        events as Kubernetes Events where the controller writes them."""
        grid = self.cycle.grid
        if grid is None:
            return
        events = self.wiring.extras.get("events")
        if events is not None:
            grid.event_sink = self._grid_event_sink(events)
        if not grid.webhook_sites:
            return
        if self.server is None:
            log.warning("grid webhook configured but the controller serves no HTTP port "
                        "(metrics_port): webhook messages cannot arrive")
            return
        from orchestrator.runtime.grid import WEBHOOK_PATH

        self.server.routes[WEBHOOK_PATH] = (grid.webhook, grid.max_bytes)
        log.info("grid webhook listening on port %d, POST %s", self.server.port, WEBHOOK_PATH)

    def _grid_event_sink(self, events: Any) -> Callable[[str, str], None]:
        """A grid acknowledgement as a Kubernetes Event about the controller's namespace
        (cluster-scoped, so the Event goes where the node Events go)."""
        from orchestrator.adapters.k8s.events import EVENTS_NAMESPACE

        namespace = self.config.kubernetes.namespace

        def sink(reason: str, note: str) -> None:
            decision = note.rsplit("(decision ", 1)[-1].rstrip(")")
            body = events.body(namespace, reason, "Normal", note, decision)
            body["action"] = "Acknowledge"
            body["metadata"]["generateName"] = "hashpivot-grid-"
            body["regarding"] = {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
            events.create(EVENTS_NAMESPACE, body)

        return sink

    def _resume(self) -> None:
        """Continue after the last journaled decision (a restart, or a second run)."""
        last = last_record(self.journal.folder)
        if last is None:
            return
        site = self.wiring.extras.get("cluster")
        if site is not None and not site.plans_applied():
            # A dry-run's simulated site lives in memory: the controller's memory resumes
            # (switch history, policy state, grid events), the site starts from the config.
            log.warning("the journal holds a dry-run up to %s, and its simulated site went "
                        "with the process that ran it: this run's site starts again from the "
                        "config (its fleet, queue and ledger.csv do not carry the journaled "
                        "cycles; a new --journal folder starts clean)", last.decision_id)
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
            if live and not leader:
                self.health.standing_by()
            else:
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
                    # cycle is skipped (it failed before its plan was journaled; an
                    # actuator failing after that ends the cycle with the error in its
                    # result), readiness says why, and the next interval tries again.
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
        self._write_ledger()
        return self.status()

    def _write_ledger(self) -> None:
        """A dry-run leaves its simulated site's ledger beside the journal, in the
        backtest's columns (`ledger.csv`), so it compares with a backtest or a replay."""
        if self.options.mode != ControllerMode.DRY_RUN:
            return
        ledger = getattr(self.wiring.extras.get("cluster"), "ledger", None)
        if ledger is None:
            return
        from orchestrator.backtest.ledger_csv import write_ledgers_csv

        path = self.journal.folder / LEDGER_FILE
        try:
            write_ledgers_csv([(self.policy.name or self.config.policy.name, False, ledger)],
                              path)
        except OSError as exc:
            log.error("dry-run ledger not written to %s: %s", path, exc.strerror)

    def _report(self, outcome: CycleOutcome) -> None:
        """One INFO line per cycle, warnings for what an operator should look at, and the
        Kubernetes Events of the nodes it touched (when the wiring has an event sink)."""
        site_names = [site.name for site in self.config.sites]
        held = str(outcome.record.plan.get("held") or "")
        if held:  # a whole cycle held: count it under its reason
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
        # A dry-run's simulated site (in process or in its actor) keeps the ledger.
        totals = getattr(self.wiring.extras.get("cluster"), "totals", None)
        if callable(totals):
            out["ledger"] = totals()
        if self.server is not None:
            out["metrics_port"] = self.server.port
        return out

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.cycle.grid is not None:
            self.cycle.grid.close()
        self.wiring.close()


def start_actors(config: HashpivotConfig, options: RunOptions) -> tuple[Any, Any]:
    """Create the controller actor (and, for a dry-run, the simulated cluster actor); see
    `orchestrator.runtime.actors`, imported here so only the Ray path loads Ray."""
    from orchestrator.runtime.actors import start_actors as start

    return start(config, options)


def journal_path(options: RunOptions) -> Path:
    return Path(options.journal_dir)
