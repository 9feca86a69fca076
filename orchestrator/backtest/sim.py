"""The simulated site: actuator, AI job queue and ledger for dry-runs and backtests.

Switching takes the profile's stop and start times, during which the node draws idle
power and earns nothing; wear and eviction penalties are charged as the score table
models them. AI jobs arrive from the trace, wait in a FIFO queue, run on AI-mode GPUs
(first fit), pay per GPU-hour and leave; a job that waits longer than `max_wait_h`
leaves unserved (an SLA miss). Leaving AI evicts interruptible jobs (requeued with
their remaining work, penalty charged); the guards never let a node with protected
(non-interruptible) work leave AI.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.contracts import ContractAccounts, ProgramLines
from orchestrator.backtest.jobbook import JobBook, QueuedJobs
from orchestrator.backtest.jobs import JobStream
from orchestrator.engine.kernels import (
    ai_revenue_usd_per_hour,
    mining_revenue_usd_per_hour,
    power_cost_usd_per_hour,
)
from orchestrator.engine.plan import Plan
from orchestrator.framework.context import SWITCH_LOAD_HALF_LIFE_S
from orchestrator.framework.jit import AI, IDLE, MINE, compiled
from orchestrator.framework.reasons import GUARD_REASONS, POLICY_REASON_MIN, Reason
from orchestrator.models.config import ScoringConfig
from orchestrator.models.demand import NO_JOBS, DemandSummary, PendingJobs
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices
from orchestrator.models.modes import STEADY_STATE_OF_MODE, Mode, NodeState

_FIRST_GUARD = int(Reason.GUARD_STALE_DATA)
_GUARD_CODES = POLICY_REASON_MIN - _FIRST_GUARD

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.intp]
B = npt.NDArray[np.bool_]

_STEADY = np.array([STEADY_STATE_OF_MODE[m] for m in Mode], dtype=np.int8)
_STARTING = np.array(
    [NodeState.IDLE, NodeState.STARTING_MINE, NodeState.STARTING_AI], dtype=np.int8
)


@dataclass
class Ledger:
    """Money and events per step (USD for the step) and per node (totals)."""

    times_s: F64
    mine_revenue: F64
    ai_revenue: F64
    power_cost: F64
    switching_cost: F64
    downtime_lost: F64
    switches: npt.NDArray[np.int64]
    evictions: npt.NDArray[np.int64]
    sla_misses: npt.NDArray[np.int64]
    jobs_served: npt.NDArray[np.int64]
    modes: npt.NDArray[np.int64]  # (steps, 3): nodes per mode after each decision
    node_revenue: F64
    node_power: F64
    node_switching: F64
    #: Switches each node made.
    node_switches: npt.NDArray[np.int64]
    #: Node-steps each guard held or changed, indexed by reason code − GUARD_STALE_DATA.
    guard_holds: npt.NDArray[np.int64]
    #: Power-contract lines per step (zero where no site has a contract): contracted
    #: energy paid but not used, its resale at spot, demand and coincident-peak charges.
    contract_unused_cost: F64
    resale_revenue: F64
    demand_charge: F64
    coincident_peak_charge: F64
    #: Whether a site has a contract (the totals then list its lines).
    contracts: bool = False
    #: Demand-response and curtailment-credit lines (None: no site has either program).
    programs: ProgramLines | None = None

    @staticmethod
    def zeros(times_s: F64, n_nodes: int) -> Ledger:
        k = times_s.shape[0]
        return Ledger(
            times_s=times_s,
            mine_revenue=np.zeros(k),
            ai_revenue=np.zeros(k),
            power_cost=np.zeros(k),
            switching_cost=np.zeros(k),
            downtime_lost=np.zeros(k),
            switches=np.zeros(k, dtype=np.int64),
            evictions=np.zeros(k, dtype=np.int64),
            sla_misses=np.zeros(k, dtype=np.int64),
            jobs_served=np.zeros(k, dtype=np.int64),
            modes=np.zeros((k, 3), dtype=np.int64),
            node_revenue=np.zeros(n_nodes),
            node_power=np.zeros(n_nodes),
            node_switching=np.zeros(n_nodes),
            node_switches=np.zeros(n_nodes, dtype=np.int64),
            guard_holds=np.zeros(_GUARD_CODES, dtype=np.int64),
            contract_unused_cost=np.zeros(k),
            resale_revenue=np.zeros(k),
            demand_charge=np.zeros(k),
            coincident_peak_charge=np.zeros(k),
        )

    def holds(self) -> dict[str, int]:
        """Node-steps per guard that held or changed a node (guards that never acted are
        left out)."""
        return {Reason(code).name: int(self.guard_holds[code - _FIRST_GUARD])
                for code in sorted(GUARD_REASONS) if self.guard_holds[code - _FIRST_GUARD]}

    @property
    def revenue(self) -> F64:
        return self.mine_revenue + self.ai_revenue

    @property
    def contract_cost(self) -> F64:
        """Per step: what the power contract adds to the energy cost (charges and unused
        contracted energy, less its resale)."""
        cost = (self.contract_unused_cost - self.resale_revenue + self.demand_charge
                + self.coincident_peak_charge)
        return cost if self.programs is None else cost + self.programs.cost()

    @property
    def net(self) -> F64:
        if not self.contracts:
            return self.revenue - self.power_cost - self.switching_cost
        return self.revenue - self.power_cost - self.switching_cost - self.contract_cost

    def totals(self) -> dict[str, float]:
        contract = {} if not self.contracts else {
            "energy_cost_usd": float(self.power_cost.sum()),
            "contract_unused_energy_usd": float(self.contract_unused_cost.sum()),
            "resale_revenue_usd": float(self.resale_revenue.sum()),
            "demand_charge_usd": float(self.demand_charge.sum()),
            "coincident_peak_charge_usd": float(self.coincident_peak_charge.sum()),
            **({} if self.programs is None else self.programs.totals()),
        }
        return {
            **contract,
            "revenue_usd": float(self.revenue.sum()),
            "mine_revenue_usd": float(self.mine_revenue.sum()),
            "ai_revenue_usd": float(self.ai_revenue.sum()),
            "power_cost_usd": float(self.power_cost.sum()),
            "switching_cost_usd": float(self.switching_cost.sum()),
            "downtime_lost_usd": float(self.downtime_lost.sum()),
            "net_usd": float(self.net.sum()),
            "switches": int(self.switches.sum()),
            "evictions": int(self.evictions.sum()),
            "sla_misses": int(self.sla_misses.sum()),
            "jobs_served": int(self.jobs_served.sum()),
        }


class SimulatedSite:
    """Fleet state plus the job queue, advanced one decision step at a time."""

    def __init__(
        self,
        fleet: FleetTable,
        jobs: JobStream,
        scoring: ScoringConfig,
        *,
        max_wait_h: float = 24.0,
        contracts: ContractAccounts | None = None,
    ):
        # The site replaces columns rather than writing into them, so the tables it hands
        # out can share read-only columns with the policy's view (no copies per step).
        self.fleet = fleet.read_only()
        self.n = fleet.n
        self.jobs = jobs
        self.scoring = scoring
        self.max_wait_s = max_wait_h * 3600.0
        self.contracts = contracts
        self._site_energy = np.zeros(len(fleet.sites))
        self.switch_load = np.zeros(self.n)
        self.ready_at = np.zeros(self.n)
        self.book = JobBook(jobs, self.n, self.max_wait_s)
        offered = jobs.offered_usd_per_gpu_hour
        self._gpu_price_key: bytes | None = None
        self._gpu_price_now = np.zeros(self.n)
        self._offered_gpu_price = (
            None if offered is None else np.where(fleet.statics.is_gpu, offered, 0.0)
        )
        self._fill_order = self.book.fleet_order
        st = fleet.statics
        self.pool_fee, self.platform_fee, self.adder = (
            st.pool_fee,
            st.platform_fee,
            st.adder_usd_mwh,
        )
        if self._offered_gpu_price is not None:
            self._fill_order = self._best_paid_first(self._offered_gpu_price)
        self.stop_s, self.start_s, self.wear = st.stop_s, st.start_s, st.wear_usd
        self.is_gpu = st.is_gpu
        self.model_ok = self._model_filter()
        # Nodes that take AI jobs when in AI mode; neither changes during a run.
        self._can_serve = self.model_ok & self.fleet.reachable
        self._accepting = self._accepting_jobs()
        # The per-node facts accrual reads, one block each: these columns never change
        # during a run, and a compiled call pays per argument.
        self._accrual_facts = _frozen(
            np.stack(
                [
                    self.fleet.hashrate,
                    self.fleet.watts_mine,
                    self.fleet.watts_idle,
                    self.fleet.watts_ai,
                    self.fleet.gpus,
                    self.pool_fee,
                    self.platform_fee,
                    self.adder,
                ]
            )
        )
        self._accrual_lookups = _frozen(np.stack([self.fleet.site, self.fleet.algorithm]))
        offered = jobs.offered_usd_per_gpu_hour
        n_models = len(self.fleet.gpu_models)
        self._offered_by_model = _frozen(np.full(n_models, np.nan if offered is None else offered))
        self._no_pending = _frozen(np.zeros(n_models))

    @property
    def servable(self) -> B:
        """Nodes that take AI jobs whenever they are in AI mode (fixed for a run)."""
        return self._can_serve

    def _accepting_jobs(self) -> B:
        """Nodes that take AI jobs now: in AI mode and able to serve. Modes change only
        when a plan switches nodes, so this is worked out then."""
        accepting: B = (self.fleet.mode == AI) & self._can_serve
        return accepting

    def _model_filter(self) -> B:
        """Nodes whose GPU model the jobs accept."""
        if self.jobs.gpu_model is None:
            return np.array(self.is_gpu, dtype=bool)
        if self.jobs.gpu_model not in self.fleet.gpu_models:
            return np.zeros(self.n, dtype=bool)
        return np.equal(self.fleet.gpu_model, self.fleet.gpu_models.index(self.jobs.gpu_model))

    # --- before the decision ----------------------------------------------------------
    def arrive(self, now_s: float) -> int:
        """Queue jobs submitted before `now_s`; drop those that waited too long. Returns
        the number of SLA misses."""
        return self.book.arrive(now_s)

    @property
    def queue(self) -> QueuedJobs:
        """The jobs waiting for GPUs, front first."""
        return self.book.queued()

    def demand(self, now_s: float) -> DemandSummary:
        """GPUs waiting now, for the trace's GPU model (or any model) at its offered price.
        The decision step adds the smoothed demand level (`engine.step`)."""
        models = self.fleet.gpu_models
        pending, _running = self.book.gpus_waiting_and_running()
        price = self._offered_by_model
        if self.jobs.gpu_model is None:
            return DemandSummary(self._no_pending, price, pending,
                                 job_list=partial(self._pending_jobs, -1))
        if self.jobs.gpu_model not in models:  # no node can serve them: not demand here
            return DemandSummary(self._no_pending, price)
        model = models.index(self.jobs.gpu_model)
        per_model = np.zeros(len(models))
        per_model[model] = pending
        per_model.flags.writeable = False  # as the summary keeps it: no view to make
        # Listed on first use, during this decision (the queue changes only between them).
        return DemandSummary(per_model, price, job_list=partial(self._pending_jobs, model))

    def _pending_jobs(self, model: int) -> PendingJobs:
        """The queue job by job; a job leaves it once it has waited `max_wait_h`."""
        q = self.book.queued()
        if not len(q):
            return NO_JOBS
        n = len(q)
        offered = self.jobs.offered_usd_per_gpu_hour
        return PendingJobs.of(
            q.gpus, np.full(n, model, dtype=np.int16),
            np.full(n, np.nan if offered is None else offered), q.remaining_s / 3600.0,
            q.submit_s, q.submit_s + self.max_wait_s, q.interruptible)

    def fleet_at(self, now_s: float) -> FleetTable:
        """The fleet as the controller would read it at `now_s`: lifecycle state, and
        the GPUs and leases its running jobs hold."""
        state = np.empty(self.n, dtype=np.int8)
        _lifecycle_state(self.fleet.mode, self.ready_at, now_s, _STEADY, _STARTING, state)
        busy, lease, interruptible = self.book.node_columns()
        # Read-only, so the table (and the policy's view of it) shares them as they are.
        state.flags.writeable = busy.flags.writeable = False
        lease.flags.writeable = interruptible.flags.writeable = False
        return self.fleet.with_columns(
            state=state, ai_gpus_busy=busy, lease_until=lease, ai_interruptible=interruptible
        )

    # --- after the decision -----------------------------------------------------------
    def step(
        self,
        plan: Plan,
        *,
        now_s: float,
        dt_s: float,
        realized: MarketPrices,
        ledger: Ledger,
        k: int,
    ) -> None:
        """Apply the plan at `now_s` and accrue the ledger over [now_s, now_s + dt_s)."""
        fleet = self.fleet
        changed = plan.changed
        end_s = now_s + dt_s
        gpu_price = self._gpu_price(realized)

        switching = np.zeros(self.n)
        if changed.size:
            mode = fleet.mode.copy()
            since = fleet.since.copy()
            leaving = np.zeros(self.n, dtype=bool)
            ledger.downtime_lost[k], leaving_ai = _switch(
                changed,
                plan.target,
                plan.scores.value,
                self.stop_s,
                self.start_s,
                self.wear,
                now_s,
                dt_s,
                mode,
                since,
                self.ready_at,
                self.switch_load,
                switching,
                leaving,
                SWITCH_LOAD_HALF_LIFE_S,
                self._can_serve,
                self._accepting,
                ledger.node_switches,
            )
            mode.flags.writeable = since.flags.writeable = False
            self.fleet = fleet = fleet.with_columns(mode=mode, since=since)
            if leaving_ai:
                ledger.evictions[k] = self.book.evict(
                    leaving, now_s, gpu_price, self.scoring.eviction_penalty_gpu_hours, switching
                )
        ledger.switches[k] = changed.size

        ledger.jobs_served[k], busy_gpu_h = self.book.serve(
            self._accepting, fleet.gpus, self.ready_at, now_s, end_s, self._fill_order
        )
        contracts = self.contracts
        power_price = realized.power_usd_mwh
        if contracts is not None:
            ledger.contracts = True
            power_price = contracts.energy_prices(now_s, realized.power_usd_mwh)
        totals = _accrue(
            fleet.mode,
            self.ready_at,
            self._accrual_lookups,
            self._accrual_facts,
            power_price,
            realized.usd_per_unit_day,
            gpu_price,
            busy_gpu_h,
            switching,
            now_s,
            dt_s,
            ledger.node_revenue,
            ledger.node_power,
            ledger.node_switching,
            ledger.modes[k],
            self._site_energy,
            plan.reason,
            ledger.guard_holds,
        )
        if contracts is not None:
            contracts.record(ledger, k, now_s, dt_s, self._site_energy, realized.power_usd_mwh)
        ledger.mine_revenue[k] = totals[0]
        ledger.ai_revenue[k] = totals[1]
        ledger.power_cost[k] = totals[2]
        ledger.switching_cost[k] = totals[3]

    def _gpu_price(self, realized: MarketPrices) -> F64:
        """What an AI GPU-hour pays on each node now: the tenant's offer when the trace
        has one, else the recorded rental price of the node's model (0: none)."""
        if self._offered_gpu_price is not None:
            return self._offered_gpu_price
        by_model = realized.gpu_usd_per_gpu_hour
        key = by_model.tobytes()
        if key != self._gpu_price_key:  # rental prices move far less often than steps
            if by_model.size:
                p = by_model[np.where(self.is_gpu, self.fleet.gpu_model, 0)]
                self._gpu_price_now = np.where(self.is_gpu & np.isfinite(p), p, 0.0)
            else:
                self._gpu_price_now = np.zeros(self.n)
            self._gpu_price_key = key
            self._fill_order = self._best_paid_first(self._gpu_price_now)
        return self._gpu_price_now

    def _best_paid_first(self, gpu_price: F64) -> npt.NDArray[np.intp]:
        """The order the simulated cluster fills GPUs in: what a GPU-hour nets the site
        (rental price less the platform's fee), best first, fleet order among equals. A
        job that takes any GPU model lands where it earns the most, as on a Kueue
        ClusterQueue whose flavors are listed best-paid first; the order the fleet is
        written in the config changes nothing."""
        net = gpu_price * (1.0 - self.platform_fee)
        return np.argsort(-net, kind="stable").astype(np.intp)


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


