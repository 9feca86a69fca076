"""One decision: score → policy → guards → plan with explanations. Pure, no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from orchestrator.engine.explain import (
    CapAllocation,
    ExplanationTable,
    NodeExplanation,
    mode_counts,
)
from orchestrator.engine.guards import apply_guards
from orchestrator.engine.kernels import seconds_since
from orchestrator.engine.scoring import build_scores
from orchestrator.errors import PolicyError, raised_at
from orchestrator.framework.context import (
    DecisionContext,
    MarketHistory,
    PolicyDecision,
    ScoreTable,
)
from orchestrator.framework.policy import Policy
from orchestrator.framework.reasons import Reason, is_guard_reason
from orchestrator.models.base import read_only_view
from orchestrator.models.config import GuardConfig, ScoringConfig
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices
from orchestrator.models.modes import MODE_LABELS

F64 = npt.NDArray[np.float64]


# Not frozen: frozen dataclasses set each field through object.__setattr__, and a plan
# is built every decision. Nothing changes a plan once built.
@dataclass(slots=True)
class Plan:
    """Target mode per node after guards, why, and what the plan is expected to earn."""

    decision_id: str
    policy: str
    now_s: float
    node_names: npt.NDArray[np.object_]
    current: npt.NDArray[np.int8]
    target: npt.NDArray[np.int8]
    reason: npt.NDArray[np.int16]
    scores: ScoreTable
    site_power_w: F64
    site_cap_w: F64
    site_over_cap: npt.NDArray[np.bool_]
    stale: bool
    policy_state: Mapping[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    #: Text of the reason codes the policy declared (`Policy.reasons`).
    reason_text: Mapping[int, str] = field(default_factory=dict)
    #: What gave way to what under the power cap (explanations name both loads).
    cap: CapAllocation | None = None
    #: Per-node numbers the policy's reason texts show (`PolicyDecision.values`).
    reason_values: Mapping[str, F64] = field(default_factory=dict)
    #: Per site, the power-contract programs that priced its draw ('' where none), and
    #: each node's site: explanations name the programs (`engine.contracts`).
    power_notes: tuple[str, ...] = ()
    node_site: npt.NDArray[np.int32] | None = None
    #: Why every node was held (the policy failed), or None: a decision of the policy.
    held: str | None = None
    # The guards know which nodes change; a plan built any other way (or copied with
    # `dataclasses.replace`) works them out on first use.
    _changed: npt.NDArray[np.intp] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def changed(self) -> npt.NDArray[np.intp]:
        """Nodes whose target differs from their current mode, in fleet order."""
        if self._changed is None:
            self._changed = np.flatnonzero(self.target != self.current)
        return self._changed

    def explain(self, i: int) -> NodeExplanation:
        """One node's explanation, changed or not."""
        table = ExplanationTable.of(
            np.array([i]), self.current, self.target, self.reason, self.scores,
            self.reason_text, self.cap, self.reason_values, self.power_notes, self.node_site,
        )
        return table.row(0, str(self.node_names[i]))

    def explanation_table(self) -> ExplanationTable:
        """The terms behind every changed node, as columns."""
        return ExplanationTable.of(self.changed, self.current, self.target, self.reason,
                                   self.scores, self.reason_text, self.cap,
                                   self.reason_values, self.power_notes, self.node_site)

    def explanations(
        self, limit: int | None = None, table: ExplanationTable | None = None
    ) -> list[NodeExplanation]:
        """Rendered explanations of changed nodes, highest gain first (all when no limit).
        Pass the `explanation_table()` already built to avoid building it twice."""
        table = table if table is not None else self.explanation_table()
        order = np.argsort(-table.gain_usd_h, kind="stable")
        if limit is not None:
            order = order[:limit]
        names = self.node_names[table.nodes[order]].tolist()
        return table.rows(order.tolist(), [str(n) for n in names])

    def expected_usd_per_hour(self) -> dict[str, float]:
        """Expected net USD/h of the plan, per target mode."""
        idx = np.arange(self.target.shape[0])
        value = self.scores.value[self.target, idx]
        sums = np.bincount(self.target.astype(np.intp), weights=value, minlength=3)
        return {label: float(s) for label, s in zip(MODE_LABELS, sums, strict=True)}

    def held_by_guard(self) -> dict[str, int]:
        """Nodes per guard reason (guards that changed or blocked something)."""
        codes, counts = np.unique(self.reason, return_counts=True)
        return {
            Reason(int(c)).name: int(k)
            for c, k in zip(codes, counts, strict=True)
            if is_guard_reason(int(c))
        }

    def summary(self) -> dict[str, object]:
        return {
            "decision_id": self.decision_id,
            "policy": self.policy,
            "now_s": self.now_s,
            "nodes": int(self.target.shape[0]),
            "changes": int(self.changed.size),
            "modes": mode_counts(self.target),
            "expected_usd_per_hour": self.expected_usd_per_hour(),
            "guards": self.held_by_guard(),
            "stale": self.stale,
            "site_power_kw": [float(p) / 1000.0 for p in self.site_power_w],
            # The cap each site's plan kept to (None: uncapped), a demand-response
            # event's included.
            "site_cap_kw": [float(c) / 1000.0 if math.isfinite(c) else None
                            for c in np.broadcast_to(self.site_cap_w,
                                                     self.site_power_w.shape).tolist()],
        } | ({"held": self.held} if self.held is not None else {})


