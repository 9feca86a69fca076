"""Guards: limits the engine applies after any policy. A policy cannot bypass them.

Order matters and is fixed here: sanitize → frozen/stale hold → per-node protections
(opt-out, unreachable, in transition, leases, dwell, node budget) → fleet budget → power
cap. The power cap runs last because it is physical: it may curtail nodes the earlier
guards would keep, but never a protected lease.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.engine.scoring import group_cumsum_before
from orchestrator.framework.context import DecisionContext, PolicyDecision
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import GuardConfig
from orchestrator.models.modes import STEADY_STATES, Mode

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

SWITCH_LOAD_HALF_LIFE_S = 86_400.0
_REASON_CODES = np.array([int(r) for r in Reason])


@dataclass(frozen=True, slots=True)
class GuardedPlan:
    """Targets after guards, the reason per node, and the power the plan draws per site."""

    target: I8
    reason: npt.NDArray[np.int16]
    site_power_w: F64
    #: Sites still over cap after every allowed curtailment (only protected work remains).
    site_over_cap: B


def decayed_switch_load(switch_load: F64, since_s: F64, now_s: float) -> F64:
    """The per-node switch count, decayed from the last switch to now (half-life 24 h)."""
    age = np.maximum(now_s - since_s, 0.0)
    return switch_load * np.exp2(-age / SWITCH_LOAD_HALF_LIFE_S)


def sanitize(ctx: DecisionContext, decision: PolicyDecision) -> tuple[I8, npt.NDArray[np.int16]]:
    """Coerce a policy's output to valid targets; refuse what cannot be coerced."""
    from orchestrator.errors import PolicyError

    n = ctx.fleet.n
    target = np.asarray(decision.target)
    reason = np.asarray(decision.reason)
    if target.shape != (n,) or reason.shape != (n,):
        raise PolicyError(
            f"policy returned target {target.shape} and reason {reason.shape}, expected ({n},)"
        )
    if not np.issubdtype(target.dtype, np.number) or np.iscomplexobj(target):
        raise PolicyError(f"policy returned targets of type {target.dtype}, expected integers")
    if not np.issubdtype(reason.dtype, np.number) or np.iscomplexobj(reason):
        raise PolicyError(f"policy returned reasons of type {reason.dtype}, expected Reason codes")
    # Every change carries a reason the journal and metrics can name: no made-up codes.
    known = np.isin(reason, _REASON_CODES)
    if not known.all():
        bad = sorted({str(x) for x in reason[~known].tolist()})[:5]
        raise PolicyError(f"policy returned unknown reason codes {bad}")
    current = ctx.fleet.mode
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(target) & (target >= 0) & (target <= max(Mode)) & (target % 1 == 0)
    out = np.where(valid, target, current).astype(np.int8)
    why = np.where(valid, reason, Reason.GUARD_INVALID_TARGET).astype(np.int16)
    unsupported = (out == Mode.AI) & ctx.fleet.is_asic()
    out[unsupported] = current[unsupported]
    why[unsupported] = Reason.GUARD_UNSUPPORTED_MODE
    return out, why


def apply_guards(
    ctx: DecisionContext,
    decision: PolicyDecision,
    config: GuardConfig,
    switch_load: F64 | None = None,
) -> GuardedPlan:
    """The plan the engine will act on. See the module docstring for the order."""
    fleet = ctx.fleet
    n = fleet.n
    current = fleet.mode
    target, reason = sanitize(ctx, decision)

    def hold(mask: B, why: Reason) -> None:
        changing = mask & (target != current)
        target[changing] = current[changing]
        reason[changing] = why

    if config.frozen:
        hold(np.ones(n, dtype=bool), Reason.GUARD_FROZEN)
    elif ctx.stale:
        hold(np.ones(n, dtype=bool), Reason.GUARD_STALE_DATA)
    hold(fleet.opt_out, Reason.GUARD_OPT_OUT)
    hold(~fleet.reachable, Reason.GUARD_UNREACHABLE)
    hold(~STEADY_STATES[fleet.state], Reason.GUARD_IN_TRANSITION)
    leased = (current == Mode.AI) & (fleet.lease_until > ctx.now_s) & ~fleet.ai_interruptible
    hold(leased, Reason.GUARD_LEASE_PROTECTED)
    hold(ctx.dwell_s < config.min_dwell_s, Reason.GUARD_MIN_DWELL)
    if switch_load is not None:
        load = decayed_switch_load(switch_load, fleet.since, ctx.now_s)
        hold(load + 1.0 > config.max_switches_per_node_per_day, Reason.GUARD_NODE_SWITCH_BUDGET)

    _fleet_budget(ctx, config, target, reason)
    if config.frozen:
        power = _site_power(ctx, target)
        cap = ctx.site_power_cap_w
        return GuardedPlan(target, reason, power, power > cap)
    return _power_cap(ctx, target, reason, leased)


