"""The ASIC fleet on the FleetSource and Actuator ports, and its join with GPU nodes.

- `AsicFleet`: one `SiteHandle` per site with miners (a Ray actor, or an in-process
  loop). `fleet()` reads every site at once; a site that misses `io.read_timeout_s`
  keeps its previous statuses (and is reported). `apply()` hands each site its
  miners' targets and runs the first ramp step; the rest follow on the site's own
  loop every `ramp.step_s`.
- `MixedFleetSource` / `RoutingActuator`: the GPU nodes' ports (Kubernetes, or a
  simulation) and the miners as one fleet table under one cap per site. The runtime
  wires them; see `build_mixed` and docs/asic.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.adapters.asic.actor import (
    DriverFactory,
    LocalSiteHandle,
    SiteHandle,
    pyasic_driver,
)
from orchestrator.adapters.asic.fleet import (
    AsicFleetView,
    asic_fleet,
    concat_fleets,
    gate_power_increases,
    miner_targets,
    plan_subset,
)
from orchestrator.adapters.asic.site import MinerStatus, MinerTarget, StepReport
from orchestrator.engine.plan import Plan
from orchestrator.errors import ConfigError
from orchestrator.models.asic_config import AsicConfig
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.fleet import FleetTable
from orchestrator.models.modes import Mode
from orchestrator.ports import ActuationResult, Actuator, FleetSource

log = logging.getLogger("hashpivot.asic.service")

#: Deadline for handing targets to a site and running the first ramp step, s.
APPLY_TIMEOUT_S = 60.0
#: The states `AsicFleet.states` counts miners in (a bounded metric label set).
MINER_STATES = ("mining", "curtailed", "unreadable", "unknown_model")
#: Deadline for a site actor to start, s.
STARTUP_TIMEOUT_S = 120.0
WAITING = "ramp: waiting for budget or power headroom"
POWER_WAIT = "waiting for power: miners curtailed for this node are still ramping down"


class AsicFleet:
    """Miners of every site, read and commanded through their site handles."""

    def __init__(self, config: HashpivotConfig, handles: list[SiteHandle]) -> None:
        if config.asic is None:
            raise ConfigError("no asic section in the config", field="asic")
        self.config = config
        self.asic: AsicConfig = config.asic
        self.handles = handles
        self.catalog = profile_catalog(config)
        self.statuses: dict[str, list[MinerStatus]] = {h.name: [] for h in handles}
        self.site_errors: dict[str, str] = {}
        self.view: AsicFleetView | None = None
        self.last_steps: dict[str, StepReport] = {}
        self._ignored_seen: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(len(handles), 1),
                                        thread_name_prefix="asic-fleet")

    @staticmethod
    def from_config(
        config: HashpivotConfig,
        *,
        driver: DriverFactory | None = None,
        use_ray: bool | None = None,
        clock: Callable[[], float] | None = None,
        auto_ramp: bool = True,
    ) -> AsicFleet:
        """One handle per site with miners: Ray actors unless `asic.use_ray` is off."""
        asic = config.asic
        if asic is None:
            raise ConfigError("no asic section in the config", field="asic")
        names = [s.name for s in config.sites]
        for i, r in enumerate(asic.ranges):
            if r.site not in names:
                raise ConfigError(f"site {r.site!r} is not a configured site ({names})",
                                  field=f"asic.ranges[{i}].site")
        factory = driver or pyasic_driver(asic)
        ray_on = asic.use_ray if use_ray is None else use_ray
        handles: list[SiteHandle] = []
        for site in dict.fromkeys(r.site for r in asic.ranges):
            ranges = [r for r in asic.ranges if r.site == site]
            if ray_on:
                from orchestrator.adapters.asic.ray_site import RaySiteHandle

                handles.append(RaySiteHandle(site, asic, names, ranges, factory))
            else:
                handles.append(LocalSiteHandle(site, asic, names, ranges, factory, clock,
                                               auto_ramp))
        try:
            for h in handles:
                h.wait_ready(STARTUP_TIMEOUT_S)
        except Exception:
            for h in handles:
                h.close()
            raise
        return AsicFleet(config, handles)

    # FleetSource
    def fleet(self, now_s: float) -> FleetTable:
        return self.refresh().fleet

    def refresh(self) -> AsicFleetView:
        """Read every site at once; late or failed sites keep their last statuses."""
        timeout = self.asic.io.read_timeout_s
        futures = {h.name: self._pool.submit(h.refresh, timeout) for h in self.handles}
        for name, future in futures.items():
            try:
                self.statuses[name] = future.result()
                self.site_errors.pop(name, None)
            except Exception as exc:  # one site's failure must not blind the others
                self.site_errors[name] = f"{type(exc).__name__}: {exc}"
                log.warning("ASIC site %s: reading failed, keeping the last readings: %s",
                            name, exc)
        every = [st for name in self.statuses for st in self.statuses[name]]
        self.view = asic_fleet(every, self.config.sites, self.catalog,
                               model_profiles=self.asic.model_profiles,
                               curtailed_watts=self.asic.curtailed_watts)
        return self.view

    def states(self) -> dict[str, int]:
        """Miners by state for the metrics: mining, curtailed, unreadable (counted at its
        last known or nameplate draw), unknown_model (never commanded)."""
        view = self.view
        counts = dict.fromkeys(MINER_STATES, 0)
        if view is None:
            return counts
        for st in view.statuses:
            address = st.reading.address
            if address in view.unknown_models:
                counts["unknown_model"] += 1
            elif address in view.unreadable:
                counts["unreadable"] += 1
            else:
                counts["mining" if st.mining else "curtailed"] += 1
        return counts

    def notes(self) -> dict[str, str]:
        """Miners the fleet table stands in for, and why: journaled with every cycle."""
        view = self.view
        if view is None:
            return {}
        out = {a: f"unreadable ({why}): counted at its last known draw, not commanded"
               for a, why in view.unreadable.items()}
        out.update({a: f"unknown model {model!r}: counted at a stand-in draw, not commanded"
                    for a, model in view.unknown_models.items()})
        return out

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(st.reading.address for sts in self.statuses.values() for st in sts)

    # Actuator
    def apply(self, plan: Plan, fleet: FleetTable) -> ActuationResult:
        """Hand every site its miners' targets and run the first ramp step."""
        mine = np.isin(fleet.names, np.array(sorted(self.addresses), dtype=object))
        targets, headroom = miner_targets(plan, fleet, mine)
        result = ActuationResult()
        by_site: dict[str, dict[str, MinerTarget]] = {h.name: {} for h in self.handles}
        site_of = {st.reading.address: st.site for sts in self.statuses.values() for st in sts}
        for address, target in targets.items():
            by_site.setdefault(site_of[address], {})[address] = target
        futures = {h.name: self._pool.submit(self._apply_site, h, by_site[h.name], headroom)
                   for h in self.handles}
        for name, future in futures.items():
            try:
                report = future.result()
            except Exception as exc:
                result.errors[f"asic-site/{name}"] = f"{type(exc).__name__}: {exc}"
                continue
            self.last_steps[name] = report
            result.started += [*report.curtailed, *report.resumed]
            result.began_earlier.update(dict(report.ramped))
            result.writes += len(report.curtailed) + len(report.resumed) + len(report.failed)
            result.errors.update(report.failed)
            result.deferred.update(dict.fromkeys(report.waiting, WAITING))
            result.deferred.update(report.refused)
        for sts in self.statuses.values():
            for st in sts:
                if st.ignored_commands > self._ignored_seen.get(st.reading.address, 0):
                    result.errors[st.reading.address] = (
                        f"ignored a command ({st.ignored_commands} so far): sent again")
                self._ignored_seen[st.reading.address] = st.ignored_commands
        return result

    @staticmethod
    def _apply_site(handle: SiteHandle, targets: dict[str, MinerTarget],
                    headroom: dict[str, float]) -> StepReport:
        handle.set_targets(targets, headroom, APPLY_TIMEOUT_S)
        return handle.step(APPLY_TIMEOUT_S)

    def set_power_targets(self, watts: dict[str, int]) -> dict[str, str | None]:
        """Set power targets of named miners (firmware permitting); address → error."""
        site_of = {st.reading.address: st.site for sts in self.statuses.values() for st in sts}
        handles = {h.name: h for h in self.handles}
        out: dict[str, str | None] = {}
        for address, w in watts.items():
            site = site_of.get(address)
            if site is None:
                out[address] = "unknown miner"
                continue
            out[address] = handles[site].set_power_target(address, w, APPLY_TIMEOUT_S)
        return out

    def close(self) -> None:
        for h in self.handles:
            h.close()
        self._pool.shutdown(wait=False)


