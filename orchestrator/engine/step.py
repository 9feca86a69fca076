"""The decision step: everything between "inputs gathered" and "guarded plan", for every mode.

Live, shadow, dry-run (`runtime.cycle`), the backtest (`backtest.runner.simulate`) and
journal replay (`backtest.replay`) each gather inputs through their own ports and hand them
to a `DecisionStep`; what the step decides does not depend on which mode called it. The
step owns what a decision remembers between cycles:

- the smoothed AI demand level (running + pending GPUs, half-life 6 h),
- the policy's state (what it returned last cycle; numeric arrays only),
- the switch history per node (time of the last real switch and the decaying 24 h count
  the per-node budget reads), which is also where dwell and the fleet's hourly budget
  start counting.

Only switches the step was told happened (`commit`) count: adopting a node (writing its
first label and `since`) is not a switch, so a controller going live does not spend its
budgets on nodes it merely took over. `memory()`/`restore()` carry all of it across a
controller restart. Pure: no I/O, no wall clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from orchestrator.engine.contracts import ContractBook, join_notes
from orchestrator.engine.nowcast import typical_change
from orchestrator.engine.plan import Plan, build_context, decide
from orchestrator.framework.context import (
    SWITCH_LOAD_HALF_LIFE_S,
    DecisionContext,
    MarketHistory,
    PolicyDecision,
)
from orchestrator.framework.policy import Policy
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import GuardConfig, ScoringConfig
from orchestrator.models.demand import DemandSummary, smooth_demand
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices

F64 = npt.NDArray[np.float64]
State = Mapping[str, npt.NDArray[np.generic]]

DEMAND_HALF_LIFE_S = 6 * 3600.0
#: Switch history older than this (and decayed below `_NEGLIGIBLE_LOAD`) is not kept in
#: a memory snapshot: it can no longer hold a node by dwell, hour or day budget.
_HISTORY_HORIZON_S = 7 * 86_400.0
_NEGLIGIBLE_LOAD = 1e-3
#: Switch counts of many nodes, or of one.
Load = TypeVar("Load", F64, float)
_add = np.add.reduce


def _load_after_switch(load: Load, last_s: Load, at_s: float) -> Load:
    """A node's decaying switch count once it switches again at `at_s`, its last switch
    at `last_s` (arrays of nodes, or one node's values)."""
    after: Load = load * np.exp2(-np.maximum(at_s - last_s, 0.0) / SWITCH_LOAD_HALF_LIFE_S) + 1.0
    return after


@dataclass(frozen=True, slots=True)
class StepMemory:
    """What a decision step carries from one cycle to the next; enough to resume after a
    restart. Switch history lists only nodes that switched recently; every other node
    starts with no history (never switched by this controller)."""

    now_s: float | None
    policy_state: dict[str, npt.NDArray[np.generic]]
    expected_gpus: float | None
    switch_nodes: list[str]
    switch_last_s: F64
    switch_load: F64
    #: Each site's month-to-date peak (kW) as of `now_s`, for sites' power contracts.
    contract_peak_kw: tuple[float, ...] = ()


@dataclass
class DecisionStep:
    """One policy with its guards, deciding cycle after cycle. See the module docstring."""

    policy: Policy
    guards: GuardConfig
    scoring: ScoringConfig | None = None
    #: Seconds between decisions, as configured (the backtest step, the controller interval).
    interval_s: float = 3600.0
    #: The GPU model the site's AI demand is for (`demand.gpu_model`), or None: any model.
    demand_model: str | None = None
    demand_half_life_s: float = DEMAND_HALF_LIFE_S
    policy_state: State = field(default_factory=dict)
    expected_gpus: float | None = None
    last_now_s: float | None = None
    #: Decisions missed before the last one (see `DecisionContext.skipped_cycles`).
    skipped_cycles: int = 0
    #: The sites' power contracts (None: every site pays spot plus its adder).
    contracts: ContractBook | None = None
    #: Per site, the programs that priced the last decision's power ('' where none).
    contract_notes: tuple[str, ...] = ()
    #: Per site, the month-to-date peak (kW) the last decision started from (journaled).
    contract_peaks_in: list[float] | None = None
    #: Per site, the power price the last decision used before it was published
    #: (journaled; None: the published price).
    nowcast_usd_mwh: list[float] | None = None
    # Switch history aligned with `_names` (the fleet rows last decided on).
    _names: npt.NDArray[np.object_] | None = field(default=None, repr=False)
    _last_s: F64 = field(default_factory=lambda: np.zeros(0), repr=False)
    _load: F64 = field(default_factory=lambda: np.zeros(0), repr=False)
    # Restored history by node name, for nodes not yet seen since the restore.
    _restored: dict[str, tuple[float, float]] | None = field(default=None, repr=False)
    _model_cache: tuple[object, int | None] | None = field(default=None, repr=False)
    # A fleet's `since` column found equal to the switch history (the simulated site
    # keeps both), so the fleet needs no copy with the history's column.
    _same_since: tuple[F64, F64] | None = field(default=None, repr=False)

    # --- inputs -------------------------------------------------------------------------
    def _demand(self, pending: DemandSummary, fleet: FleetTable, now_s: float,
                level: float | None = None) -> DemandSummary:
        """Pending demand plus the smoothed level of running + pending GPUs (`level`: the
        level to use, as a journal replay knows it). The level is one number: for the
        configured GPU model when the demand names one the fleet has, else any model."""
        # `np.add.reduce` is what `.sum()` calls, without its Python wrapper (per cycle).
        total = float(_add(pending.pending_gpus)) + pending.pending_gpus_any_model
        total += float(_add(fleet.ai_gpus_busy))
        if level is not None:
            self.expected_gpus = level
        elif self.expected_gpus is None or self.last_now_s is None:
            self.expected_gpus = total
        else:
            self.expected_gpus = smooth_demand(
                self.expected_gpus, total, now_s - self.last_now_s, self.demand_half_life_s
            )
        model = self._model_index(fleet)
        if model is None:
            return DemandSummary(pending.pending_gpus, pending.offered_usd_per_gpu_hour,
                                 pending.pending_gpus_any_model,
                                 expected_gpus_any_model=self.expected_gpus,
                                 job_list=pending.job_list)
        expected = np.zeros(len(fleet.gpu_models))
        if model >= 0:  # else the fleet has no node of that model: nothing to expect
            expected[model] = self.expected_gpus
        expected.flags.writeable = False  # as the summary keeps it: no view to make
        return DemandSummary(pending.pending_gpus, pending.offered_usd_per_gpu_hour,
                             pending.pending_gpus_any_model, expected_gpus=expected,
                             job_list=pending.job_list)

    def _model_index(self, fleet: FleetTable) -> int | None:
        models = fleet.gpu_models
        if self._model_cache is not None and self._model_cache[0] is models:
            return self._model_cache[1]
        index = None
        if self.demand_model is not None:
            index = models.index(self.demand_model) if self.demand_model in models else -1
        self._model_cache = (models, index)
        return index

    def _align(self, fleet: FleetTable) -> None:
        """Line the switch history up with this fleet's rows (nodes come and go live).
        A node seen for the first time brings the `since` its source reports (the
        cluster's annotation, the simulated site's start), unless a restored memory says
        what it was."""
        names = fleet.names
        if names is self._names:
            return
        if self._names is not None and names.shape == self._names.shape and bool(
            np.all(names == self._names)
        ):
            self._names = names
            return
        n = fleet.n
        last_s = np.array(fleet.since, dtype=np.float64, copy=True)
        load = np.zeros(n)
        old: dict[str, int] = (
            {} if self._names is None else {str(x): i for i, x in enumerate(self._names)}
        )
        for i, name in enumerate(names.tolist()):
            j = old.get(str(name))
            if j is not None:
                last_s[i], load[i] = self._last_s[j], self._load[j]
            elif self._restored is not None:
                last_s[i], load[i] = self._restored.get(str(name), (0.0, 0.0))
        # Read-only, so the context's fleet view shares them instead of copying.
        last_s.flags.writeable = load.flags.writeable = False
        self._names, self._last_s, self._load = names, last_s, load

    def _with_history(self, fleet: FleetTable) -> FleetTable:
        """The fleet with `since` from the switch history, as the context shows it. A
        source that already reports the same times (the simulated site) is used as it is:
        equal columns are compared once per pair of unchanging arrays, not copied."""
        since, last_s = fleet.since, self._last_s
        same = self._same_since
        if since is last_s or (same is not None and same[0] is since and same[1] is last_s):
            return fleet
        if (not since.flags.writeable and since.base is None and since.dtype == last_s.dtype
                and np.array_equal(since, last_s)):
            self._same_since = (since, last_s)
            return fleet
        return fleet.with_columns(since=last_s)

    # --- the step -----------------------------------------------------------------------
    @property
    def needs_history(self) -> bool:
        """Whether `decide` wants the market history: the policy reads it, or the score
        table prices power at a nowcast."""
        return self.policy.uses_history or (
            self.scoring is not None and self.scoring.nowcasts_power)

    def decide(
        self,
        *,
        now_s: float,
        prices: MarketPrices,
        demand: DemandSummary,
        fleet: FleetTable,
        history: MarketHistory | None = None,
        frozen: bool = False,
        demand_level: float | None = None,
        nowcast_usd_mwh: F64 | None = None,
        held: str | None = None,
    ) -> Plan:
        """Decide one cycle. `demand` is what waits now (pending GPUs); the step adds the
        smoothed level. Raises `PolicyError` when the policy fails or returns what the
        engine refuses; nothing is remembered then. The caller then decides again with
        `held` (why): every node kept as it is, through the same guards (the power cap
        still sheds load, a demand-response event's lower cap included), the policy's
        state kept for its next cycle."""
        self._align(fleet)
        last_now, expected_before = self.last_now_s, self.expected_gpus
        summary = self._demand(demand, fleet, now_s, demand_level)
        guards = self.guards if not frozen else self.guards.model_copy(update={"frozen": True})
        skipped = 0
        if last_now is not None and self.interval_s > 0:
            skipped = max(round((now_s - last_now) / self.interval_s) - 1, 0)
        power = cap = shed = None
        spot = prices.power_usd_mwh
        if nowcast_usd_mwh is None and history is not None and self.scoring is not None \
                and self.scoring.nowcasts_power:
            # The interval being decided is priced before the market publishes it.
            nowcast_usd_mwh = typical_change(
                history.for_sites(tuple(site.name for site in fleet.sites)), now_s, spot)
        self.nowcast_usd_mwh = None
        if nowcast_usd_mwh is not None:
            spot = power = nowcast_usd_mwh
            self.nowcast_usd_mwh = [float(x) for x in nowcast_usd_mwh]
        if self.contracts is not None:
            self.contract_peaks_in = self.contracts.peaks_kw(now_s)
            power, self.contract_notes = self.contracts.score_prices(now_s, spot, fleet)
            # A called demand-response event lowers the site's cap for the guards.
            cap, event_notes = self.contracts.event_caps(
                now_s, self.interval_s, fleet.statics.site_cap_w)
            self.contract_notes = join_notes(self.contract_notes, event_notes)
            shed = self.contracts.lease_shed  # a commitment that comes before leases
        ctx = build_context(
            now_s=now_s, prices=prices, demand=summary,
            fleet=self._with_history(fleet), guards=guards,
            scoring=self.scoring, history=history, policy_state=self.policy_state,
            interval_s=self.interval_s, skipped_cycles=skipped, switch_load=self._load,
            power_usd_mwh=power, site_cap_w=cap,
        )
        try:
            plan = decide(ctx, self.policy if held is None else _KEEP_EVERY_NODE, guards,
                          switch_load=self._load, lease_shed_site=shed)
        except BaseException:
            self.expected_gpus = expected_before  # a failed decision leaves no trace
            raise
        if power is not None:
            plan.power_notes, plan.node_site = self.contract_notes, fleet.site
        if held is None:
            self.policy_state = plan.policy_state
        plan.held = held
        self.last_now_s = now_s
        self.skipped_cycles = skipped
        return plan

    def commit(self, plan: Plan, started: Collection[str] | None = None) -> None:
        """Count the plan's switches that started in the switch history: every change
        (None: a simulated site starts them all), or those of the nodes named in `started`
        (what the actuator began; shadow begins none). Call once per plan, after acting."""
        changed = plan.changed
        if started is not None and changed.size:
            began = set(started)
            changed = np.array([i for i in changed.tolist()
                                if str(plan.node_names[i]) in began], dtype=np.intp)
        if not changed.size:
            return
        if self._names is not plan.node_names:
            self._align_names(plan.node_names)
        # New arrays: the last context's fleet view still reads the old ones.
        last_s, load = self._last_s.copy(), self._load.copy()
        load[changed] = _load_after_switch(load[changed], last_s[changed], plan.now_s)
        last_s[changed] = plan.now_s
        last_s.flags.writeable = load.flags.writeable = False
        self._last_s, self._load = last_s, load

    def count_began(self, began: Mapping[str, float]) -> None:
        """Count switches an actuator began on its own after an earlier plan (a ramp's
        later steps): node name → when. Nodes not in the fleet last decided on are
        ignored (they come back with the history their source reports)."""
        if not began or self._names is None:
            return
        row = {str(x): i for i, x in enumerate(self._names.tolist())}
        last_s, load = self._last_s.copy(), self._load.copy()
        for name, at_s in began.items():
            i = row.get(name)
            if i is None or at_s <= last_s[i]:
                continue  # unknown here, or already counted
            load[i] = _load_after_switch(load[i], last_s[i], at_s)
            last_s[i] = at_s
        last_s.flags.writeable = load.flags.writeable = False
        self._last_s, self._load = last_s, load

    def _align_names(self, names: npt.NDArray[np.object_]) -> None:
        if self._names is None or names.shape != self._names.shape or not bool(
            np.all(names == self._names)
        ):
            raise ValueError("commit: the plan is not for the fleet this step last decided on")
        self._names = names

    # --- across restarts ----------------------------------------------------------------
    def memory(self) -> StepMemory:
        """A snapshot of what the step remembers (recent switch history only)."""
        now = self.last_now_s
        if self._names is None or now is None:
            keep = np.zeros(0, dtype=np.intp)
        else:
            decayed = self._load * np.exp2(-np.maximum(now - self._last_s, 0.0)
                                           / SWITCH_LOAD_HALF_LIFE_S)
            recent = (self._last_s > now - _HISTORY_HORIZON_S) & (self._last_s > 0)
            keep = np.flatnonzero(recent | (decayed >= _NEGLIGIBLE_LOAD))
        names = [] if self._names is None else [str(self._names[i]) for i in keep]
        return StepMemory(
            now_s=now,
            policy_state={k: np.asarray(v) for k, v in self.policy_state.items()},
            expected_gpus=self.expected_gpus,
            switch_nodes=names,
            switch_last_s=self._last_s[keep].copy(),
            switch_load=self._load[keep].copy(),
            contract_peak_kw=() if self.contracts is None or now is None
            else tuple(self.contracts.peaks_kw(now)),
        )

    def restore(self, memory: StepMemory) -> None:
        """Continue from `memory`: the next decision sees the policy state, demand level
        and switch history as they were. Nodes the memory does not list have no history."""
        self.last_now_s = memory.now_s
        self.policy_state = dict(memory.policy_state)
        self.expected_gpus = memory.expected_gpus
        if self.contracts is not None and memory.now_s is not None and memory.contract_peak_kw:
            self.contracts.restore_peaks(memory.now_s, memory.contract_peak_kw)
        self._restored = {
            name: (float(t), float(x))
            for name, t, x in zip(memory.switch_nodes, memory.switch_last_s.tolist(),
                                  memory.switch_load.tolist(), strict=True)
        }
        self._names = None
        self._last_s = self._load = np.zeros(0)

    def replay_switches(self, now_s: float, nodes: Collection[str]) -> None:
        """Count switches the memory missed: a controller stopped after journaling a
        cycle and acting on it, but before saving its memory, began these at `now_s`."""
        restored = self._restored if self._restored is not None else {}
        for name in nodes:
            last, load = restored.get(name, (0.0, 0.0))
            if last >= now_s:
                continue  # already counted
            restored[name] = (now_s, float(_load_after_switch(load, last, now_s)))
        self._restored = restored
        self._names = None

    def switch_history(self) -> tuple[F64, F64]:
        """(time of last switch, decaying switch count) per node of the last fleet decided on."""
        return self._last_s, self._load


class _KeepEveryNode(Policy):
    """Every node keeps its mode: what the guards act on while the policy fails."""

    name: ClassVar[str] = "hold"

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        return PolicyDecision(ctx.current.copy(),
                              np.full(ctx.fleet.n, Reason.POLICY_FAILED, dtype=np.int16))


_KEEP_EVERY_NODE = _KeepEveryNode()
