"""Score table: what each node would earn, net of power, in each mode (USD/h)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from orchestrator.engine import kernels
from orchestrator.framework.context import ScoreTable
from orchestrator.models.config import ScoringConfig
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices
from orchestrator.models.modes import Mode

F64 = npt.NDArray[np.float64]


def group_cumsum_before(groups: npt.NDArray[np.int32], amounts: F64) -> F64:
    """For rows sorted by group: the sum of earlier amounts in the same group."""
    total = np.cumsum(amounts)
    before = total - amounts
    if groups.size == 0:
        return before
    # np.r_ is convenient but slow per call; this runs every cycle.
    boundary = np.empty(groups.size, dtype=bool)
    boundary[0] = True
    np.not_equal(groups[1:], groups[:-1], out=boundary[1:])
    starts = np.flatnonzero(boundary)
    offset = np.repeat(before[starts], np.diff(np.append(starts, groups.size)))
    return before - offset


def allocate_demand(
    fleet: FleetTable, demand: DemandSummary, mine_value: F64, headroom: float = 0.0
) -> F64:
    """Share of each node's GPUs that demand would fill if the node were in AI mode.

    Running pods stay where they are. Pending GPUs go first to free GPUs on nodes already
    in AI, then to other nodes in order of least mining value given up. Jobs that accept
    any model take what is left, best-paid model first.
    """
    n = fleet.n
    fill = np.zeros(n)
    # Only GPU rows can hold AI work: work on them alone (a small share of big fleets).
    rows = fleet.statics.gpu_rows
    rows = rows[fleet.reachable[rows] & (fleet.gpus[rows] > 0)]
    if rows.size == 0:
        return fill
    gpus = fleet.gpus[rows]
    busy = np.minimum(fleet.ai_gpus_busy[rows], gpus)
    models = fleet.gpu_model[rows]
    fill_gpus = busy.copy()
    free = gpus - busy
    in_ai = fleet.mode[rows] == Mode.AI
    candidates = np.flatnonzero(free > 0)
    # Sort: by model, AI nodes first, then by mining value given up (ascending).
    order = np.lexsort((mine_value[rows][candidates], ~in_ai[candidates], models[candidates]))
    cand = candidates[order]
    model = models[cand]
    cap = free[cand]
    before = group_cumsum_before(model, cap)
    pending_by_model = demand.pending_gpus
    pending_any = demand.pending_gpus_any_model
    if demand.expected_gpus is not None or demand.expected_gpus_any_model > 0:
        # Expected demand beyond what already runs counts as waiting work.
        busy_by_model = np.bincount(models, weights=busy, minlength=pending_by_model.shape[0])
        busy_by_model = busy_by_model[: pending_by_model.shape[0]]
        scale = 1.0 + headroom
        if demand.expected_gpus is not None:
            pending_by_model = np.maximum(
                pending_by_model, demand.expected_gpus * scale - busy_by_model
            )
        pending_any = max(pending_any, demand.expected_gpus_any_model * scale - float(busy.sum()))
    take = np.clip(pending_by_model[model] - before, 0.0, cap)
    fill_gpus[cand] += take
    if pending_any > 0:
        left = cap - take
        # Any-model demand: take remaining capacity in the same order, all models pooled.
        before_any = np.cumsum(left) - left
        take_any = np.clip(pending_any - before_any, 0.0, left)
        fill_gpus[cand] += take_any
    fill[rows] = fill_gpus / gpus
    return fill


def build_scores(
    fleet: FleetTable,
    prices: MarketPrices,
    demand: DemandSummary,
    config: ScoringConfig | None = None,
) -> ScoreTable:
    """Value of every mode for every node, with revenue, power, and switching terms."""
    config = config or ScoringConfig()
    n = fleet.n
    st = fleet.statics
    revenue = np.empty((3, n))
    power_cost = np.empty((3, n))
    power_price = np.empty(n)
    kernels.base_terms(
        fleet.site,
        fleet.algorithm,
        fleet.hashrate,
        fleet.watts_mine,
        fleet.watts_idle,
        st.pool_fee,
        st.adder_usd_mwh,
        np.ascontiguousarray(prices.power_usd_mwh, dtype=np.float64),
        np.ascontiguousarray(prices.usd_per_unit_day, dtype=np.float64),
        revenue,
        power_cost,
        power_price,
    )
    # AI terms only exist for GPU rows; ASIC rows get zeros and a value of -inf.
    n_models = len(fleet.gpu_models)
    gpu_usd_by_model = np.full(n_models, np.nan)
    fill = np.zeros(n)
    if st.gpu_rows.size and prices.gpu_usd_per_gpu_hour.size:
        offered = demand.offered_usd_per_gpu_hour[:n_models]
        market = prices.gpu_usd_per_gpu_hour[:n_models]
        gpu_usd_by_model = np.where(np.isnan(offered), market, offered).astype(np.float64)
        fill = allocate_demand(fleet, demand, revenue[1] - power_cost[1], config.ai_demand_headroom)
    value = np.empty((3, n))
    switch_usd = np.empty((3, n))
    switch_per_h = np.empty((3, n))
    kernels.ai_and_switch_terms(
        fleet.mode,
        fleet.gpu_model,
        fleet.gpus,
        fleet.watts_idle,
        fleet.watts_ai,
        fleet.ai_gpus_busy,
        fleet.ai_interruptible,
        st.platform_fee,
        st.stop_s,
        st.start_s,
        st.wear_usd,
        power_price,
        gpu_usd_by_model,
        float(config.eviction_penalty_gpu_hours),
        float(config.expected_stay_h),
        fill,
        revenue,
        power_cost,
        value,
        switch_usd,
        switch_per_h,
    )
    return ScoreTable(
        revenue=revenue,
        power_cost=power_cost,
        value=value,
        switch_cost_usd=switch_usd,
        switch_cost_per_h=switch_per_h,
        ai_fill=fill,
        watts=st.watts_by_mode,
        expected_stay_h=config.expected_stay_h,
    )