def fleet_subset(fleet: FleetTable, rows: npt.NDArray[np.intp]) -> FleetTable:
    """The rows `rows` of a fleet (lookup tables kept)."""
    columns: dict[str, Any] = {f.name: getattr(fleet, f.name)[rows] for f in fields(fleet)
                               if isinstance(getattr(fleet, f.name), np.ndarray)}
    return replace(fleet, _statics=None, **columns)


class MixedFleetSource:
    """GPU nodes from `inner` and the miners, as one fleet table."""

    def __init__(self, inner: FleetSource, asic: AsicFleet) -> None:
        self.inner = inner
        self.asic = asic

    def fleet(self, now_s: float) -> FleetTable:
        return concat_fleets(self.inner.fleet(now_s), self.asic.fleet(now_s))


class RoutingActuator:
    """Miners' rows to the ASIC fleet, every other row to `inner`."""

    def __init__(self, inner: Actuator, asic: AsicFleet, *, shadow: bool = False) -> None:
        self.inner = inner
        self.asic = asic
        #: Shadow mode: report what the miners would be told, command none.
        self.shadow = shadow

    def apply(self, plan: Plan, fleet: FleetTable) -> ActuationResult:
        mine = np.isin(fleet.names, np.array(sorted(self.asic.addresses), dtype=object))
        others = np.flatnonzero(~mine)
        sub = plan_subset(plan, others)
        hold = gate_power_increases(plan, fleet, others)
        if hold.any():
            target = sub.target.copy()
            target[hold] = sub.current[hold]
            sub = replace(sub, target=target)
        a = self.inner.apply(sub, fleet_subset(fleet, others))
        a.deferred.update(dict.fromkeys((str(x) for x in sub.node_names[hold]), POWER_WAIT))
        if self.shadow:
            b = ActuationResult(deferred={
                str(plan.node_names[i]): "shadow: would "
                + ("resume" if plan.target[i] == Mode.MINE else "curtail")
                for i in np.flatnonzero(mine & (plan.target != plan.current))
            })
        else:
            b = self.asic.apply(plan, fleet)
        return ActuationResult(
            writes=a.writes + b.writes, started=a.started + b.started,
            began_earlier={**a.began_earlier, **b.began_earlier},
            completed=a.completed + b.completed, deferred={**a.deferred, **b.deferred},
            errors={**a.errors, **b.errors},
            notes={**a.notes, **b.notes, **self.asic.notes()},
        )

    def reconcile(self) -> ActuationResult:
        """The inner actuator's; the miners' ramp carries on by itself."""
        reconcile = getattr(self.inner, "reconcile", None)
        result: ActuationResult = reconcile() if callable(reconcile) else ActuationResult()
        return result


def build_mixed(
    config: HashpivotConfig, fleet: FleetSource, actuator: Actuator, *, shadow: bool,
    **kwargs: Any,
) -> tuple[MixedFleetSource, RoutingActuator, AsicFleet]:
    """The hook for the runtime's wiring: wrap the GPU ports when `config.asic` is set.
    Close the returned `AsicFleet` with the other adapters."""
    asic = AsicFleet.from_config(config, **kwargs)
    return (MixedFleetSource(fleet, asic), RoutingActuator(actuator, asic, shadow=shadow),
            asic)
