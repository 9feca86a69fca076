"""Compiled per-node loops for the hot parts of a decision (numba).

Each numpy expression in the score table and the guards is a full pass over the fleet
and a Python-level call; a decision made of a few hundred of them is bound by call
overhead at 1k nodes and by memory traffic at 1M. These loops do the same arithmetic in
one pass per node, calling the formulas in `orchestrator.economics` compiled as they are
(one source for every formula). They are the engine's only implementation of these
steps, not a second path: `NUMBA_DISABLE_JIT=1` runs them as plain Python for debugging.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.framework.jit import AI, IDLE, MINE, compiled

F64 = npt.NDArray[np.float64]


# The economics formulas, compiled as they are, for every compiled loop that prices nodes.
mining_revenue_usd_per_hour = compiled(econ.mining_revenue_usd_per_hour)
ai_revenue_usd_per_hour = compiled(econ.ai_revenue_usd_per_hour)
power_cost_usd_per_hour = compiled(econ.power_cost_usd_per_hour)
amortized_usd_per_hour = compiled(econ.amortized_usd_per_hour)
switching_cost_usd = compiled(econ.switching_cost_usd)


@compiled
def base_terms(
    site: npt.NDArray[np.int32],
    algorithm: npt.NDArray[np.int32],
    hashrate: F64,
    watts_mine: F64,
    watts_idle: F64,
    pool_fee: F64,
    adder_usd_mwh: F64,
    power_usd_mwh_by_site: F64,
    usd_per_unit_day_by_algorithm: F64,
    revenue: F64,
    power_cost: F64,
    power_price: F64,
) -> None:
    """Fill the idle and mine rows of `revenue` and `power_cost` (3, n), and each node's
    power price (USD/MWh incl. its site's adder)."""
    for i in range(site.shape[0]):
        price = power_usd_mwh_by_site[site[i]] + adder_usd_mwh[i]
        power_price[i] = price
        revenue[IDLE, i] = 0.0
        revenue[MINE, i] = mining_revenue_usd_per_hour(
            hashrate[i], usd_per_unit_day_by_algorithm[algorithm[i]], pool_fee[i]
        )
        power_cost[IDLE, i] = power_cost_usd_per_hour(watts_idle[i], price)
        power_cost[MINE, i] = power_cost_usd_per_hour(watts_mine[i], price)


@compiled
def ai_and_switch_terms(
    mode: npt.NDArray[np.int8],
    gpu_model: npt.NDArray[np.int32],
    gpus: F64,
    watts_idle: F64,
    watts_ai: F64,
    ai_gpus_busy: F64,
    ai_interruptible: npt.NDArray[np.bool_],
    platform_fee: F64,
    profile: npt.NDArray[np.int32],
    downtime_h_by_profile: F64,
    wear_usd: F64,
    power_price: F64,
    gpu_usd_by_model: F64,
    eviction_penalty_gpu_hours: float,
    expected_stay_h: float,
    fill: F64,
    revenue: F64,
    power_cost: F64,
    value: F64,
    switch_usd: F64,
    switch_per_h: F64,
) -> None:
    """Fill the AI rows, `value`, and the switching costs from each node's current mode.

    GPU rows (gpu_model ≥ 0) price AI at their model's rate; an unpriced model (NaN) earns
    nothing and fills nothing. ASIC rows cannot take AI work: value −inf, idle power.
    `fill` comes in from demand allocation and is zeroed where the model is unpriced.
    """
    for i in range(mode.shape[0]):
        model = gpu_model[i]
        gpu_price = 0.0
        if model >= 0:
            price = gpu_usd_by_model[model]
            if np.isfinite(price):
                gpu_price = price
            else:
                fill[i] = 0.0
            revenue[AI, i] = ai_revenue_usd_per_hour(gpus[i], gpu_price, fill[i], platform_fee[i])
            idle_w = watts_idle[i]
            power_cost[AI, i] = power_cost_usd_per_hour(
                idle_w + (watts_ai[i] - idle_w) * fill[i], power_price[i]
            )
        else:
            revenue[AI, i] = 0.0
            power_cost[AI, i] = power_cost[IDLE, i]
        for m in range(3):
            value[m, i] = revenue[m, i] - power_cost[m, i]
        if model < 0:
            value[AI, i] = -np.inf

        # Switching: output lost while the old workload stops and the new one starts,
        # plus wear, plus the penalty for evicting interruptible AI work when leaving AI.
        current = mode[i]
        fixed = wear_usd[i]
        if current == AI and ai_interruptible[i]:
            fixed += ai_gpus_busy[i] * gpu_price * eviction_penalty_gpu_hours
        downtime_h = downtime_h_by_profile[profile[i], current]
        for m in range(3):
            if m == current:
                switch_usd[m, i] = 0.0
                switch_per_h[m, i] = 0.0
            else:
                cost = switching_cost_usd(downtime_h[m], revenue[m, i], fixed)
                switch_usd[m, i] = cost
                switch_per_h[m, i] = amortized_usd_per_hour(cost, expected_stay_h)


@compiled
def score_table(
    site: npt.NDArray[np.int32],
    algorithm: npt.NDArray[np.int32],
    hashrate: F64,
    watts_mine: F64,
    watts_idle: F64,
    watts_ai: F64,
    gpus: F64,
    gpu_model: npt.NDArray[np.int32],
    mode: npt.NDArray[np.int8],
    reachable: npt.NDArray[np.bool_],
    ai_gpus_busy: F64,
    ai_interruptible: npt.NDArray[np.bool_],
    pool_fee: F64,
    platform_fee: F64,
    adder_usd_mwh: F64,
    profile: npt.NDArray[np.int32],
    downtime_h_by_profile: F64,
    wear_usd: F64,
    gpu_rows: npt.NDArray[np.intp],
    power_usd_mwh_by_site: F64,
    usd_per_unit_day_by_algorithm: F64,
    market_usd_per_gpu_hour: F64,
    offered_usd_per_gpu_hour: F64,
    pending_by_model: F64,
    pending_any: float,
    expected_by_model: F64,
    expected_any: float,
    headroom: float,
    eviction_penalty_gpu_hours: float,
    expected_stay_h: float,
    terms: F64,
    fill: F64,
) -> None:
    """The whole score table in one call: base terms, AI demand fill, AI and switching
    terms (see the three loops above, which this runs in order).

    `terms` is (5, 3, n): revenue, power cost, value, switch cost (USD), switch cost per
    hour. A GPU model is priced at the tenants' offer where they made one, else at the
    market rate; with no market prices at all, no GPU row is priced or filled.
    """
    revenue, power_cost, value = terms[0], terms[1], terms[2]
    n_models = offered_usd_per_gpu_hour.shape[0]
    power_price = np.empty(site.shape[0])
    base_terms(
        site,
        algorithm,
        hashrate,
        watts_mine,
        watts_idle,
        pool_fee,
        adder_usd_mwh,
        power_usd_mwh_by_site,
        usd_per_unit_day_by_algorithm,
        revenue,
        power_cost,
        power_price,
    )
    gpu_usd_by_model = np.full(n_models, np.nan)
    fill[:] = 0.0
    if gpu_rows.shape[0] > 0 and market_usd_per_gpu_hour.shape[0] > 0:
        for k in range(n_models):
            offered = offered_usd_per_gpu_hour[k]
            gpu_usd_by_model[k] = market_usd_per_gpu_hour[k] if np.isnan(offered) else offered
        allocate_fill(
            gpu_rows,
            reachable,
            gpus,
            ai_gpus_busy,
            gpu_model,
            mode,
            revenue,
            power_cost,
            pending_by_model,
            pending_any,
            expected_by_model,
            expected_any,
            headroom,
            fill,
        )
    ai_and_switch_terms(
        mode,
        gpu_model,
        gpus,
        watts_idle,
        watts_ai,
        ai_gpus_busy,
        ai_interruptible,
        platform_fee,
        profile,
        downtime_h_by_profile,
        wear_usd,
        power_price,
        gpu_usd_by_model,
        eviction_penalty_gpu_hours,
        expected_stay_h,
        fill,
        revenue,
        power_cost,
        value,
        terms[3],
        terms[4],
    )


@compiled
def seconds_since(since: F64, now_s: float, out: F64) -> None:
    """Seconds since each time in `since` (0 for times in the future)."""
    for i in range(since.shape[0]):
        out[i] = max(now_s - since[i], 0.0)


# --- guards -------------------------------------------------------------------------------


@compiled
def first_unknown_reason(reason: npt.NDArray[Any], known: npt.NDArray[np.bool_]) -> int:
    """Index of the first reason that is not a known code (an integer in `known`), or -1."""
    for i in range(reason.shape[0]):
        r = reason[i]
        if not (r >= 0 and r < known.shape[0] and r == int(r) and known[int(r)]):
            return i
    return -1


@compiled
def coerce_target(
    proposed: Any, proposed_reason: Any, current: int, is_gpu: bool,
    invalid_reason: int, unsupported_reason: int,
) -> tuple[int, int]:
    """One node's target and reason: a target that is not a mode keeps the current mode,
    and an ASIC cannot be sent to AI."""
    if proposed >= 0 and proposed <= AI and proposed == int(proposed):
        target, why = int(proposed), int(proposed_reason)
    else:
        target, why = current, invalid_reason
    if target == AI and not is_gpu:
        target, why = current, unsupported_reason
    return target, why


@compiled
def hold_protected(
    proposed: npt.NDArray[Any],
    proposed_reason: npt.NDArray[Any],
    current: npt.NDArray[np.int8],
    is_gpu: npt.NDArray[np.bool_],
    hold_all_reason: int,
    opt_out: npt.NDArray[np.bool_],
    reachable: npt.NDArray[np.bool_],
    state: npt.NDArray[np.int8],
    steady_state: npt.NDArray[np.bool_],
    lease_until: F64,
    ai_interruptible: npt.NDArray[np.bool_],
    dwell_s: F64,
    since: F64,
    switch_load: F64,
    now_s: float,
    min_dwell_s: float,
    max_switches_per_day: float,
    switch_load_half_life_s: float,
    reasons: npt.NDArray[np.int16],
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    leased: npt.NDArray[np.bool_],
) -> tuple[int, int]:
    """Coerce each proposed target (`coerce_target`) into `target`/`reason`, then hold
    every change a per-node protection forbids, first protection wins.

    `reasons` are the codes for: opt-out, unreachable, in transition, lease, min dwell,
    node switch budget, invalid target, unsupported mode. `hold_all_reason` ≥ 0 holds
    every change (frozen, stale data). An empty `switch_load` skips the node budget. Marks
    protected leases in `leased`. Returns (changes left, nodes that switched within the
    last hour).
    """
    changing = 0
    recent = 0
    use_load = switch_load.shape[0] > 0
    for i in range(current.shape[0]):
        cur = current[i]
        t, why = coerce_target(
            proposed[i], proposed_reason[i], cur, is_gpu[i], reasons[6], reasons[7]
        )
        protected = cur == AI and lease_until[i] > now_s and not ai_interruptible[i]
        leased[i] = protected
        if since[i] > now_s - 3600.0 and since[i] > 0:
            recent += 1
        if t != cur:
            if hold_all_reason >= 0:
                t, why = cur, hold_all_reason
            elif opt_out[i]:
                t, why = cur, reasons[0]
            elif not reachable[i]:
                t, why = cur, reasons[1]
            elif not steady_state[state[i]]:
                t, why = cur, reasons[2]
            elif protected:
                t, why = cur, reasons[3]
            elif dwell_s[i] < min_dwell_s:
                t, why = cur, reasons[4]
            elif use_load:
                age = max(now_s - since[i], 0.0)
                load = switch_load[i] * np.exp2(-age / switch_load_half_life_s)
                if load + 1.0 > max_switches_per_day:
                    t, why = cur, reasons[5]
            if t != cur:
                changing += 1
        target[i] = t
        reason[i] = why
    return changing, recent


@compiled
def keep_most_valuable(
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    current: npt.NDArray[np.int8],
    value: F64,
    switch_per_h: F64,
    budget: int,
    held_reason: int,
) -> None:
    """Keep the `budget` changes of highest gain after amortized switching cost (ties in
    fleet order, unknown gains last); hold the others with `held_reason`."""
    nodes = np.flatnonzero(target != current)
    lost_gain = np.empty(nodes.shape[0])
    for k in range(nodes.shape[0]):
        i = nodes[k]
        t = target[i]
        lost_gain[k] = -(value[t, i] - value[current[i], i] - switch_per_h[t, i])
    order = np.argsort(lost_gain, kind="mergesort")
    for k in order[budget:]:
        i = nodes[k]
        target[i] = current[i]
        reason[i] = held_reason


@compiled
def site_power(
    target: npt.NDArray[np.int8],
    watts_by_mode: F64,
    site: npt.NDArray[np.int32],
    out: F64,
) -> None:
    """Full-load draw of the plan per site, W (summed into `out`, zeroed first)."""
    out[:] = 0.0
    for i in range(target.shape[0]):
        out[site[i]] += watts_by_mode[target[i], i]


@compiled
def _comes_first(priority: F64, a: int, b: int) -> bool:
    """Ascending priority, NaN last, ties in candidate order: a stable sort's order."""
    pa, pb = priority[a], priority[b]
    a_nan, b_nan = bool(np.isnan(pa)), bool(np.isnan(pb))
    if a_nan != b_nan:
        return b_nan
    if not a_nan and pa != pb:
        return bool(pa < pb)
    return a < b


@compiled
def _sift_down(heap: npt.NDArray[np.intp], at: int, size: int, priority: F64) -> None:
    while True:
        first = at
        for child in (2 * at + 1, 2 * at + 2):
            if child < size and _comes_first(priority, heap[child], heap[first]):
                first = child
        if first == at:
            return
        heap[at], heap[first] = heap[first], heap[at]
        at = first


@compiled
def _shed(
    candidates: npt.NDArray[np.intp],
    saving: F64,
    priority: F64,
    site: npt.NDArray[np.int32],
    excess: F64,
) -> npt.NDArray[np.intp]:
    """Pick candidates in ascending `priority` (stable), each site until its excess is
    covered. Candidates that save nothing, or whose site is not over, are skipped.

    A heap, not a sort: a cap usually needs a few nodes out of the whole fleet, so the
    cost is one linear heapify plus a pop per candidate looked at.
    """
    m = candidates.shape[0]
    heap = np.arange(m)
    for at in range(m // 2 - 1, -1, -1):
        _sift_down(heap, at, m, priority)
    covered = np.zeros(excess.shape[0])
    sites_open = 0
    for s in range(excess.shape[0]):
        if excess[s] > 0:
            sites_open += 1
    picked = np.empty(m, dtype=np.intp)
    count = 0
    size = m
    while size > 0 and sites_open > 0:
        j = heap[0]
        size -= 1
        heap[0] = heap[size]
        _sift_down(heap, 0, size, priority)
        node = candidates[j]
        s = site[node]
        if excess[s] <= 0 or saving[j] <= 0 or not covered[s] < excess[s]:
            continue
        picked[count] = node
        count += 1
        covered[s] += saving[j]
        if not covered[s] < excess[s]:
            sites_open -= 1
    return picked[:count]


@compiled
def power_cap(
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    current: npt.NDArray[np.int8],
    site: npt.NDArray[np.int32],
    watts: F64,
    value: F64,
    switch_per_h: F64,
    leased: npt.NDArray[np.bool_],
    opt_out: npt.NDArray[np.bool_],
    reachable: npt.NDArray[np.bool_],
    dwell_s: F64,
    min_dwell_s: float,
    cap_w: F64,
    reverted_reason: int,
    curtailed_reason: int,
    power: F64,
) -> None:
    """Bring each site's planned full-load draw under its cap; `power` is the draw per
    site on entry and on return.

    1. Revert changes that add power, lowest gain per added watt first.
    2. Still over (the cap fell, or prices moved): curtail to idle, least value per watt
       first; nodes inside their min dwell go last; protected leases never, nor opted-out
       or unreachable nodes: they cannot be commanded, so curtailing them on paper would
       count power that never goes away.
    """
    n = target.shape[0]
    excess = power - cap_w
    if not np.any(excess > 0):
        return
    adds = np.empty(n, dtype=np.intp)
    added_w = np.empty(n)
    priority = np.empty(n)
    k = 0
    for i in range(n):
        t, c = target[i], current[i]
        if t != c and watts[t, i] > watts[c, i]:
            extra = watts[t, i] - watts[c, i]
            gain = value[t, i] - value[c, i] - switch_per_h[t, i]
            adds[k] = i
            added_w[k] = extra
            priority[k] = gain / max(extra, 1e-9)
            k += 1
    if k:
        for i in _shed(adds[:k], added_w[:k], priority[:k], site, excess):
            target[i] = current[i]
            reason[i] = reverted_reason
        site_power(target, watts, site, power)
        excess = power - cap_w
    if not np.any(excess > 0):
        return
    k = 0
    for i in range(n):
        t = target[i]
        saving = watts[t, i] - watts[IDLE, i]
        movable = not leased[i] and not opt_out[i] and reachable[i]
        if t != IDLE and movable and saving > 0:
            per_watt = value[t, i] / max(saving, 1e-9)
            # Dwell-protected nodes sort after all others (offset beyond any ratio).
            offset = 1e18 if dwell_s[i] < min_dwell_s else 0.0
            adds[k] = i
            added_w[k] = saving
            priority[k] = offset + min(max(per_watt, -1e17), 1e17)
            k += 1
    for i in _shed(adds[:k], added_w[:k], priority[:k], site, excess):
        target[i] = IDLE
        reason[i] = curtailed_reason
    site_power(target, watts, site, power)


@compiled
def guard_plan(
    proposed: npt.NDArray[Any],
    proposed_reason: npt.NDArray[Any],
    known_reasons: npt.NDArray[np.bool_],
    current: npt.NDArray[np.int8],
    is_gpu: npt.NDArray[np.bool_],
    site: npt.NDArray[np.int32],
    opt_out: npt.NDArray[np.bool_],
    reachable: npt.NDArray[np.bool_],
    state: npt.NDArray[np.int8],
    steady_state: npt.NDArray[np.bool_],
    lease_until: F64,
    ai_interruptible: npt.NDArray[np.bool_],
    dwell_s: F64,
    since: F64,
    switch_load: F64,
    watts: F64,
    value: F64,
    switch_per_h: F64,
    cap_w: F64,
    now_s: float,
    min_dwell_s: float,
    cap_min_dwell_s: float,
    max_switches_per_day: float,
    switch_load_half_life_s: float,
    fleet_switches_per_hour: int,
    hold_all_reason: int,
    enforce_cap: bool,
    reasons: npt.NDArray[np.int16],
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    power: F64,
    over_cap: npt.NDArray[np.bool_],
    changed: npt.NDArray[np.intp],
) -> int:
    """Every guard in its fixed order, in one call: refuse unknown reason codes, coerce
    the policy's targets into `target`/`reason`, hold what a per-node protection forbids,
    keep the most valuable changes within the fleet's hourly budget, then bring each
    site under its power cap. `power` gets the plan's full-load draw per site, `over_cap`
    the sites still over their cap (only protected work left), and `changed` the nodes
    whose target differs from their mode, in fleet order.

    `reasons` are the codes for: opt-out, unreachable, in transition, lease, min dwell,
    node switch budget, invalid target, unsupported mode (what `hold_protected` writes),
    fleet switch budget, power cap reverted, power cap curtailed. `hold_all_reason` ≥ 0
    holds every change (frozen, stale data); without `enforce_cap` (frozen: nothing
    moves) no site is curtailed.
    Returns how many nodes change, or -1 - (index of the first unknown reason): then
    nothing else is done.
    """
    unknown = first_unknown_reason(proposed_reason, known_reasons)
    if unknown >= 0:
        return -1 - unknown
    leased = np.empty(current.shape[0], dtype=np.bool_)
    changing, recent = hold_protected(
        proposed,
        proposed_reason,
        current,
        is_gpu,
        hold_all_reason,
        opt_out,
        reachable,
        state,
        steady_state,
        lease_until,
        ai_interruptible,
        dwell_s,
        since,
        switch_load,
        now_s,
        min_dwell_s,
        max_switches_per_day,
        switch_load_half_life_s,
        reasons[:8],
        target,
        reason,
        leased,
    )
    # `recent` nodes switched within the last hour and count against the budget.
    budget = max(fleet_switches_per_hour - recent, 0)
    if changing > budget:
        keep_most_valuable(target, reason, current, value, switch_per_h, budget, reasons[8])
    site_power(target, watts, site, power)
    if enforce_cap:
        power_cap(
            target,
            reason,
            current,
            site,
            watts,
            value,
            switch_per_h,
            leased,
            opt_out,
            reachable,
            dwell_s,
            cap_min_dwell_s,
            cap_w,
            reasons[9],
            reasons[10],
            power,
        )
    for j in range(power.shape[0]):
        # Tolerance for the sums after curtailment, not a margin on the cap.
        over_cap[j] = power[j] > cap_w[j] + 1e-6
    count = 0
    for i in range(target.shape[0]):
        if target[i] != current[i]:
            changed[count] = i
            count += 1
    return count


# --- AI demand ----------------------------------------------------------------------------


@compiled
def allocate_fill(
    rows: npt.NDArray[np.intp],
    reachable: npt.NDArray[np.bool_],
    gpus_all: F64,
    busy_all: F64,
    gpu_model: npt.NDArray[np.int32],
    mode: npt.NDArray[np.int8],
    revenue: F64,
    power_cost: F64,
    pending_by_model: F64,
    pending_any: float,
    expected_by_model: F64,
    expected_any: float,
    headroom: float,
    fill: F64,
) -> None:
    """Share of each GPU node's GPUs that demand would fill in AI mode, into `fill`.

    Running pods stay where they are. Pending GPUs of a model go first to free GPUs on
    nodes of that model already in AI, then to other nodes in order of least mining value
    (revenue − power cost in the mine row) given up. Jobs that accept any model take what
    is left, in the same order. Only GPU rows (`rows`) are visited. `expected_by_model` is
    empty when the source does not track expected demand per model.
    """
    sel = np.empty(rows.shape[0], dtype=np.intp)
    m = 0
    for r in rows:
        if reachable[r] and gpus_all[r] > 0:
            sel[m] = r
            m += 1
    if m == 0:
        return
    n_models = pending_by_model.shape[0]
    busy = np.empty(m)
    fill_gpus = np.empty(m)
    busy_by_model = np.zeros(n_models)
    busy_total = 0.0
    for j in range(m):
        r = sel[j]
        b = min(busy_all[r], gpus_all[r])
        busy[j] = b
        fill_gpus[j] = b
        if gpu_model[r] < n_models:
            busy_by_model[gpu_model[r]] += b
        busy_total += b
    pending = pending_by_model.copy()
    if expected_by_model.shape[0] > 0 or expected_any > 0:
        # Expected demand beyond what already runs counts as waiting work.
        scale = 1.0 + headroom
        for k in range(min(expected_by_model.shape[0], n_models)):
            pending[k] = max(pending[k], expected_by_model[k] * scale - busy_by_model[k])
        pending_any = max(pending_any, expected_any * scale - busy_total)

    # Candidates with free GPUs, ordered by model, AI nodes first, then by mining value
    # given up (ascending); ties keep fleet order.
    cand = np.empty(m, dtype=np.intp)
    c = 0
    for j in range(m):
        if gpus_all[sel[j]] - busy[j] > 0:
            cand[c] = j
            c += 1
    cand = cand[:c]
    mine_value = np.empty(c)
    n_keys = 2
    for k in range(c):
        r = sel[cand[k]]
        mine_value[k] = revenue[MINE, r] - power_cost[MINE, r]
        n_keys = max(n_keys, 2 * gpu_model[r] + 2)
    by_value = cand[np.argsort(mine_value, kind="mergesort")]
    key = np.empty(c, dtype=np.intp)
    for k in range(c):
        r = sel[by_value[k]]
        key[k] = 2 * gpu_model[r] + (0 if mode[r] == AI else 1)
    order = by_value[np.argsort(key, kind="mergesort")]

    before_model = np.zeros(max(n_models, n_keys // 2))
    before_any = 0.0
    for j in order:
        r = sel[j]
        model = gpu_model[r]
        cap = gpus_all[r] - busy[j]
        take = min(max(pending[model] - before_model[model], 0.0), cap)
        before_model[model] += cap
        fill_gpus[j] += take
        if pending_any > 0:
            # Any-model demand takes the remaining capacity in the same order, pooled.
            left = cap - take
            fill_gpus[j] += min(max(pending_any - before_any, 0.0), left)
            before_any += left
    for j in range(m):
        fill[sel[j]] = fill_gpus[j] / gpus_all[sel[j]]
