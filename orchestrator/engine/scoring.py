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


_NONE = np.zeros(0)


def _kernel_inputs(
    fleet: FleetTable, prices: MarketPrices, demand: DemandSummary
) -> tuple[F64, F64, F64, F64, F64, F64]:
    """Power price per site, mining price per algorithm, market GPU price, pending GPUs,
    offered price and expected GPUs per model (the last empty when not tracked), as
    float64 for the compiled loop, each checked to cover the fleet's lookup table: the
    loop indexes them without bounds checks."""
    models = len(fleet.gpu_models)
    market_gpu = prices.gpu_usd_per_gpu_hour
    expected = _NONE if demand.expected_gpus is None else demand.expected_gpus
    checked = (
        ("prices.power_usd_mwh (one per site)", prices.power_usd_mwh, len(fleet.sites)),
        (
            "prices.usd_per_unit_day (one per algorithm)",
            prices.usd_per_unit_day,
            len(fleet.algorithms),
        ),
        # No market GPU prices at all is allowed: nothing is priced but tenants' offers.
        (
            "prices.gpu_usd_per_gpu_hour (one per GPU model)",
            market_gpu,
            models if np.size(market_gpu) else 0,
        ),
        ("demand.pending_gpus (one per GPU model)", demand.pending_gpus, models),
        (
            "demand.offered_usd_per_gpu_hour (one per GPU model)",
            demand.offered_usd_per_gpu_hour,
            models,
        ),
        (
            "demand.expected_gpus (one per GPU model)",
            expected,
            0 if demand.expected_gpus is None else models,
        ),
    )
    arrays = []
    for what, values, length in checked:
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (length,):
            raise ValueError(f"{what}: expected {length} values, got shape {array.shape}")
        arrays.append(array if array.flags.c_contiguous else np.ascontiguousarray(array))
    power, mining, market, pending, offered, expected_gpus = arrays
    return power, mining, market, pending, offered, expected_gpus


def build_scores(
    fleet: FleetTable,
    prices: MarketPrices,
    demand: DemandSummary,
    config: ScoringConfig | None = None,
    power_usd_mwh: F64 | None = None,
) -> ScoreTable:
    """Value of every mode for every node, with revenue, power, and switching terms.

    `power_usd_mwh`: the price per site a node's draw costs, when a power contract makes
    it differ from the market's (`engine.contracts`); default `prices.power_usd_mwh`.
    The arrays are read-only: policies share them.
    """
    config = config or ScoringConfig()
    power, mining, market_gpu, pending, offered, expected = _kernel_inputs(
        fleet, prices, demand
    )
    if power_usd_mwh is not None:
        power = np.ascontiguousarray(power_usd_mwh, dtype=np.float64)
        if power.shape != (len(fleet.sites),):
            raise ValueError(f"contract power price: expected {len(fleet.sites)} values "
                             f"(one per site), got shape {power.shape}")
    n = fleet.n
    st = fleet.statics
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
        power,
        mining,
        market_gpu,
        offered,
        pending,
        float(demand.pending_gpus_any_model),
        expected,
        float(demand.expected_gpus_any_model),
        float(config.ai_demand_headroom),
        float(config.eviction_penalty_gpu_hours),
        float(config.expected_stay_h),
        terms,
        fill,
    )
    terms.flags.writeable = False
    fill.flags.writeable = False
    return ScoreTable(
        revenue=terms[0],
        power_cost=terms[1],
        value=terms[2],
        switch_cost_usd=terms[3],
        switch_cost_per_h=terms[4],
        ai_fill=fill,
        watts=st.watts_by_mode,
        expected_stay_h=config.expected_stay_h,
    )