_NO_HISTORY = MarketHistory.empty()
_NO_LOAD = np.zeros(0)
_NO_LOAD.flags.writeable = False


def build_context(
    *,
    now_s: float,
    prices: MarketPrices,
    demand: DemandSummary,
    fleet: FleetTable,
    guards: GuardConfig,
    scoring: ScoringConfig | None = None,
    history: MarketHistory | None = None,
    policy_state: Mapping[str, npt.NDArray[np.generic]] | None = None,
    interval_s: float = 0.0,
    skipped_cycles: int = 0,
    switch_load: F64 | None = None,
    power_usd_mwh: F64 | None = None,
    site_cap_w: F64 | None = None,
) -> DecisionContext:
    """Score the fleet and freeze everything a policy may read. `power_usd_mwh`: the
    per-site price a power contract puts on a node's draw (`engine.contracts`);
    `site_cap_w`: per-site caps lower than the configured ones (a demand-response event
    in force), default the sites' own."""
    view = fleet.read_only()
    scores = build_scores(view, prices, demand, scoring, power_usd_mwh)
    dwell = np.empty(view.n)
    seconds_since(view.since, float(now_s), dwell)
    dwell.flags.writeable = False
    return DecisionContext(
        now_s=now_s,
        prices=prices,  # read-only arrays, as every price and demand is built
        demand=demand,
        fleet=view,
        scores=scores,
        dwell_s=dwell,
        min_dwell_s=guards.min_dwell_s,
        stale=now_s - prices.oldest_observed_s > guards.stale_after_s,
        site_power_cap_w=view.statics.site_cap_w if site_cap_w is None else site_cap_w,
        # Live feeds key power by site name; a policy reads columns in `fleet.sites` order.
        history=_NO_HISTORY if history is None else history.for_sites(
            tuple(site.name for site in view.sites)),
        policy_state=_read_only_state(policy_state),
        interval_s=interval_s,
        skipped_cycles=skipped_cycles,
        switch_load=_NO_LOAD if switch_load is None else switch_load,
        max_switches_per_node_per_day=guards.max_switches_per_node_per_day,
        fleet_switches_per_hour=max(
            math.floor(guards.max_fleet_switch_share_per_hour * view.n), 1),
    )


def _read_only_state(
    state: Mapping[str, npt.NDArray[np.generic]] | None,
) -> Mapping[str, npt.NDArray[np.generic]]:
    """Last cycle's state as the policy reads it: views it cannot write (it returns new
    arrays as its next state)."""
    if not state:
        return {}
    if not any(a.flags.writeable for a in state.values()):
        return state
    return {key: read_only_view(array) for key, array in state.items()}