def _fleet_budget(
    ctx: DecisionContext, config: GuardConfig, target: I8, reason: npt.NDArray[np.int16]
) -> None:
    """Keep only the most valuable changes once the hourly fleet budget is spent."""
    fleet = ctx.fleet
    changing = np.flatnonzero(target != fleet.mode)
    recent = int(np.count_nonzero((fleet.since > ctx.now_s - 3600.0) & (fleet.since > 0)))
    # At least one node per hour, so a small fleet is never frozen by rounding.
    allowed = max(math.floor(config.max_fleet_switch_share_per_hour * fleet.n), 1)
    budget = max(allowed - recent, 0)
    if changing.size <= budget:
        return
    gain = ctx.scores.gain_per_h(fleet.mode[changing], target[changing], changing)
    # Highest gain first; stable so equal gains keep fleet order (deterministic).
    keep = changing[np.argsort(-gain, kind="stable")[:budget]]
    drop = np.setdiff1d(changing, keep, assume_unique=True)
    target[drop] = fleet.mode[drop]
    reason[drop] = Reason.GUARD_FLEET_SWITCH_BUDGET


def _planned_watts(ctx: DecisionContext, target: I8) -> F64:
    """Draw of each node under the plan at full load of its target mode, W.

    Full load (not expected fill) keeps the cap safe if demand fills every GPU. The
    actuator stops one workload before starting the other, so a switch never draws both.
    """
    return ctx.scores.watts[target, np.arange(ctx.fleet.n)]


def _site_power(ctx: DecisionContext, target: I8) -> F64:
    n_sites = len(ctx.fleet.sites)
    return np.bincount(
        ctx.fleet.site, weights=_planned_watts(ctx, target), minlength=n_sites
    ).astype(np.float64)


def _shed(
    ctx: DecisionContext,
    excess: F64,
    candidates: npt.NDArray[np.intp],
    saving: F64,
    priority: F64,
) -> npt.NDArray[np.intp]:
    """Pick candidates, per site in `priority` order (ascending), until each site's excess
    is covered. Returns the picked node indices."""
    site = ctx.fleet.site[candidates]
    useful = (excess[site] > 0) & (saving > 0)
    candidates, site, saving, priority = (
        candidates[useful],
        site[useful],
        saving[useful],
        priority[useful],
    )
    # One site (the common case) needs no grouping key: a plain stable sort is cheaper.
    one_site = len(ctx.fleet.sites) == 1
    order = np.argsort(priority, kind="stable") if one_site else np.lexsort((priority, site))
    candidates, site, saving = candidates[order], site[order], saving[order]
    before = group_cumsum_before(site.astype(np.int32), saving)
    return candidates[before < excess[site]]


def _power_cap(
    ctx: DecisionContext,
    target: I8,
    reason: npt.NDArray[np.int16],
    leased: B,
) -> GuardedPlan:
    fleet = ctx.fleet
    cap = ctx.site_power_cap_w
    power = _site_power(ctx, target)
    excess = power - cap
    if not np.any(excess > 0):
        return GuardedPlan(target, reason, power, np.zeros_like(cap, dtype=bool))
    idx = np.arange(fleet.n)
    watts = ctx.scores.watts
    value = ctx.scores.value
    # 1. Revert changes that add power, lowest gain per added watt first.
    adds = np.flatnonzero((target != fleet.mode) & (watts[target, idx] > watts[fleet.mode, idx]))
    if adds.size:
        added_w = watts[target[adds], adds] - watts[fleet.mode[adds], adds]
        gain = ctx.scores.gain_per_h(fleet.mode[adds], target[adds], adds)
        reverted = _shed(ctx, excess, adds, added_w, gain / np.maximum(added_w, 1e-9))
        target[reverted] = fleet.mode[reverted]
        reason[reverted] = Reason.GUARD_POWER_CAP_REVERTED
        power = _site_power(ctx, target)
        excess = power - cap
    if np.any(excess > 0):
        # 2. Still over (the cap fell, or prices moved): curtail to idle, least value per
        # watt first; nodes inside their min dwell go last; protected leases, opted-out and
        # unreachable nodes never.
        planned = _planned_watts(ctx, target)
        saving = planned - watts[Mode.IDLE]
        # Opted-out and unreachable nodes cannot be commanded: planning to curtail them
        # would count power that never goes away.
        movable = np.flatnonzero(
            (target != Mode.IDLE) & ~leased & ~fleet.opt_out & fleet.reachable & (saving > 0)
        )
        node_value = value[target[movable], movable]
        per_watt = node_value / np.maximum(saving[movable], 1e-9)
        in_dwell = ctx.dwell_s[movable] < ctx.min_dwell_s
        # Dwell-protected nodes sort after all others (priority offset larger than any ratio).
        priority = np.where(in_dwell, 1e18, 0.0) + np.clip(per_watt, -1e17, 1e17)
        curtailed = _shed(ctx, excess, movable, saving[movable], priority)
        target[curtailed] = Mode.IDLE
        reason[curtailed] = Reason.GUARD_POWER_CAP_CURTAILED
        power = _site_power(ctx, target)
    return GuardedPlan(target, reason, power, power > cap + 1e-6)
