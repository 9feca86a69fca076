"""The ledger of a journal replay: the replayed plans run through the simulated site.

`hashpivot backtest --journal DIR --report OUT` decides every journaled cycle again
(`backtest.replay`) and, for a dry-run's journal (a config with recorded market data and
a simulated fleet), steps the dry-run's simulated site with the replayed plans over the
journal's period, billing each step's demand-response lines with the live grid events
its cycle saw (`grid_signals`). Replayed with the journaled policy, the plans are the
dry-run's, so the ledger is the dry-run's, line for line (for a dry-run that was not
restarted: a resumed one bills only the cycles since it resumed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.backtest.cluster import SimulatedCluster
from orchestrator.backtest.replay import redecide
from orchestrator.backtest.runner import prepare_backtest
from orchestrator.backtest.sim import Ledger
from orchestrator.errors import DataError
from orchestrator.framework.policy import Policy
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.journal import CycleRecord


def replay_ledger(records: Sequence[CycleRecord], config: HashpivotConfig,
                  policy: Policy) -> Ledger:
    """The simulated site's ledger over the journal's period, stepped with `policy`'s
    replayed plan of each replayable cycle, in order."""
    cycles = sorted((r for r in records if r.fleet_columns is not None and r.market is not None),
                    key=lambda r: r.now_s)
    if not cycles:
        raise DataError("the journal holds no replayable cycle to bill")
    step_s = config.backtest.step_s
    start = datetime.fromtimestamp(cycles[0].now_s, UTC)
    end = datetime.fromtimestamp(cycles[-1].now_s + step_s, UTC)
    inputs = prepare_backtest(config, start=start, end=end,
                              needs_history=policy.uses_history or config.scoring.nowcasts_power)
    cluster = SimulatedCluster(inputs)
    site_nodes = [str(x) for x in inputs.fleet.names.tolist()]
    for record in cycles:
        assert record.fleet_columns is not None
        decided_on = record.fleet_columns.names
        if decided_on != site_nodes:
            # The plans would be applied to other nodes than they were made for.
            names = " with other names" if len(decided_on) == len(site_nodes) else ""
            raise DataError(f"cycle {record.decision_id} decided on {len(decided_on)} node(s), "
                            f"and the config's simulated site has {len(site_nodes)}{names}: "
                            "bill a journal with the config its dry-run ran on")
        plan = redecide(record, config, policy)
        # The ports in the order a dry-run's cycle reads them (arrivals, queue).
        cluster.fleet(record.now_s)
        cluster.demand(record.now_s)
        cluster.pending_summary(record.now_s)
        cluster.hear_grid(record.grid_signals)
        cluster.apply(plan)
    return cluster.ledger
