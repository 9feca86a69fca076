"""Guards: limits the engine applies after any policy. A policy cannot bypass them.

The rules, in their fixed order (`GUARD_STEPS`; all run in one compiled pass,
`kernels.guard_plan`, whose steps carry the same names):

1. **unknown reasons** — a policy's reason codes must be known `Reason`s, or the whole
   decision is refused (`PolicyError`).
2. **coerce** — a target that is not a mode keeps the node's mode
   (`GUARD_INVALID_TARGET`); an ASIC is never sent to AI (`GUARD_UNSUPPORTED_MODE`).
3. **hold** — frozen or stale data holds every change; otherwise a change is held for
   the first protection that forbids it: opted out, unreachable, mid-switch, protected
   lease, min dwell, node switch budget.
4. **fleet budget** — at most a share of the fleet switches per hour; the changes of
   highest gain after switching cost are kept.
5. **power cap** — an allocation, not a veto: on a site over its cap the loads kept,
   running and newly planned alike, are those with the most USD/h per watt, and the least
   valuable gives way first (a planned change is reverted, a running load curtailed to
   idle), until no single swap would raise value. Protected leases, opted-out,
   unreachable and mid-switch nodes are never shed; nodes inside their min dwell only
   when nothing else is left. The cap runs last because it is physical.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.engine import kernels
from orchestrator.errors import PolicyError
from orchestrator.framework.context import (
    SWITCH_LOAD_HALF_LIFE_S,
    DecisionContext,
    PolicyDecision,
)
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import GuardConfig
from orchestrator.models.modes import STEADY_STATES

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

_REASON_CODES = np.array([int(r) for r in Reason])
_KNOWN_REASON = np.zeros(max(Reason) + 1, dtype=bool)
_KNOWN_REASON[_REASON_CODES] = True
_NO_LOAD = np.zeros(0)


@functools.lru_cache(maxsize=64)
def _known_reasons(policy_reasons: tuple[int, ...]) -> B:
    """The table of codes a decision may carry: every `Reason`, and the policy's own."""
    if not policy_reasons:
        return _KNOWN_REASON
    table = np.zeros(max(*policy_reasons, len(_KNOWN_REASON) - 1) + 1, dtype=bool)
    table[: len(_KNOWN_REASON)] = _KNOWN_REASON
    table[list(policy_reasons)] = True
    table.flags.writeable = False
    return table
# Plain ints for the compiled loops (an IntEnum member costs a lookup per use).
_FROZEN = int(Reason.GUARD_FROZEN)
_STALE_DATA = int(Reason.GUARD_STALE_DATA)

#: The guard rules in the order they run, as (name, what it does); see the module docstring.
GUARD_STEPS: tuple[tuple[str, str], ...] = (
    ("unknown reasons", "refuse a decision whose reason codes are not known Reasons"),
    ("coerce", "keep the current mode for an invalid target; never AI on an ASIC"),
    ("hold", "frozen, stale data, opt-out, unreachable, mid-switch, lease, dwell, node budget"),
    ("fleet budget", "keep the most valuable changes within the fleet's hourly share"),
    ("power cap", "allocate each site's cap by value per watt, running or planned"),
)


@dataclass(slots=True)
class GuardedPlan:
    """Targets after guards, the reason per node, and the power the plan draws per site."""

    target: I8
    reason: npt.NDArray[np.int16]
    site_power_w: F64
    #: Sites still over cap after every allowed curtailment (only protected work remains).
    site_over_cap: B
    #: Nodes whose target differs from their mode, in fleet order.
    changed: npt.NDArray[np.intp]
    #: For each load the power cap shed: the kept load of least value per watt at its site
    #: (a newly planned change where one was kept) it gave way to; -1 elsewhere.
    gave_way_to: npt.NDArray[np.intp]
    #: USD per kW·h of each load shed (what it gave up) or named as kept; NaN elsewhere.
    usd_per_kwh: F64


