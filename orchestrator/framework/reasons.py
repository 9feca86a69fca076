"""Reason codes: why a node got its target mode. Stored as int16 per node."""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    """Every reason a policy or guard can give. Text for each is in `REASON_TEXT`."""

    # Policies
    UNCHANGED = 0
    HIGHER_VALUE = 1
    RISE_CONFIRMED = 2
    FALL_IMMEDIATE = 3
    BELOW_THRESHOLD = 4
    AWAITING_CONFIRMATION = 5
    CAP_FILL_BY_VALUE_PER_WATT = 6
    CAP_CURTAILED_BY_POLICY = 7
    NO_PAYBACK_IN_HORIZON = 8
    PAYS_BACK_IN_HORIZON = 9
    NOT_PROFITABLE = 10
    BASELINE_RULE = 11
    HINDSIGHT_OPTIMUM = 12
    AI_DEMAND_WAITING = 13
    POLICY_FAILED = 14
    # Guards (applied after any policy; a policy cannot bypass them)
    GUARD_STALE_DATA = 20
    GUARD_FROZEN = 21
    GUARD_OPT_OUT = 22
    GUARD_UNREACHABLE = 23
    GUARD_IN_TRANSITION = 24
    GUARD_LEASE_PROTECTED = 25
    GUARD_MIN_DWELL = 26
    GUARD_NODE_SWITCH_BUDGET = 27
    GUARD_FLEET_SWITCH_BUDGET = 28
    GUARD_POWER_CAP_REVERTED = 29
    GUARD_POWER_CAP_CURTAILED = 30
    GUARD_INVALID_TARGET = 31
    GUARD_UNSUPPORTED_MODE = 32


REASON_TEXT: dict[Reason, str] = {
    Reason.UNCHANGED: "no better mode",
    Reason.HIGHER_VALUE: "higher net value",
    Reason.RISE_CONFIRMED: "gain persisted long enough to confirm",
    Reason.FALL_IMMEDIATE: "current mode lost money or value fell: acting at once",
    Reason.BELOW_THRESHOLD: "gain below the switching-cost threshold",
    Reason.AWAITING_CONFIRMATION: "gain not yet confirmed",
    Reason.CAP_FILL_BY_VALUE_PER_WATT: "fills the power cap by value per watt",
    Reason.CAP_CURTAILED_BY_POLICY: "least value per watt: curtailed to fit the cap",
    Reason.NO_PAYBACK_IN_HORIZON: "switch would not pay back within the forecast horizon",
    Reason.PAYS_BACK_IN_HORIZON: "switch pays back within the forecast horizon",
    Reason.NOT_PROFITABLE: "every mode loses money: idle",
    Reason.BASELINE_RULE: "baseline rule",
    Reason.HINDSIGHT_OPTIMUM: "best path in hindsight",
    Reason.AI_DEMAND_WAITING: "AI jobs are waiting for GPUs: acting at once",
    Reason.POLICY_FAILED: "policy failed: holding current modes (the guards still apply)",
    Reason.GUARD_STALE_DATA: "market data stale: holding current modes",
    Reason.GUARD_FROZEN: "switching frozen by the operator",
    Reason.GUARD_OPT_OUT: "node opted out of hashpivot control",
    Reason.GUARD_UNREACHABLE: "node unreachable: left as it is",
    Reason.GUARD_IN_TRANSITION: "node still switching: target kept",
    Reason.GUARD_LEASE_PROTECTED: "protected AI lease still running",
    Reason.GUARD_MIN_DWELL: "minimum dwell time not reached",
    Reason.GUARD_NODE_SWITCH_BUDGET: "node used its switch budget",
    Reason.GUARD_FLEET_SWITCH_BUDGET: "fleet switch budget spent on higher-value switches",
    Reason.GUARD_POWER_CAP_REVERTED: "change reverted: it would exceed the site power cap",
    Reason.GUARD_POWER_CAP_CURTAILED: "curtailed: the site is over its power cap",
    Reason.GUARD_INVALID_TARGET: "policy returned an invalid mode: kept current",
    Reason.GUARD_UNSUPPORTED_MODE: "hardware cannot run that mode: kept current",
}

GUARD_REASONS = frozenset(r for r in Reason if r >= Reason.GUARD_STALE_DATA)

#: Codes a policy may declare for itself (`Policy.reasons`), each with its own text.
POLICY_REASON_MIN = 100
POLICY_REASON_MAX = 9_999


def is_guard_reason(code: int) -> bool:
    """True for the codes only the guards set."""
    return Reason.GUARD_STALE_DATA <= code < POLICY_REASON_MIN


def reason_label(code: int) -> str:
    """A short stable name for a code: the `Reason` name, or `policy_<code>` for a code a
    policy declared (metrics labels and event reasons stay a bounded set)."""
    try:
        return Reason(code).name.lower()
    except ValueError:
        return f"policy_{code}"