@compiled
def _switch(
    changed: I64,
    target: npt.NDArray[np.int8],
    value: F64,
    stop_s: F64,
    start_s: F64,
    wear_usd: F64,
    now_s: float,
    dt_s: float,
    mode: npt.NDArray[np.int8],
    since: F64,
    ready_at: F64,
    switch_load: F64,
    switching: F64,
    leaving_ai: B,
    switch_load_half_life_s: float,
    can_serve: B,
    accepting: B,
    node_switches: npt.NDArray[np.int64],
) -> tuple[float, int]:
    """Start every planned switch: the node is down while the old workload stops and the
    new one starts, pays its wear, and counts against its switch budget. Updates `mode`,
    `since`, `ready_at`, `switch_load`, `switching` (USD), whether the node takes AI jobs
    (`accepting`: in AI mode and `can_serve`) and its switch count, and marks nodes
    leaving AI. Returns the output lost while down (USD, this step) and how many nodes
    leave AI."""
    lost = 0.0
    leaving = 0
    for i in changed:
        old, new = mode[i], target[i]
        downtime = stop_s[old, i] + start_s[new, i]
        ready_at[i] = now_s + downtime
        age = max(now_s - since[i], 0.0)
        switch_load[i] = switch_load[i] * np.exp2(-age / switch_load_half_life_s) + 1.0
        switching[i] += wear_usd[i]
        lost += min(downtime, dt_s) / 3600.0 * max(value[new, i], 0.0)
        if old == AI:
            leaving_ai[i] = True
            leaving += 1
        mode[i] = new
        since[i] = now_s
        accepting[i] = new == AI and can_serve[i]
        node_switches[i] += 1
    return lost, leaving