@functools.cache
def _loop_ready(dtype: np.dtype[Any]) -> bool | None:
    """Whether compiled loops read this dtype as it is: native-order integers and 32/64-bit
    floats. Other real dtypes (float16, long double, byte-swapped) are read as float64
    (False); bool, complex and object are not numbers a target can be (None)."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        return None
    return dtype.isnative and (dtype.kind in "iu" or dtype in (np.float32, np.float64))


def policy_output(
    ctx: DecisionContext, decision: PolicyDecision
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """A policy's targets and reasons as arrays the compiled guard loop can read; refuse
    what cannot be coerced (wrong length, not real numbers)."""
    n = ctx.fleet.n
    target = np.asarray(decision.target)
    reason = np.asarray(decision.reason)
    if target.shape != (n,) or reason.shape != (n,):
        raise PolicyError(
            f"policy returned target {target.shape} and reason {reason.shape}, expected ({n},)"
        )
    target_ready, reason_ready = _loop_ready(target.dtype), _loop_ready(reason.dtype)
    if target_ready is None:
        raise PolicyError(f"policy returned targets of type {target.dtype}, expected integers")
    if reason_ready is None:
        raise PolicyError(f"policy returned reasons of type {reason.dtype}, expected Reason codes")
    return (
        target if target_ready else target.astype(np.float64),
        reason if reason_ready else reason.astype(np.float64),
    )


def apply_guards(
    ctx: DecisionContext,
    decision: PolicyDecision,
    config: GuardConfig,
    switch_load: F64 | None = None,
    policy_reasons: Collection[int] = (),
    lease_shed_site: npt.NDArray[np.bool_] | None = None,
) -> GuardedPlan:
    """The plan the engine will act on. See the module docstring for the order.
    `policy_reasons`: codes the policy declared beside the built-in `Reason`s.
    `lease_shed_site`: per site, whether the power cap allocation may shed protected AI
    leases (a demand-response event whose commitment comes first); default: nowhere."""
    fleet = ctx.fleet
    n = fleet.n
    proposed, proposed_reason = policy_output(ctx, decision)
    load = _NO_LOAD if switch_load is None else np.asarray(switch_load, dtype=np.float64)
    if switch_load is not None and load.shape != (n,):
        raise ValueError(f"switch_load: expected {n} values, got {load.shape}")
    hold_all = -1
    if config.frozen:
        hold_all = _FROZEN
    elif ctx.stale:
        hold_all = _STALE_DATA
    target = np.empty(n, dtype=np.int8)
    reason = np.empty(n, dtype=np.int16)
    power = np.empty(len(fleet.sites))
    # One cap per site (a single value applies to every site); the compiled pass reads
    # it without bounds checks.
    cap = np.asarray(ctx.site_power_cap_w, dtype=np.float64)
    if cap.shape != power.shape:
        try:
            cap = np.broadcast_to(cap, power.shape).copy()
        except ValueError:
            raise ValueError(
                f"site_power_cap_w: expected {power.shape[0]} values (one per site), "
                f"got shape {cap.shape}"
            ) from None
    over_cap = np.empty(len(fleet.sites), dtype=bool)
    changed = np.empty(n, dtype=np.intp)
    gave_way_to = np.empty(n, dtype=np.intp)
    usd_per_kwh = np.empty(n)
    count = kernels.guard_plan(
        proposed=proposed,
        proposed_reason=proposed_reason,
        known_reasons=_known_reasons(tuple(policy_reasons)),
        current=fleet.mode,
        is_gpu=fleet.statics.is_gpu,
        site=fleet.site,
        opt_out=fleet.opt_out,
        reachable=fleet.reachable,
        state=fleet.state,
        steady_state=STEADY_STATES,
        lease_until=fleet.lease_until,
        ai_interruptible=fleet.ai_interruptible,
        dwell_s=ctx.dwell_s,
        since=fleet.since,
        switch_load=load,
        watts=ctx.scores.watts,
        value=ctx.scores.value,
        switch_per_h=ctx.scores.switch_cost_per_h,
        cap_w=cap,
        now_s=float(ctx.now_s),
        min_dwell_s=float(config.min_dwell_s),
        max_switches_per_day=float(config.max_switches_per_node_per_day),
        switch_load_half_life_s=SWITCH_LOAD_HALF_LIFE_S,
        # At least one node per hour, so a small fleet is never frozen by rounding.
        fleet_switches_per_hour=max(math.floor(config.max_fleet_switch_share_per_hour * n), 1),
        hold_all_reason=hold_all,
        enforce_cap=not config.frozen,
        target=target,
        reason=reason,
        power=power,
        over_cap=over_cap,
        changed=changed,
        gave_way_to=gave_way_to,
        usd_per_kwh=usd_per_kwh,
        lease_shed_site=(np.zeros(len(fleet.sites), dtype=np.bool_) if lease_shed_site is None
                         else np.asarray(lease_shed_site, dtype=np.bool_)),
    )
    if count < 0:
        # Every change carries a reason the journal and metrics can name: no made-up codes.
        known = np.isin(proposed_reason, [*_REASON_CODES.tolist(), *policy_reasons])
        bad = sorted({str(x) for x in proposed_reason[~known].tolist()})[:5]
        first = -1 - count
        raise PolicyError(f"policy returned unknown reason codes {bad} (the first on node "
                          f"{fleet.names[first]}, code {proposed_reason[first].item()})")
    return GuardedPlan(target, reason, power, over_cap, changed[:count], gave_way_to, usd_per_kwh)
