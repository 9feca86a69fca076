"""Replay a controller's journal: decide every recorded cycle again and compare.

A journaled cycle of a replayable fleet (see `runtime.cycle.REPLAYABLE_FLEET_NODES`)
holds the fleet as decided on, the market snapshot, the pending jobs, the smoothed
demand level and the policy state. Deciding again with the same policy must give the
same plan (a regression test for the engine); deciding with another policy shows what it
would have done on production inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from orchestrator.engine.plan import Plan, build_context, decide
from orchestrator.engine.prices import snapshot_to_prices
from orchestrator.errors import DataError
from orchestrator.framework.policy import Policy
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.journal import CycleRecord, FleetColumns
from orchestrator.models.modes import MODE_LABELS


def fleet_from_columns(columns: FleetColumns, config: HashpivotConfig) -> FleetTable:
    """The fleet a cycle decided on, rebuilt with the config's profiles and sites."""
    catalog = profile_catalog(config)
    used = list(dict.fromkeys(columns.profile))
    missing = [p for p in used if p not in catalog]
    if missing:
        raise DataError(f"journal names hardware profiles the config lacks: {missing}")
    site_index = {s.name: i for i, s in enumerate(config.sites)}
    unknown = sorted(set(columns.site) - set(site_index))
    if unknown:
        raise DataError(f"journal names sites the config lacks: {unknown}")
    fleet = FleetTable.build(
        [catalog[p] for p in used],
        config.sites,
        np.array([used.index(p) for p in columns.profile], dtype=np.int32),
        names=columns.names,
        node_sites=np.array([site_index[s] for s in columns.site], dtype=np.int32),
        modes=np.array(columns.mode, dtype=np.int8),
    )
    return fleet.with_columns(
        state=np.array(columns.state, dtype=np.int8),
        since=np.array(columns.since),
        lease_until=np.array(columns.lease_until),
        ai_gpus_busy=np.array(columns.ai_gpus_busy),
        ai_interruptible=np.array(columns.ai_interruptible, dtype=bool),
        opt_out=np.array(columns.opt_out, dtype=bool),
        reachable=np.array(columns.reachable, dtype=bool),
        hashrate=np.array(columns.hashrate),
    )


def redecide(record: CycleRecord, config: HashpivotConfig, policy: Policy) -> Plan:
    """Decide one journaled cycle again."""
    if record.fleet_columns is None or record.market is None:
        raise DataError(f"cycle {record.decision_id} is not replayable (no fleet or market)")
    fleet = fleet_from_columns(record.fleet_columns, config)
    summary = DemandSummary.from_jobs(record.demand.pending, fleet.gpu_models)
    if record.expected_gpus is not None:
        summary = DemandSummary(summary.pending_gpus, summary.offered_usd_per_gpu_hour,
                                summary.pending_gpus_any_model,
                                expected_gpus_any_model=record.expected_gpus)
    state = {k: np.asarray(v) for k, v in (record.policy_state_in or {}).items()}
    ctx = build_context(now_s=record.now_s, prices=snapshot_to_prices(record.market, fleet),
                        demand=summary, fleet=fleet, guards=config.guards,
                        scoring=config.scoring, policy_state=state)
    return decide(ctx, policy, config.guards)


@dataclass
class ReplayReport:
    cycles: int = 0
    skipped: int = 0
    identical: int = 0
    #: decision id → nodes whose target differs from the journaled plan.
    differing: dict[str, int] = field(default_factory=dict)
    journaled_usd_h: float = 0.0
    replayed_usd_h: float = 0.0

    @property
    def agreement(self) -> float:
        return self.identical / self.cycles if self.cycles else 0.0


def replay_journal(
    records: Iterable[CycleRecord], config: HashpivotConfig, policy: Policy
) -> ReplayReport:
    """Decide every replayable cycle again and compare targets with what was journaled."""
    report = ReplayReport()
    for record in records:
        if record.fleet_columns is None or record.market is None:
            report.skipped += 1
            continue
        plan = redecide(record, config, policy)
        report.cycles += 1
        journaled_modes = record.plan.get("modes", {})
        replayed = plan.summary()
        journaled_usd = record.plan.get("expected_usd_per_hour", {})
        if isinstance(journaled_usd, dict):
            report.journaled_usd_h += float(sum(journaled_usd.values()))
        usd = replayed["expected_usd_per_hour"]
        assert isinstance(usd, dict)
        report.replayed_usd_h += float(sum(usd.values()))
        changed = {c.node: c.target for c in record.changes}
        replayed_changes = {
            str(plan.node_names[i]): MODE_LABELS[int(plan.target[i])] for i in plan.changed
        }
        same = replayed["modes"] == journaled_modes and (
            len(record.changes) < int(record.plan.get("changes", 0))  # truncated list
            or replayed_changes == changed
        )
        if same:
            report.identical += 1
        else:
            diff = set(changed.items()) ^ set(replayed_changes.items())
            report.differing[record.decision_id] = len({node for node, _ in diff})
    return report