@compiled
def _lifecycle_state(
    mode: npt.NDArray[np.int8],
    ready_at: F64,
    now_s: float,
    steady: npt.NDArray[np.int8],
    starting: npt.NDArray[np.int8],
    out: npt.NDArray[np.int8],
) -> None:
    """Steady in its mode once the node's workload has started, else starting it."""
    for i in range(mode.shape[0]):
        out[i] = starting[mode[i]] if ready_at[i] > now_s else steady[mode[i]]


@compiled
def _accrue(
    mode: npt.NDArray[np.int8],
    ready_at: F64,
    lookups: npt.NDArray[np.int32],
    facts: F64,
    power_usd_mwh_by_site: F64,
    usd_per_unit_day_by_algorithm: F64,
    gpu_price: F64,
    busy_gpu_h: F64,
    switching: F64,
    now_s: float,
    dt_s: float,
    node_revenue: F64,
    node_power: F64,
    node_switching: F64,
    nodes_per_mode: npt.NDArray[np.int64],
    site_energy_wh: F64,
    reason: npt.NDArray[np.int16],
    guard_holds: npt.NDArray[np.int64],
) -> tuple[float, float, float, float]:
    """Accrue one step per node into the per-node totals and count nodes per mode; return
    the step's mining revenue, AI revenue (after the platform fee), power cost and
    switching cost.

    `lookups` rows: site, algorithm. `facts` rows: hashrate, mining W, idle W, AI W, GPUs,
    pool fee, platform fee, tariff adder. A node earns only once its workload has started
    (`ready_at`); it draws idle power all step, plus the mining increment while mining,
    plus the AI increment per busy GPU-hour in AI mode. `site_energy_wh` receives each
    site's energy over the step (Wh), which power contracts charge on. Each node whose
    plan `reason` is a guard's code adds one to that guard's `guard_holds` count
    (indexed by code − GUARD_STALE_DATA).
    """
    site, algorithm = lookups[0], lookups[1]
    hashrate, watts_mine, watts_idle, watts_ai = facts[0], facts[1], facts[2], facts[3]
    gpus, pool_fee, platform_fee, adder_usd_mwh = facts[4], facts[5], facts[6], facts[7]
    end_s = now_s + dt_s
    dt_h = dt_s / 3600.0
    # Every node already running works the whole step: the same hours for all of them.
    steady_h = min(max(end_s - now_s, 0.0), dt_s) / 3600.0
    mine_sum = ai_sum = power_sum = switching_sum = 0.0
    # Counts and one site's energy add up in registers, not through memory per node.
    n_mine = n_ai = 0
    one_site = site_energy_wh.shape[0] == 1
    energy_sum = 0.0
    site_energy_wh[:] = 0.0
    for i in range(mode.shape[0]):
        if ready_at[i] <= now_s:
            productive_h = steady_h
        else:
            productive_h = min(max(end_s - ready_at[i], 0.0), dt_s) / 3600.0
        energy_wh = watts_idle[i] * dt_h
        mine_rev = 0.0
        m = mode[i]
        if m == MINE:
            n_mine += 1
            usd_per_unit_day = usd_per_unit_day_by_algorithm[algorithm[i]]
            per_h = mining_revenue_usd_per_hour(hashrate[i], usd_per_unit_day, pool_fee[i])
            mine_rev = per_h * productive_h
            energy_wh += (watts_mine[i] - watts_idle[i]) * productive_h
        elif m == AI:
            n_ai += 1
            if gpus[i] > 0:
                energy_wh += (watts_ai[i] - watts_idle[i]) / gpus[i] * busy_gpu_h[i]
        # Busy GPU-hours at a full fill; energy in Wh over the step priced like W over 1 h.
        ai_rev = ai_revenue_usd_per_hour(busy_gpu_h[i], gpu_price[i], 1.0, platform_fee[i])
        power_price = power_usd_mwh_by_site[site[i]] + adder_usd_mwh[i]
        power_cost = power_cost_usd_per_hour(energy_wh, power_price)
        if one_site:
            energy_sum += energy_wh
        else:
            site_energy_wh[site[i]] += energy_wh
        node_revenue[i] += mine_rev + ai_rev
        node_power[i] += power_cost
        node_switching[i] += switching[i]
        mine_sum += mine_rev
        ai_sum += ai_rev
        power_sum += power_cost
        switching_sum += switching[i]
        # The plan's guard interventions, counted in the same pass (no second call).
        code = reason[i] - _FIRST_GUARD
        if code >= 0 and code < guard_holds.shape[0]:
            guard_holds[code] += 1
    if one_site:
        site_energy_wh[0] = energy_sum
    nodes_per_mode[IDLE] = mode.shape[0] - n_mine - n_ai
    nodes_per_mode[MINE] = n_mine
    nodes_per_mode[AI] = n_ai
    return mine_sum, ai_sum, power_sum, switching_sum
