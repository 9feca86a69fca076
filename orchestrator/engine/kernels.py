"""Compiled per-node loops for the hot parts of a decision (numba).

Each numpy expression in the score table and the guards is a full pass over the fleet
and a Python-level call; a decision made of a few hundred of them is bound by call
overhead at 1k nodes and by memory traffic at 1M. These loops do the same arithmetic in
one pass per node, calling the formulas in `orchestrator.economics` compiled as they are
(one source for every formula). They are the engine's only implementation of these
steps, not a second path: `NUMBA_DISABLE_JIT=1` runs them as plain Python for debugging.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.framework.jit import AI, IDLE, MINE, compiled
from orchestrator.framework.reasons import Reason

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
            gpu_usd_by_model,
            platform_fee,
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

# The reason codes the guards write, as plain ints: compiled loops read module globals as
# constants, and an IntEnum member would cost a lookup per use.
OPT_OUT = int(Reason.GUARD_OPT_OUT)
UNREACHABLE = int(Reason.GUARD_UNREACHABLE)
IN_TRANSITION = int(Reason.GUARD_IN_TRANSITION)
LEASE_PROTECTED = int(Reason.GUARD_LEASE_PROTECTED)
MIN_DWELL = int(Reason.GUARD_MIN_DWELL)
NODE_SWITCH_BUDGET = int(Reason.GUARD_NODE_SWITCH_BUDGET)
INVALID_TARGET = int(Reason.GUARD_INVALID_TARGET)
UNSUPPORTED_MODE = int(Reason.GUARD_UNSUPPORTED_MODE)
FLEET_SWITCH_BUDGET = int(Reason.GUARD_FLEET_SWITCH_BUDGET)
CAP_REVERTED = int(Reason.GUARD_POWER_CAP_REVERTED)
CAP_CURTAILED = int(Reason.GUARD_POWER_CAP_CURTAILED)


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
    proposed: Any, proposed_reason: Any, current: int, is_gpu: bool
) -> tuple[int, int]:
    """One node's target and reason: a target that is not a mode keeps the current mode,
    and an ASIC cannot be sent to AI."""
    if proposed >= 0 and proposed <= AI and proposed == int(proposed):
        target, why = int(proposed), int(proposed_reason)
    else:
        target, why = current, INVALID_TARGET
    if target == AI and not is_gpu:
        target, why = current, UNSUPPORTED_MODE
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
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    fixed: npt.NDArray[np.bool_],
    young: npt.NDArray[np.bool_],
) -> tuple[int, int]:
    """Coerce each proposed target (`coerce_target`) into `target`/`reason`, then hold
    every change a per-node protection forbids, first protection wins.

    `hold_all_reason` ≥ 0 holds every change (frozen, stale data). An empty
    `switch_load` skips the node budget. Marks in `fixed` the nodes no guard may move
    (protected lease, opted out, unreachable, mid-switch) and in `young` those inside
    their min dwell. Returns (changes left, nodes that switched within the last hour).
    """
    changing = 0
    recent = 0
    use_load = switch_load.shape[0] > 0
    for i in range(current.shape[0]):
        cur = current[i]
        t, why = coerce_target(proposed[i], proposed_reason[i], cur, is_gpu[i])
        protected = cur == AI and lease_until[i] > now_s and not ai_interruptible[i]
        steady = steady_state[state[i]]
        fixed[i] = protected or opt_out[i] or not reachable[i] or not steady
        young[i] = dwell_s[i] < min_dwell_s
        if since[i] > now_s - 3600.0 and since[i] > 0:
            recent += 1
        if t != cur:
            if hold_all_reason >= 0:
                t, why = cur, hold_all_reason
            elif opt_out[i]:
                t, why = cur, OPT_OUT
            elif not reachable[i]:
                t, why = cur, UNREACHABLE
            elif not steady:
                t, why = cur, IN_TRANSITION
            elif protected:
                t, why = cur, LEASE_PROTECTED
            elif young[i]:
                t, why = cur, MIN_DWELL
            elif use_load:
                age = max(now_s - since[i], 0.0)
                load = switch_load[i] * np.exp2(-age / switch_load_half_life_s)
                if load + 1.0 > max_switches_per_day:
                    t, why = cur, NODE_SWITCH_BUDGET
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
) -> None:
    """Keep the `budget` changes of highest gain after amortized switching cost (ties in
    fleet order, unknown gains last); hold the others."""
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
        reason[i] = FLEET_SWITCH_BUDGET


@compiled
def site_power(
    target: npt.NDArray[np.int8],
    watts_by_mode: F64,
    site: npt.NDArray[np.int32],
    out: F64,
) -> None:
    """Full-load draw of the plan per site, W (summed into `out`, zeroed first)."""
    out[:] = 0.0
    if out.shape[0] == 1:
        # One site: the same sum in the same order, kept in a register rather than
        # stored and loaded back per node (about twice as fast at 10k nodes).
        total = 0.0
        for i in range(target.shape[0]):
            total += watts_by_mode[target[i], i]
        out[0] = total
        return
    for i in range(target.shape[0]):
        out[site[i]] += watts_by_mode[target[i], i]


@compiled
def _before(pa: float, a: int, pb: float, b: int) -> bool:
    """Whether (priority pa, index a) comes before (pb, b): ascending priority, NaN last,
    ties in index order (a stable sort's order)."""
    if pa < pb:
        return True
    if pa > pb:
        return False
    # Equal, or NaN on either side (NaN compares false both ways).
    a_nan, b_nan = math.isnan(pa), math.isnan(pb)
    if a_nan != b_nan:
        return b_nan
    return a < b


@compiled
def _comes_first(priority: F64, a: int, b: int) -> bool:
    """Ascending priority, NaN last, ties in candidate order: a stable sort's order."""
    return _before(priority[a], a, priority[b], b)


@compiled
def _sift_up(heap: npt.NDArray[np.intp], base: int, at: int, priority: F64) -> None:
    """Restore the heap (the step that comes last on top) after adding at `base + at`."""
    while at > 0:
        parent = (at - 1) // 2
        if not _comes_first(priority, heap[base + parent], heap[base + at]):
            return
        heap[base + parent], heap[base + at] = heap[base + at], heap[base + parent]
        at = parent


@compiled
def _sift_down(heap: npt.NDArray[np.intp], base: int, size: int, priority: F64) -> None:
    """Restore the heap after its top at `base` was replaced."""
    at = 0
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and _comes_first(priority, heap[base + child], heap[base + child + 1]):
            child += 1
        if not _comes_first(priority, heap[base + at], heap[base + child]):
            return
        heap[base + at], heap[base + child] = heap[base + child], heap[base + at]
        at = child


@compiled
def _offer_step(
    j: int, heap: npt.NDArray[np.intp], base: int, size: int, covered: float, need: float,
    priority: F64, saving: F64,
) -> tuple[int, float]:
    """Offer step j to one site's covering set, kept in `heap[base : base + size]` with
    its savings summing to `covered`: the shortest run, in ascending `priority` (NaN
    last, ties by step index: `_comes_first`), of the steps offered so far whose savings
    cover `need` (all of them while they fall short). Returns the new size and sum.

    The set's last step sits on top of a heap. A step that comes after it once the set
    covers the need is added and at once taken out again; `allocate_cap` turns such steps
    away before the call, in one comparison (a cap usually needs few steps of the whole
    fleet, so most steps cost just that). Savings must be positive.
    """
    heap[base + size] = j
    _sift_up(heap, base, size, priority)
    size += 1
    covered += saving[j]
    # The step on top is not needed while the others cover the need without it.
    while size > 0 and covered - saving[heap[base]] >= need:
        covered -= saving[heap[base]]
        size -= 1
        heap[base] = heap[base + size]
        _sift_down(heap, base, size, priority)
    return size, covered


#: Improving moves (an admission, or a swap) the cap makes per site and decision at most.
MAX_SWAP_ROUNDS = 64
#: Relative tolerance under which a swap does not count as raising value (float noise).
_SWAP_EPS = 1e-9


@compiled
def _utility(value: F64, switch_per_h: F64, m: int, i: int) -> float:
    """USD/h of node i in mode m after amortized switching cost (0 for its current mode)."""
    return float(value[m, i] - switch_per_h[m, i])


@compiled
def _lower_option_first(
    watts: F64, value: F64, switch_per_h: F64, m: int, a: int, i: int
) -> bool:
    """Whether option m of node i comes before option a among its lower options: it
    draws more, or as much and is worth more (of two alike, where the cap would shed)."""
    return bool(watts[m, i] > watts[a, i] or (
        watts[m, i] == watts[a, i]
        and _utility(value, switch_per_h, m, i) > _utility(value, switch_per_h, a, i)
    ))


@compiled
def cap_options(
    plan: int, current: int, w_plan: float, w_current: float, w_idle: float, young: bool
) -> tuple[int, int, int]:
    """Modes the cap may leave a node in, the plan first: the plan, its current mode and
    idle, each only if it draws no more than the plan (the cap never adds load). A node
    inside its min dwell keeps its mode unless the plan already leaves it (idle then comes
    only from the last-resort pass). Returns (how many, second option, third option), -1
    for an option that is not there. Scalars only: compiled calls taking arrays are not
    inlined, and this runs once per node of an over-cap site."""
    k, second, third = 1, -1, -1
    if current != plan and w_current <= w_plan:
        second = current
        k += 1
    keeps_mode = young and plan == current
    # Idle is the lowest mode: new as an option only when neither plan nor mode is idle.
    if min(plan, current) != IDLE and w_idle <= w_plan and not keeps_mode:
        if k == 1:
            second = IDLE
        else:
            third = IDLE
        k += 1
    return k, second, third


@compiled
def _set_options(
    i: int, plan: int, current: int, watts: F64, young: bool, options: npt.NDArray[np.int8]
) -> int:
    """Row i of `options` from `cap_options`; returns how many (rare paths only)."""
    k, second, third = cap_options(
        plan, current, watts[plan, i], watts[current, i], watts[IDLE, i], young
    )
    options[i, 0], options[i, 1], options[i, 2] = plan, second, third
    return k


@compiled
def _shed_steps(
    plan: int, i: int, options: npt.NDArray[np.int8], k: int, watts: F64, value: F64,
    switch_per_h: F64,
) -> tuple[int, float, int, float]:
    """Shedding steps of one node, top down along the upper concave hull of its options
    in (watts, USD/h): (mode after the first step, USD/h lost per W, mode after a second
    step or -1, its USD/h lost per W). On a hull the second step never costs less per
    watt than the first, so one ascending pass sheds them in order."""
    w0 = watts[plan, i]
    u0 = _utility(value, switch_per_h, plan, i)
    # Lower options by watts, highest first; of two with equal draw keep the better.
    a, b = -1, -1
    for j in range(1, k):
        m = int(options[i, j])
        if watts[m, i] >= w0:
            continue
        if a < 0:
            a = m
        elif _lower_option_first(watts, value, switch_per_h, m, a, i):
            b, a = a, m
        else:
            b = m
    if a < 0:
        return -1, 0.0, -1, 0.0
    if b >= 0 and watts[b, i] == watts[a, i]:
        b = -1
    ua, wa = _utility(value, switch_per_h, a, i), watts[a, i]
    slope_a = (u0 - ua) / (w0 - wa)
    if b < 0:
        return a, slope_a, -1, 0.0
    ub, wb = _utility(value, switch_per_h, b, i), watts[b, i]
    slope_b = (u0 - ub) / (w0 - wb)
    if slope_a <= slope_b:
        return a, slope_a, b, (ua - ub) / (wa - wb)
    return b, slope_b, -1, 0.0


@compiled
def _admit_what_fits(
    nodes: npt.NDArray[np.intp],
    options: npt.NDArray[np.int8],
    n_options: npt.NDArray[np.intp],
    target: npt.NDArray[np.int8],
    watts: F64,
    value: F64,
    switch_per_h: F64,
    cap_w: float,
    power: F64,
) -> npt.NDArray[np.intp]:
    """Take back shed loads that fit in what the shedding freed beyond the excess, most
    USD/h per watt first (one pass; `_best_swap` then finds what is left). Returns the
    nodes still below their plan, in fleet order."""
    k = 0
    node = np.empty(nodes.shape[0], dtype=np.intp)
    for i in nodes:
        if target[i] != options[i, 0]:
            node[k] = i
            k += 1
    node = node[:k]
    if k == 0:
        return node
    to = np.empty(k, dtype=np.int8)
    density = np.empty(k)
    for j in range(k):
        i = node[j]
        # The plan itself: the highest option, what the load was shed from.
        m = options[i, 0]
        to[j] = m
        dw = watts[m, i] - watts[target[i], i]
        du = _utility(value, switch_per_h, m, i) - _utility(value, switch_per_h, target[i], i)
        density[j] = -du / max(dw, 1e-9) if du > 0 else np.inf
    for j in np.argsort(density, kind="mergesort"):
        if not np.isfinite(density[j]):
            break
        i = node[j]
        dw = watts[to[j], i] - watts[target[i], i]
        if power[0] + dw <= cap_w:
            power[0] += dw
            target[i] = to[j]
    return _below_plan(node, -1, options, target)


@compiled
def _below_plan(
    nodes: npt.NDArray[np.intp], also: int, options: npt.NDArray[np.int8],
    target: npt.NDArray[np.int8],
) -> npt.NDArray[np.intp]:
    """Of `nodes` and `also` (-1: none), those whose target is below their plan (the
    only ones that can be admitted: the plan is a node's highest option), in fleet order."""
    out = np.empty(nodes.shape[0] + 1, dtype=np.intp)
    k = 0
    for i in nodes:
        if i != also and target[i] != options[i, 0]:
            out[k] = i
            k += 1
    if also >= 0 and target[also] != options[also, 0]:
        out[k] = also
        k += 1
        return np.sort(out[:k])
    return out[:k]


@compiled
def _partner(
    i: int, dw: float, du: float, need: F64, first: npt.NDArray[np.intp],
    second: npt.NDArray[np.intp], up_node: npt.NDArray[np.intp], up_du: F64, best: float,
) -> tuple[float, int]:
    """The admission that pairs best with node i's shedding move (dw < 0 W, du USD/h):
    the one of most gain among those needing at most -dw W, on another node (`first`,
    `second` by watts needed, see `_best_swap`). Returns (gain of the pair, admission), or
    (best, -1) when no pair beats `best`."""
    count = np.searchsorted(need, -dw, side="right")
    if count == 0:
        return best, -1
    c = first[count - 1]
    if up_node[c] == i:
        c = second[count - 1]
        if c < 0:
            return best, -1
    gain = up_du[c] + du
    if gain > best + _SWAP_EPS * max(abs(up_du[c]), 1.0):
        return gain, c
    return best, -1


@compiled
def _best_swap(
    nodes: npt.NDArray[np.intp],
    shed: npt.NDArray[np.intp],
    options: npt.NDArray[np.int8],
    n_options: npt.NDArray[np.intp],
    target: npt.NDArray[np.int8],
    watts: F64,
    value: F64,
    switch_per_h: F64,
    headroom: float,
    down_save: F64,
    down_loss: F64,
) -> tuple[float, int, int, int, int]:
    """The admission or the pair (one load shed, another admitted) that raises the site's
    USD/h most within `headroom` W: (gain, node, mode, node, mode), -1 unused.

    Admissions come from `shed`, the nodes below their plan. Those that do not fit alone are
    sorted by the watts they need freed, with a running best (and best on another node)
    of what they gain; each shedding move then finds its best partner by binary search.
    A node with two options at its plan sheds by the one step `allocate_cap` priced:
    `down_save[i]` W for `down_loss[i]` USD/h.
    """
    best, bi, bm, bj, bmode = 0.0, -1, -1, -1, -1
    cap = shed.shape[0] * 2
    up_node = np.empty(cap, dtype=np.intp)
    up_mode = np.empty(cap, dtype=np.intp)
    up_need = np.empty(cap)
    up_du = np.empty(cap)
    n_up = 0
    most = 0.0
    for i in shed:
        cur = target[i]
        u_cur = _utility(value, switch_per_h, cur, i)
        for j in range(n_options[i]):
            m = options[i, j]
            if m == cur:
                continue
            dw = watts[m, i] - watts[cur, i]
            du = _utility(value, switch_per_h, m, i) - u_cur
            if dw <= 0:
                # Shedding on its own is never asked for here: only as the other half of a
                # swap (the cap sheds no more than it must).
                continue
            if dw <= headroom:
                if du > best + _SWAP_EPS * max(abs(u_cur), 1.0):
                    best, bi, bm, bj, bmode = du, i, m, -1, -1
            else:
                # Even one that loses USD/h: paired with a shed load that gains more (a
                # planned load worth less than idling), the swap still raises value.
                up_node[n_up], up_mode[n_up] = i, m
                up_need[n_up], up_du[n_up] = dw - headroom, du
                most = du if n_up == 0 else max(most, du)
                n_up += 1
    if n_up == 0:
        return best, bi, bm, bj, bmode
    order = np.argsort(up_need[:n_up], kind="mergesort")
    need = up_need[:n_up][order]
    # Best admission (most USD/h gained) among the first k by watts needed, and the best
    # on a different node, so a shedding move never pairs with its own node.
    first = np.empty(n_up, dtype=np.intp)
    second = np.empty(n_up, dtype=np.intp)
    f, s2 = -1, -1
    for k in range(n_up):
        c = order[k]
        if f < 0 or up_du[c] > up_du[f]:
            if f >= 0 and up_node[f] != up_node[c]:
                s2 = f
            f = c
        elif up_node[c] != up_node[f] and (s2 < 0 or up_du[c] > up_du[s2]):
            s2 = c
        first[k], second[k] = f, s2
    for i in nodes:
        cur = target[i]
        if n_options[i] == 2 and cur == options[i, 0]:
            # Most nodes: a load at its plan with one lower option, its step priced
            # already. Only a move that loses less than the best admission gains can pay
            # for one, so most are passed over on one comparison.
            if down_save[i] <= 0 or most - down_loss[i] <= best:
                continue
            gain, c = _partner(i, -down_save[i], -down_loss[i], need, first, second,
                               up_node, up_du, best)
            if c >= 0:
                best, bi, bm, bj, bmode = gain, up_node[c], up_mode[c], i, options[i, 1]
            continue
        for j in range(n_options[i]):
            m = options[i, j]
            dw = watts[m, i] - watts[cur, i]
            if dw >= 0:
                continue
            du = _utility(value, switch_per_h, m, i) - _utility(value, switch_per_h, cur, i)
            if du + most <= best:
                continue
            gain, c = _partner(i, dw, du, need, first, second, up_node, up_du, best)
            if c >= 0:
                best, bi, bm, bj, bmode = gain, up_node[c], up_mode[c], i, m
    return best, bi, bm, bj, bmode


@compiled
def _name_what_gave_way(
    nodes: npt.NDArray[np.intp],
    plan: npt.NDArray[np.int8],
    current: npt.NDArray[np.int8],
    target: npt.NDArray[np.int8],
    options: npt.NDArray[np.int8],
    n_options: npt.NDArray[np.intp],
    watts: F64,
    value: F64,
    switch_per_h: F64,
    down_save: F64,
    down_loss: F64,
    reason: npt.NDArray[np.int16],
    gave_way_to: npt.NDArray[np.intp],
    usd_per_kwh: F64,
) -> None:
    """For one site: each load shed gets its reason, what it gave up per kW·h, and the
    kept load it gave way to: the one of least USD per kW·h, a newly planned change where
    one was kept (that load's USD/kW·h is written too). A kept load with two options is
    valued by the step `allocate_cap` priced (`down_save`, `down_loss`, as `_best_swap`)."""
    planned, planned_density = -1, np.inf
    other, other_density = -1, np.inf
    shed = np.empty(nodes.shape[0], dtype=np.intp)
    n_shed = 0
    for i in nodes:
        t, p = target[i], plan[i]
        if t != p:
            shed[n_shed] = i
            n_shed += 1
            reason[i] = CAP_REVERTED if t == current[i] else CAP_CURTAILED
            if watts[p, i] > watts[t, i]:
                usd_per_kwh[i] = 1000.0 * (
                    _utility(value, switch_per_h, p, i) - _utility(value, switch_per_h, t, i)
                ) / (watts[p, i] - watts[t, i])
            continue
        # A kept load, valued against the next lower option it could have been shed to.
        if n_options[i] == 2:
            if down_save[i] <= 0:
                continue
            density = down_loss[i] / down_save[i]
        else:
            lower = -1
            for j in range(1, n_options[i]):
                m = options[i, j]
                if watts[m, i] < watts[t, i] and (
                    lower < 0 or _lower_option_first(watts, value, switch_per_h, m, lower, i)
                ):
                    lower = m
            if lower < 0:
                continue
            density = (
                _utility(value, switch_per_h, t, i) - _utility(value, switch_per_h, lower, i)
            ) / (watts[t, i] - watts[lower, i])
        if t != current[i]:
            if density < planned_density:
                planned, planned_density = i, density
        elif density < other_density:
            other, other_density = i, density
    if n_shed == 0:
        return
    winner, density = (planned, planned_density) if planned >= 0 else (other, other_density)
    if winner >= 0:
        usd_per_kwh[winner] = density * 1000.0
    for k in range(n_shed):
        gave_way_to[shed[k]] = winner


@compiled
def allocate_cap(
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    current: npt.NDArray[np.int8],
    site: npt.NDArray[np.int32],
    watts: F64,
    value: F64,
    switch_per_h: F64,
    fixed: npt.NDArray[np.bool_],
    young: npt.NDArray[np.bool_],
    cap_w: F64,
    power: F64,
    gave_way_to: npt.NDArray[np.intp],
    usd_per_kwh: F64,
) -> None:
    """Bring each site's planned full-load draw under its cap as an allocation: the loads
    kept, running and newly planned alike, are those with the most USD/h per watt; the
    least valuable gives way first, whichever it is. `power` is the draw per site on
    entry and on return.

    Each node on a site over its cap may end in its plan, its current mode (the change
    reverted) or idle (curtailed), never drawing more than planned. `fixed` nodes keep
    their plan: protected leases, opted-out, unreachable or mid-switch nodes (curtailing
    them on paper would count power that never goes away). `young` nodes (inside their
    min dwell) are curtailed only when nothing else is left to shed.

    1. Shed steps along each node's value-per-watt hull, cheapest per watt first, until
       every site fits (`_offer_step`: one comparison for most steps).
    2. Admit shed loads that fit, then improve by swaps (shed one load, admit another)
       while one raises the site's USD/h and fits (`_best_swap`, at most
       `MAX_SWAP_ROUNDS` moves), so no single swap is left that would.
    3. Name what gave way to what: `gave_way_to[i]` is the kept load of least value per
       watt at i's site (a newly planned change where one was kept), and `usd_per_kwh`
       the USD per kW·h of each load shed and of the load it gave way to.
    """
    n = target.shape[0]
    n_sites = power.shape[0]
    excess = power - cap_w
    over = excess > 0
    if not np.any(over):
        return
    plan = target.copy()
    options = np.empty((n, 3), dtype=np.int8)
    n_options = np.zeros(n, dtype=np.intp)
    per_site = np.zeros(n_sites + 1, dtype=np.intp)
    # Candidates (nodes of over-cap sites that may be shed), in fleet order.
    candidates = np.empty(n, dtype=np.intp)
    n_candidates = 0
    # Shedding steps: first steps at [0, n), second steps at [n, 2n), so a tie sheds a
    # node's first step before its second.
    step_node = np.empty(2 * n, dtype=np.intp)
    step_to = np.empty(2 * n, dtype=np.int8)
    step_save = np.empty(2 * n)
    step_cost = np.empty(2 * n)
    # A node with two options: the watts and USD/h its one step down from the plan
    # saves and loses (read again by the swaps and the naming).
    down_save = np.empty(n)
    down_loss = np.empty(n)
    # Each over-cap site's cheapest steps covering its excess, streamed into one heap per
    # site at `heap[2 * per_site[s]]` (two steps per candidate node at most); with one
    # site (the common case) its heap starts at 0 and steps go in as they are built.
    heap = np.empty(2 * n, dtype=np.intp)
    size = np.zeros(n_sites, dtype=np.intp)
    covered = np.zeros(n_sites)
    stream = n_sites == 1
    shed = np.empty(0, dtype=np.intp)
    members = candidates[:0]
    for last_resort in (False, True):
        k1, k2 = 0, n
        size[:] = 0
        covered[:] = 0.0
        # One pass over the nodes (the candidates on the second): options, steps, and
        # with one site the covering set. The per-node work is written out here, not
        # called: this is the allocation's only pass over the whole fleet.
        for q in range(n if not last_resort else members.shape[0]):
            i = q if not last_resort else members[q]
            s = site[i]
            if excess[s] <= 0 or fixed[i]:
                continue
            t, cur = target[i], current[i]
            w_t = watts[t, i]
            if not last_resort:
                k, second, third = cap_options(
                    t, cur, w_t, watts[cur, i], watts[IDLE, i], young[i])
                options[i, 0], options[i, 1], options[i, 2] = t, second, third
                n_options[i] = k
                per_site[s + 1] += 1
                candidates[n_candidates] = i
                n_candidates += 1
            elif young[i] and t == cur and t != IDLE:
                n_options[i] = _set_options(i, t, cur, watts, False, options)
                k, second = n_options[i], options[i, 1]
            else:
                continue
            first = k1
            if k == 2:
                # The common case, one lower option: one step, no hull to walk.
                saving = w_t - watts[second, i]
                loss = (value[t, i] - switch_per_h[t, i]
                        - (value[second, i] - switch_per_h[second, i]))
                down_save[i], down_loss[i] = saving, loss
                if saving > 0:
                    step_node[k1], step_to[k1], step_save[k1] = i, second, saving
                    step_cost[k1] = loss / saving
                    k1 += 1
            elif k == 3:
                a, cost_a, b, cost_b = _shed_steps(t, i, options, k, watts, value, switch_per_h)
                if a < 0:
                    continue
                step_node[k1], step_to[k1] = i, a
                step_save[k1], step_cost[k1] = w_t - watts[a, i], cost_a
                k1 += 1
                if b >= 0:
                    step_node[k2], step_to[k2] = i, b
                    step_save[k2], step_cost[k2] = watts[a, i] - watts[b, i], cost_b
                    k2 += 1
            if stream and k1 > first:
                # Most steps come after the set's last once it covers: turned away here.
                top = heap[0]
                if not (size[0] > 0 and covered[0] >= excess[0]
                        and not _before(step_cost[first], first, step_cost[top], top)):
                    size[0], covered[0] = _offer_step(
                        first, heap, 0, size[0], covered[0], excess[0], step_cost, step_save)
        if not last_resort:
            for t in range(n_sites):
                per_site[t + 1] += per_site[t]
            # Candidates by site, fleet order within each (one site: already so).
            if stream:
                members = candidates[:n_candidates]
            else:
                members = np.empty(n_candidates, dtype=np.intp)
                filled = per_site[:n_sites].copy()
                for i in candidates[:n_candidates]:
                    members[filled[site[i]]] = i
                    filled[site[i]] += 1
        # With one site the first steps are in; second steps come after every first.
        for q in range(k1 if stream else 0, k1 + k2 - n):
            j = q if q < k1 else q - k1 + n
            t = site[step_node[j]]
            base = 2 * per_site[t]
            top = heap[base]
            if (
                size[t] > 0
                and covered[t] >= excess[t]
                and not _before(step_cost[j], j, step_cost[top], top)
            ):
                continue
            size[t], covered[t] = _offer_step(
                j, heap, base, size[t], covered[t], excess[t], step_cost, step_save
            )
        taken = np.empty(np.sum(size), dtype=np.intp)
        k = 0
        for t in range(n_sites):
            base = 2 * per_site[t]
            taken[k : k + size[t]] = heap[base : base + size[t]]
            k += size[t]
        # In step order: a node's second step comes after its first.
        taken = np.sort(taken)
        for j in taken:
            i = step_node[j]
            power[site[i]] -= watts[target[i], i] - watts[step_to[j], i]
            target[i] = step_to[j]
        # The nodes below their plan now: shed before (still below) and just shed, in
        # fleet order; only they can be admitted.
        below = np.empty(shed.shape[0] + taken.shape[0], dtype=np.intp)
        below[: shed.shape[0]] = shed
        for q in range(taken.shape[0]):
            below[shed.shape[0] + q] = step_node[taken[q]]
        below = np.unique(below)
        # What stays below its plan, for the last-resort pass.
        kept_shed = np.empty(0, dtype=np.intp)
        for s in range(n_sites):
            site_below = below[site[below] == s]
            if excess[s] <= 0:
                kept_shed = np.concatenate((kept_shed, site_below))
                continue
            nodes = members[per_site[s] : per_site[s + 1]]
            if last_resort:
                # Only the nodes inside their dwell are new to this pass.
                nodes = nodes[young[nodes]]
                site_below = site_below[young[site_below]]
            site_shed = _admit_what_fits(
                nodes=site_below, options=options, n_options=n_options, target=target,
                watts=watts, value=value, switch_per_h=switch_per_h, cap_w=cap_w[s],
                power=power[s : s + 1],
            )
            # Each move raises value by more than float noise, so this ends; the bound
            # keeps a decision's time in check (each round is a pass over the site).
            for _ in range(MAX_SWAP_ROUNDS):
                _gain, i, mi, j, mj = _best_swap(
                    nodes=nodes, shed=site_shed, options=options, n_options=n_options,
                    target=target, watts=watts, value=value, switch_per_h=switch_per_h,
                    headroom=cap_w[s] - power[s], down_save=down_save, down_loss=down_loss,
                )
                if i < 0:
                    break
                power[s] += watts[mi, i] - watts[target[i], i]
                target[i] = mi
                if j >= 0:
                    power[s] += watts[mj, j] - watts[target[j], j]
                    target[j] = mj
                site_shed = _below_plan(site_shed, j, options, target)
            kept_shed = np.concatenate((kept_shed, site_shed))
            excess[s] = power[s] - cap_w[s]
        shed = np.sort(kept_shed)
        if not np.any(excess > 1e-6):
            break
    # Exact sums again: the running updates above add and subtract in another order.
    site_power(target, watts, site, power)

    for s in range(n_sites):
        if not over[s]:
            continue
        _name_what_gave_way(
            nodes=members[per_site[s] : per_site[s + 1]], plan=plan, current=current,
            target=target, options=options, n_options=n_options, watts=watts, value=value,
            switch_per_h=switch_per_h, down_save=down_save, down_loss=down_loss,
            reason=reason, gave_way_to=gave_way_to, usd_per_kwh=usd_per_kwh,
        )


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
    max_switches_per_day: float,
    switch_load_half_life_s: float,
    fleet_switches_per_hour: int,
    hold_all_reason: int,
    enforce_cap: bool,
    target: npt.NDArray[np.int8],
    reason: npt.NDArray[np.int16],
    power: F64,
    over_cap: npt.NDArray[np.bool_],
    changed: npt.NDArray[np.intp],
    gave_way_to: npt.NDArray[np.intp],
    usd_per_kwh: F64,
    lease_shed_site: npt.NDArray[np.bool_],
) -> int:
    """Every guard in its fixed order, in one call (the steps are named in
    `engine.guards`):

    1. refuse unknown reason codes (`first_unknown_reason`);
    2. coerce the policy's targets and hold what a per-node protection forbids
       (`hold_protected`);
    3. keep the most valuable changes within the fleet's hourly budget
       (`keep_most_valuable`);
    4. allocate each site's power cap by value per watt (`allocate_cap`).

    `power` gets the plan's full-load draw per site, `over_cap` the sites still over their
    cap (only protected work left), `changed` the nodes whose target differs from their
    mode, in fleet order, and `gave_way_to`/`usd_per_kwh` what each load the cap shed gave
    way to (see `allocate_cap`; -1 and NaN elsewhere). `hold_all_reason` ≥ 0 holds every
    change (frozen, stale data); without `enforce_cap` (frozen: nothing moves) no site is
    curtailed. At a site where `lease_shed_site` is True (a demand-response commitment
    that comes before leases, during an event) the cap allocation may shed protected AI
    leases too; the policy still may not move them.
    Returns how many nodes change, or -1 - (index of the first unknown reason): then
    nothing else is done.
    """
    unknown = first_unknown_reason(reason=proposed_reason, known=known_reasons)
    if unknown >= 0:
        return -1 - unknown
    n = current.shape[0]
    fixed = np.empty(n, dtype=np.bool_)
    young = np.empty(n, dtype=np.bool_)
    gave_way_to[:] = -1
    usd_per_kwh[:] = np.nan
    changing, recent = hold_protected(
        proposed=proposed,
        proposed_reason=proposed_reason,
        current=current,
        is_gpu=is_gpu,
        hold_all_reason=hold_all_reason,
        opt_out=opt_out,
        reachable=reachable,
        state=state,
        steady_state=steady_state,
        lease_until=lease_until,
        ai_interruptible=ai_interruptible,
        dwell_s=dwell_s,
        since=since,
        switch_load=switch_load,
        now_s=now_s,
        min_dwell_s=min_dwell_s,
        max_switches_per_day=max_switches_per_day,
        switch_load_half_life_s=switch_load_half_life_s,
        target=target,
        reason=reason,
        fixed=fixed,
        young=young,
    )
    shed_any = False
    for j in range(lease_shed_site.shape[0]):
        shed_any = shed_any or lease_shed_site[j]
    if shed_any:
        for i in range(n):
            # Fixed only by its lease (not opted out, reachable, steady): the cap may take it.
            if (fixed[i] and lease_shed_site[site[i]] and current[i] == AI
                    and lease_until[i] > now_s and not ai_interruptible[i] and not opt_out[i]
                    and reachable[i] and steady_state[state[i]]):
                fixed[i] = False
    # `recent` nodes switched within the last hour and count against the budget.
    budget = max(fleet_switches_per_hour - recent, 0)
    if changing > budget:
        keep_most_valuable(
            target=target, reason=reason, current=current, value=value,
            switch_per_h=switch_per_h, budget=budget,
        )
    site_power(target=target, watts_by_mode=watts, site=site, out=power)
    if enforce_cap:
        allocate_cap(
            target=target,
            reason=reason,
            current=current,
            site=site,
            watts=watts,
            value=value,
            switch_per_h=switch_per_h,
            fixed=fixed,
            young=young,
            cap_w=cap_w,
            power=power,
            gave_way_to=gave_way_to,
            usd_per_kwh=usd_per_kwh,
        )
    for j in range(power.shape[0]):
        # Tolerance for the sums after curtailment, not a margin on the cap.
        over_cap[j] = power[j] > cap_w[j] + 1e-6
    count = 0
    for i in range(n):
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
    gpu_usd_by_model: F64,
    platform_fee: F64,
    fill: F64,
) -> None:
    """Share of each GPU node's GPUs that demand would fill in AI mode, into `fill`.

    Running pods stay where they are. Pending GPUs of a model go first to free GPUs on
    nodes of that model already in AI, then to other nodes in order of least mining value
    (revenue − power cost in the mine row) given up. Jobs that accept any model take what
    is left on the GPUs that net the most per hour (price less the platform's fee), the
    order the cluster fills GPUs in, and among equals in the same order. Only GPU rows
    (`rows`) are visited. `expected_by_model` is empty when the source does not track
    expected demand per model.
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
    for j in order:
        r = sel[j]
        model = gpu_model[r]
        cap = gpus_all[r] - busy[j]
        take = min(max(pending[model] - before_model[model], 0.0), cap)
        before_model[model] += cap
        fill_gpus[j] += take
    if pending_any > 0:
        # Any-model demand takes the remaining capacity, pooled, best-paid GPUs first.
        dearest_first = np.empty(c)
        for k in range(c):
            r = sel[order[k]]
            model = gpu_model[r]
            price = gpu_usd_by_model[model] if model < gpu_usd_by_model.shape[0] else np.nan
            dearest_first[k] = -price * (1.0 - platform_fee[r]) if np.isfinite(price) else np.inf
        before_any = 0.0
        for j in order[np.argsort(dearest_first, kind="mergesort")]:
            left = gpus_all[sel[j]] - fill_gpus[j]
            fill_gpus[j] += min(max(pending_any - before_any, 0.0), left)
            before_any += left
    for j in range(m):
        fill[sel[j]] = fill_gpus[j] / gpus_all[sel[j]]