def check_state(name: str, state: object) -> Mapping[str, npt.NDArray[np.generic]]:
    """A policy's state as the engine keeps it: a mapping of names to numeric arrays
    (integers, floats, booleans), the only kind the journal restores after a restart.
    Anything else is a `PolicyError` naming the policy and the key, in every mode."""
    if not isinstance(state, Mapping):
        raise PolicyError(
            f"policy {name} returned state of type {type(state).__name__}: "
            "state must map names to numeric arrays"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or (
            value.dtype.kind not in "biuf"
        ):
            what = (f"array of dtype {value.dtype}" if isinstance(value, np.ndarray)
                    else type(value).__name__)
            raise PolicyError(
                f"policy {name} returned state {key!r} as {what}: state values must be "
                "numpy arrays of integers, floats or booleans (kept across restarts)"
            )
    return state


def check_values(name: str, values: object, n: int) -> Mapping[str, F64]:
    """A policy's per-node explanation values as the engine keeps them: names to numeric
    arrays of one entry per node (as float). Anything else is a `PolicyError` naming the
    policy and the key, in every mode."""
    if not isinstance(values, Mapping):
        raise PolicyError(f"policy {name} returned values of type {type(values).__name__}: "
                          "values must map names to one number per node")
    if not values:
        return values
    out: dict[str, F64] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise PolicyError(f"policy {name} returned values key {key!r}: keys must be "
                              "names (letters, digits and _) its reason texts can use")
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" or (
                value.shape != (n,)):
            what = (f"array of dtype {value.dtype} and shape {value.shape}"
                    if isinstance(value, np.ndarray) else type(value).__name__)
            raise PolicyError(f"policy {name} returned values {key!r} as {what}: each must be "
                              f"a numeric array of one entry per node ({n})")
        column = value.astype(np.float64)  # a copy: the policy cannot change it later
        column.flags.writeable = False
        out[key] = column
    return out


def decide(
    ctx: DecisionContext,
    policy: Policy,
    guards: GuardConfig,
    *,
    switch_load: F64 | None = None,
    lease_shed_site: npt.NDArray[np.bool_] | None = None,
) -> Plan:
    """Run the policy, then every guard, and return the plan. A policy that fails or
    returns no decision raises `PolicyError` (the caller holds every node).
    `lease_shed_site`: see `apply_guards`."""
    name = policy.name or type(policy).__name__
    try:
        decision: PolicyDecision = policy.decide(ctx)
    except PolicyError:
        raise
    except (Exception, SystemExit, GeneratorExit) as exc:
        # Policies are trusted code, but their bugs must not spread: not even a
        # `sys.exit()` ends the controller (only Ctrl-C does).
        raise PolicyError(f"policy {name} failed: {raised_at(exc)}") from exc
    if not isinstance(decision, PolicyDecision):
        raise PolicyError(f"policy {name} returned {type(decision).__name__}, not a decision")
    declared = getattr(type(policy), "reasons", None) or {}
    try:
        guarded = apply_guards(ctx, decision, guards, switch_load,
                               policy_reasons=tuple(declared),
                               lease_shed_site=lease_shed_site)
    except PolicyError as exc:  # say whose output it was
        raise PolicyError(f"{name}: {exc}") from None
    # The plan lists its changed nodes once; its targets cannot change under that list.
    guarded.target.flags.writeable = guarded.reason.flags.writeable = False
    plan = Plan(
        decision_id=f"{name}-{int(ctx.now_s)}",
        policy=name,
        now_s=ctx.now_s,
        node_names=ctx.fleet.names,
        current=ctx.fleet.mode,
        target=guarded.target,
        reason=guarded.reason,
        scores=ctx.scores,
        site_power_w=guarded.site_power_w,
        site_cap_w=ctx.site_power_cap_w,
        site_over_cap=guarded.site_over_cap,
        stale=ctx.stale,
        policy_state=check_state(name, decision.state),
        reason_text=declared,
        reason_values=check_values(name, decision.values, ctx.fleet.n),
        cap=CapAllocation(guarded.gave_way_to, guarded.usd_per_kwh, ctx.fleet.names,
                          ctx.fleet.mode, guarded.target, guarded.reason),
    )
    plan._changed = guarded.changed
    return plan
