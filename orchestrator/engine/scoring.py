"""Score table: what each node would earn, net of power, in each mode (USD/h)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
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
    site = fleet.site
    st = fleet.statics
    pool_fee, platform_fee = st.pool_fee, st.platform_fee
    power_price = prices.power_usd_mwh[site] + st.adder_usd_mwh

    usd_per_unit_day = prices.usd_per_unit_day[fleet.algorithm]
    mine_rev = econ.mining_revenue_usd_per_hour(fleet.hashrate, usd_per_unit_day, pool_fee)
    mine_pow = econ.power_cost_usd_per_hour(fleet.watts_mine, power_price)
    idle_pow = econ.power_cost_usd_per_hour(fleet.watts_idle, power_price)

    is_gpu = st.is_gpu
    rows = st.gpu_rows
    # AI terms only exist for GPU rows; ASIC rows keep zeros (and -inf value below).
    gpu_price = np.zeros(n)
    fill = np.zeros(n)
    ai_rev = np.zeros(n)
    ai_pow = idle_pow.copy()
    if rows.size and prices.gpu_usd_per_gpu_hour.size:
        model = fleet.gpu_model[rows]
        offered = demand.offered_usd_per_gpu_hour[model]
        price_rows = np.where(np.isnan(offered), prices.gpu_usd_per_gpu_hour[model], offered)
        priced = np.isfinite(price_rows)
        gpu_price[rows] = np.where(priced, price_rows, 0.0)
        fill = allocate_demand(fleet, demand, mine_rev - mine_pow, config.ai_demand_headroom)
        fill[rows] = np.where(priced, fill[rows], 0.0)
        ai_rev[rows] = econ.ai_revenue_usd_per_hour(
            fleet.gpus[rows], gpu_price[rows], fill[rows], platform_fee[rows]
        )
        idle_w = fleet.watts_idle[rows]
        ai_pow[rows] = econ.power_cost_usd_per_hour(
            idle_w + (fleet.watts_ai[rows] - idle_w) * fill[rows], power_price[rows]
        )

    revenue = np.empty((3, n))
    revenue[0] = 0.0
    revenue[1] = mine_rev
    revenue[2] = ai_rev
    power_cost = np.empty((3, n))
    power_cost[0] = idle_pow
    power_cost[1] = mine_pow
    power_cost[2] = ai_pow
    value = revenue - power_cost
    # ASICs cannot take AI work: that mode is unavailable, not merely unprofitable.
    value[Mode.AI] = np.where(is_gpu, value[Mode.AI], -np.inf)

    switch_usd = _switch_costs(fleet, revenue, gpu_price, config)
    switch_per_h = econ.amortized_usd_per_hour(switch_usd, config.expected_stay_h)
    watts = st.watts_by_mode
    return ScoreTable(
        revenue=revenue,
        power_cost=power_cost,
        value=value,
        switch_cost_usd=switch_usd,
        switch_cost_per_h=switch_per_h,
        ai_fill=fill,
        watts=watts,
        expected_stay_h=config.expected_stay_h,
    )


def _switch_costs(fleet: FleetTable, revenue: F64, gpu_price: F64, config: ScoringConfig) -> F64:
    """One-off USD cost of moving each node from its current mode into each mode, (3, n).

    Built one mode row at a time from 1-D arrays: a (3, n) broadcast costs several full
    passes more at a million nodes.
    """
    n = fleet.n
    stop_s, start_s = fleet.statics.stop_s, fleet.statics.start_s
    current = fleet.mode
    stop_now = stop_s[current, np.arange(n)]
    leaving_ai = current == Mode.AI
    evict_gpus = np.where(leaving_ai & fleet.ai_interruptible, fleet.ai_gpus_busy, 0.0)
    fixed = fleet.statics.wear_usd + evict_gpus * gpu_price * config.eviction_penalty_gpu_hours
    cost = np.empty((3, n))
    for mode in Mode:
        row = econ.switching_cost_usd(
            downtime_h=(stop_now + start_s[mode]) / 3600.0,
            lost_value_usd_per_h=revenue[mode],
            wear_usd=fixed,
        )
        cost[mode] = np.where(current == mode, 0.0, row)
    return cost
