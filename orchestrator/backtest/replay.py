"""Replay a controller's journal: decide every recorded cycle again and compare.

A journaled cycle of a replayable fleet (see `runtime.cycle.REPLAYABLE_FLEET_NODES`)
holds the fleet as decided on, the market snapshot, the pending jobs, the smoothed
demand level, the policy state and the switch history the decision step read; replay
decides through the same step. Deciding again with the same policy must give the
same plan (a regression test for the engine); deciding with another policy shows what it
would have done on production inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from orchestrator.backtest.contracts import contract_book
from orchestrator.engine.contracts import LiveBook
from orchestrator.engine.plan import Plan
from orchestrator.engine.prices import snapshot_to_prices
from orchestrator.engine.step import DecisionStep, StepMemory
from orchestrator.errors import DataError
from orchestrator.framework.policy import Policy
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.journal import CycleRecord, FleetColumns, StateArray
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
    """Decide one journaled cycle again, through the decision step every mode uses, with
    the inputs the journal says that step read."""
    if record.fleet_columns is None or record.market is None:
        raise DataError(f"cycle {record.decision_id} is not replayable (no fleet or market)")
    fleet = fleet_from_columns(record.fleet_columns, config)
    state = {k: v.array() if isinstance(v, StateArray) else np.asarray(v)
             for k, v in (record.policy_state_in or {}).items()}
    inputs = record.decision_inputs
    demand_cfg = config.demand
    step = DecisionStep(policy, config.guards, config.scoring,
                        interval_s=inputs.interval_s if inputs is not None else 0.0,
                        demand_model=demand_cfg.gpu_model if demand_cfg is not None else None,
                        contracts=contract_book(config))
    if inputs is not None:
        pending = DemandSummary(
            np.array(inputs.pending_gpus, dtype=np.float64),
            np.array([np.nan if x is None else x for x in inputs.offered_usd_per_gpu_hour],
                     dtype=np.float64),
            inputs.pending_gpus_any_model,
            # The waiting jobs one by one, as the journal lists them (every one for a
            # replayable fleet).
            job_list=DemandSummary.from_jobs(record.demand.pending, fleet.gpu_models).job_list,
        )
        before = record.now_s - (inputs.skipped_cycles + 1) * inputs.interval_s
        step.restore(StepMemory(
            now_s=before if inputs.interval_s > 0 else None, policy_state=state,
            expected_gpus=record.expected_gpus, switch_nodes=list(record.fleet_columns.names),
            switch_last_s=np.array(inputs.switch_since), switch_load=np.array(inputs.switch_load),
        ))
        frozen = inputs.frozen
        if step.contracts is not None and inputs.contract_peak_kw is not None:
            step.contracts.restore_peaks(record.now_s, inputs.contract_peak_kw)
        if step.contracts is not None and record.grid_signals is not None:
            # The live grid events and alerts the cycle saw.
            step.contracts.live = {site: LiveBook.from_snapshot(book)
                                   for site, book in record.grid_signals.items()}
    else:  # journals written before the decision step journaled its inputs
        pending = DemandSummary.from_jobs(record.demand.pending, fleet.gpu_models)
        step.policy_state = state
        frozen = bool(record.plan.get("frozen"))
    nowcast = inputs.power_nowcast_usd_mwh if inputs is not None else None
    prices = snapshot_to_prices(record.market, fleet)
    nowcast_usd_mwh = None if nowcast is None else np.array(nowcast)
    held = record.plan.get("held")  # the policy failed that cycle: every node was held
    return step.decide(now_s=record.now_s, prices=prices, demand=pending, fleet=fleet,
                       frozen=frozen, demand_level=record.expected_gpus,
                       nowcast_usd_mwh=nowcast_usd_mwh, held=str(held) if held else None)


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
