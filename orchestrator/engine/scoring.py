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
    fleet: FleetTable,
    demand: DemandSummary,
    revenue: F64,
    power_cost: F64,
    headroom: float = 0.0,
) -> F64:
    """Share of each node's GPUs that demand would fill if the node were in AI mode.

    Running pods stay where they are. Pending GPUs of a model go first to free GPUs on
    nodes of that model already in AI, then to other nodes in order of least mining value
    (revenue − power cost in the mine row) given up. Jobs that accept any model take
    what is left, in the same order. Only GPU rows are visited.
    """
    fill = np.zeros(fleet.n)
    expected = demand.expected_gpus
    kernels.allocate_fill(
        fleet.statics.gpu_rows,
        fleet.reachable,
        fleet.gpus,
        fleet.ai_gpus_busy,
        fleet.gpu_model,
        fleet.mode,
        revenue,
        power_cost,
        _floats(demand.pending_gpus),
        float(demand.pending_gpus_any_model),
        _NONE if expected is None else _floats(expected),
        float(demand.expected_gpus_any_model),
        float(headroom),
        fill,
    )
    return fill


_NONE = np.zeros(0)


def _check_aligned(fleet: FleetTable, prices: MarketPrices, demand: DemandSummary) -> None:
    """Price and demand arrays must cover the fleet's lookup tables: the compiled loops
    index them without bounds checks."""
    need = {
        "prices.power_usd_mwh (one per site)": (prices.power_usd_mwh, len(fleet.sites)),
        "prices.usd_per_unit_day (one per algorithm)": (
            prices.usd_per_unit_day,
            len(fleet.algorithms),
        ),
        "demand.pending_gpus (one per GPU model)": (demand.pending_gpus, len(fleet.gpu_models)),
        "demand.offered_usd_per_gpu_hour (one per GPU model)": (
            demand.offered_usd_per_gpu_hour,
            len(fleet.gpu_models),
        ),
    }
    if prices.gpu_usd_per_gpu_hour.size:
        need["prices.gpu_usd_per_gpu_hour (one per GPU model)"] = (
            prices.gpu_usd_per_gpu_hour,
            len(fleet.gpu_models),
        )
    if demand.expected_gpus is not None:
        need["demand.expected_gpus (one per GPU model)"] = (
            demand.expected_gpus,
            len(fleet.gpu_models),
        )
    for what, (values, length) in need.items():
        if np.shape(values) != (length,):
            raise ValueError(f"{what}: expected {length} values, got shape {np.shape(values)}")


def build_scores(
    fleet: FleetTable,
    prices: MarketPrices,
    demand: DemandSummary,
    config: ScoringConfig | None = None,
) -> ScoreTable:
    """Value of every mode for every node, with revenue, power, and switching terms.

    The arrays are read-only: policies share them.
    """
    config = config or ScoringConfig()
    _check_aligned(fleet, prices, demand)
    n = fleet.n
    st = fleet.statics
    n_models = len(fleet.gpu_models)
    expected = demand.expected_gpus
    # One block for the five (3, n) tables: one allocation, and freezing it freezes them.
    terms = np.empty((5, 3, n))
    fill = np.empty(n)
    kernels.score_table(
        fleet.site,
        fleet.algorithm,
        fleet.hashrate,
        fleet.watts_mine,
        fleet.watts_idle,
        fleet.watts_ai,
        fleet.gpus,
        fleet.gpu_model,
        fleet.mode,
        fleet.reachable,
        fleet.ai_gpus_busy,
        fleet.ai_interruptible,
        st.pool_fee,
        st.platform_fee,
        st.adder_usd_mwh,
        fleet.profile,
        st.downtime_h,
        st.wear_usd,
        st.gpu_rows,
        _floats(prices.power_usd_mwh),
        _floats(prices.usd_per_unit_day),
        _floats(prices.gpu_usd_per_gpu_hour[:n_models]),
        _floats(demand.offered_usd_per_gpu_hour[:n_models]),
        _floats(demand.pending_gpus),
        float(demand.pending_gpus_any_model),
        _NONE if expected is None else _floats(expected),
        float(demand.expected_gpus_any_model),
        float(config.ai_demand_headroom),
        float(config.eviction_penalty_gpu_hours),
        float(config.expected_stay_h),
        terms,
        fill,
    )
    terms.flags.writeable = False
    fill.flags.writeable = False
    revenue, power_cost, value, switch_usd, switch_per_h = terms
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


def _floats(values: npt.ArrayLike) -> F64:
    """A contiguous float64 array for the compiled loops (no copy when it is one)."""
    return np.ascontiguousarray(values, dtype=np.float64)
