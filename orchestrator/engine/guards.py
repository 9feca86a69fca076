"""Guards: limits the engine applies after any policy. A policy cannot bypass them.

Order matters and is fixed (in one compiled pass, `kernels.guard_plan`): refuse unknown
reason codes → coerce targets → frozen/stale hold → per-node protections (opt-out,
unreachable, in transition, leases, dwell, node budget) → fleet budget → power cap. The
power cap runs last because it is physical: it may curtail nodes the earlier guards would
keep, but never a protected lease.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.engine import kernels
from orchestrator.errors import PolicyError
from orchestrator.framework.context import DecisionContext, PolicyDecision
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import GuardConfig
from orchestrator.models.modes import STEADY_STATES

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

SWITCH_LOAD_HALF_LIFE_S = 86_400.0
_REASON_CODES = np.array([int(r) for r in Reason])
_KNOWN_REASON = np.zeros(max(Reason) + 1, dtype=bool)
_KNOWN_REASON[_REASON_CODES] = True
# The codes the compiled guard pass writes, in the order `kernels.guard_plan` reads them.
_GUARD_REASONS = np.array(
    [
        Reason.GUARD_OPT_OUT,
        Reason.GUARD_UNREACHABLE,
        Reason.GUARD_IN_TRANSITION,
        Reason.GUARD_LEASE_PROTECTED,
        Reason.GUARD_MIN_DWELL,
        Reason.GUARD_NODE_SWITCH_BUDGET,
        Reason.GUARD_INVALID_TARGET,
        Reason.GUARD_UNSUPPORTED_MODE,
        Reason.GUARD_FLEET_SWITCH_BUDGET,
        Reason.GUARD_POWER_CAP_REVERTED,
        Reason.GUARD_POWER_CAP_CURTAILED,
    ],
    dtype=np.int16,
)
_NO_LOAD = np.zeros(0)
# Plain ints for the compiled loops (an IntEnum member costs a lookup per use).
_FROZEN = int(Reason.GUARD_FROZEN)
_STALE_DATA = int(Reason.GUARD_STALE_DATA)


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
) -> GuardedPlan:
    """The plan the engine will act on. See the module docstring for the order."""
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
    count = kernels.guard_plan(
        proposed,
        proposed_reason,
        _KNOWN_REASON,
        fleet.mode,
        fleet.statics.is_gpu,
        fleet.site,
        fleet.opt_out,
        fleet.reachable,
        fleet.state,
        STEADY_STATES,
        fleet.lease_until,
        fleet.ai_interruptible,
        ctx.dwell_s,
        fleet.since,
        load,
        ctx.scores.watts,
        ctx.scores.value,
        ctx.scores.switch_cost_per_h,
        cap,
        float(ctx.now_s),
        float(config.min_dwell_s),
        float(ctx.min_dwell_s),
        float(config.max_switches_per_node_per_day),
        SWITCH_LOAD_HALF_LIFE_S,
        # At least one node per hour, so a small fleet is never frozen by rounding.
        max(math.floor(config.max_fleet_switch_share_per_hour * n), 1),
        hold_all,
        not config.frozen,
        _GUARD_REASONS,
        target,
        reason,
        power,
        over_cap,
        changed,
    )
    if count < 0:
        # Every change carries a reason the journal and metrics can name: no made-up codes.
        known = np.isin(proposed_reason, _REASON_CODES)
        bad = sorted({str(x) for x in proposed_reason[~known].tolist()})[:5]
        raise PolicyError(f"policy returned unknown reason codes {bad}")
    return GuardedPlan(target, reason, power, over_cap, changed[:count])
