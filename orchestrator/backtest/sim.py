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

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.jobs import JobStream
from orchestrator.engine.guards import SWITCH_LOAD_HALF_LIFE_S
from orchestrator.engine.plan import Plan
from orchestrator.framework.compiled import compiled
from orchestrator.models.config import ScoringConfig
from orchestrator.models.demand import DemandSummary, smooth_demand
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices
from orchestrator.models.modes import STEADY_STATE_OF_MODE, Mode, NodeState

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.intp]
B = npt.NDArray[np.bool_]

_STEADY = np.array([STEADY_STATE_OF_MODE[m] for m in Mode], dtype=np.int8)
IDLE, MINE, AI = int(Mode.IDLE), int(Mode.MINE), int(Mode.AI)
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
        )

    @property
    def revenue(self) -> F64:
        return self.mine_revenue + self.ai_revenue

    @property
    def net(self) -> F64:
        return self.revenue - self.power_cost - self.switching_cost

    def totals(self) -> dict[str, float]:
        return {
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


@dataclass
class _Jobs:
    """Parallel arrays of jobs (queued or running)."""

    submit: F64 = field(default_factory=lambda: np.zeros(0))
    gpus: F64 = field(default_factory=lambda: np.zeros(0))
    remaining_s: F64 = field(default_factory=lambda: np.zeros(0))
    interruptible: B = field(default_factory=lambda: np.zeros(0, dtype=bool))
    node: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    start: F64 = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return int(self.submit.shape[0])

    def take(self, mask: B | I64) -> _Jobs:
        return _Jobs(
            self.submit[mask],
            self.gpus[mask],
            self.remaining_s[mask],
            self.interruptible[mask],
            self.node[mask],
            self.start[mask],
        )

    def extend(self, other: _Jobs, *, front: bool = False) -> _Jobs:
        a, b = (other, self) if front else (self, other)
        return _Jobs(
            np.concatenate((a.submit, b.submit)),
            np.concatenate((a.gpus, b.gpus)),
            np.concatenate((a.remaining_s, b.remaining_s)),
            np.concatenate((a.interruptible, b.interruptible)),
            np.concatenate((a.node, b.node)).astype(np.intp),
            np.concatenate((a.start, b.start)),
        )


class SimulatedSite:
    """Fleet state plus the job queue, advanced one decision step at a time."""

    def __init__(
        self,
        fleet: FleetTable,
        jobs: JobStream,
        scoring: ScoringConfig,
        *,
        max_wait_h: float = 24.0,
        demand_half_life_h: float = 6.0,
    ):
        self.fleet = fleet
        self.n = fleet.n
        self.jobs = jobs
        self.scoring = scoring
        self.max_wait_s = max_wait_h * 3600.0
        self.switch_load = np.zeros(self.n)
        self.demand_half_life_s = demand_half_life_h * 3600.0
        self._expected_gpus = 0.0
        self._last_demand_s: float | None = None
        self.ready_at = np.zeros(self.n)
        self._next_arrival = 0
        self.queue = _Jobs()
        self.running = _Jobs()
        st = fleet.statics
        self.pool_fee, self.platform_fee, self.adder = (
            st.pool_fee,
            st.platform_fee,
            st.adder_usd_mwh,
        )
        self.stop_s, self.start_s, self.wear = st.stop_s, st.start_s, st.wear_usd
        self.is_gpu = st.is_gpu
        self.model_ok = self._model_filter()

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
        j = self.jobs
        end = int(np.searchsorted(j.submit_s, now_s, side="left"))
        if end > self._next_arrival:
            sl = slice(self._next_arrival, end)
            k = end - self._next_arrival
            self.queue = self.queue.extend(
                _Jobs(
                    j.submit_s[sl].copy(),
                    j.gpus[sl].copy(),
                    j.duration_s[sl].copy(),
                    j.interruptible[sl].copy(),
                    np.full(k, -1, dtype=np.intp),
                    np.zeros(k),
                )
            )
            self._next_arrival = end
        expired = now_s - self.queue.submit > self.max_wait_s
        misses = int(np.count_nonzero(expired))
        if misses:
            self.queue = self.queue.take(~expired)
        return misses

    def demand(self, now_s: float) -> DemandSummary:
        """Pending GPUs, and the smoothed level of running + pending demand."""
        models = self.fleet.gpu_models
        pending = float(self.queue.gpus.sum())
        total = pending + float(self.running.gpus.sum())
        if self._last_demand_s is None:
            self._expected_gpus = total
        else:
            self._expected_gpus = smooth_demand(
                self._expected_gpus, total, now_s - self._last_demand_s, self.demand_half_life_s
            )
        self._last_demand_s = now_s
        offered = self.jobs.offered_usd_per_gpu_hour
        price = np.full(len(models), np.nan if offered is None else offered)
        if self.jobs.gpu_model is None:
            return DemandSummary(
                np.zeros(len(models)),
                price,
                pending,
                expected_gpus_any_model=self._expected_gpus,
            )
        per_model = np.zeros(len(models))
        expected = np.zeros(len(models))
        if self.jobs.gpu_model in models:
            per_model[models.index(self.jobs.gpu_model)] = pending
            expected[models.index(self.jobs.gpu_model)] = self._expected_gpus
        return DemandSummary(per_model, price, expected_gpus=expected)

    def fleet_at(self, now_s: float) -> FleetTable:
        """The fleet as the controller would read it at `now_s`."""
        settling = self.ready_at > now_s
        state = np.where(settling, _STARTING[self.fleet.mode], _STEADY[self.fleet.mode])
        return self.fleet.with_columns(state=state.astype(np.int8))

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
            old = fleet.mode[changed].astype(np.intp)
            new = plan.target[changed].astype(np.intp)
            downtime = self.stop_s[old, changed] + self.start_s[new, changed]
            self.ready_at[changed] = now_s + downtime
            age = np.maximum(now_s - fleet.since[changed], 0.0)
            self.switch_load[changed] = (
                self.switch_load[changed] * np.exp2(-age / SWITCH_LOAD_HALF_LIFE_S) + 1.0
            )
            switching[changed] += self.wear[changed]
            value_new = plan.scores.value[new, changed]
            ledger.downtime_lost[k] = float(
                np.sum(np.minimum(downtime, dt_s) / 3600.0 * np.maximum(value_new, 0.0))
            )
            mode = fleet.mode.copy()
            mode[changed] = plan.target[changed]
            since = fleet.since.copy()
            since[changed] = now_s
            self.fleet = fleet = fleet.with_columns(mode=mode, since=since)
            left_ai = changed[old == Mode.AI]
            if left_ai.size:
                switching += self._evict(left_ai, now_s, gpu_price, ledger, k)
        ledger.switches[k] = changed.size
        ledger.modes[k] = np.bincount(fleet.mode.astype(np.intp), minlength=3)

        ledger.jobs_served[k] = self._place(now_s)
        ai_rev, busy_gpu_h = self._run_jobs(now_s, end_s, gpu_price)

        totals = _accrue(
            fleet.mode,
            self.ready_at,
            fleet.site,
            fleet.algorithm,
            fleet.hashrate,
            fleet.watts_mine,
            fleet.watts_idle,
            fleet.watts_ai,
            fleet.gpus,
            self.pool_fee,
            self.platform_fee,
            self.adder,
            realized.power_usd_mwh,
            realized.usd_per_unit_day,
            ai_rev,
            busy_gpu_h,
            switching,
            now_s,
            dt_s,
            ledger.node_revenue,
            ledger.node_power,
            ledger.node_switching,
        )
        ledger.mine_revenue[k] = totals[0]
        ledger.ai_revenue[k] = totals[1]
        ledger.power_cost[k] = totals[2]
        ledger.switching_cost[k] = totals[3]
        self._refresh_fleet_columns()

    def _gpu_price(self, realized: MarketPrices) -> F64:
        """What an AI GPU-hour pays on each node now: the tenant's offer when the trace
        has one, else the recorded rental price of the node's model (0: none)."""
        if self.jobs.offered_usd_per_gpu_hour is not None:
            return np.where(self.is_gpu, self.jobs.offered_usd_per_gpu_hour, 0.0)
        if not realized.gpu_usd_per_gpu_hour.size:
            return np.zeros(self.n)
        p = realized.gpu_usd_per_gpu_hour[np.where(self.is_gpu, self.fleet.gpu_model, 0)]
        return np.where(self.is_gpu & np.isfinite(p), p, 0.0)

    def _evict(self, nodes: I64, now_s: float, gpu_price: F64, ledger: Ledger, k: int) -> F64:
        """Evict the jobs on `nodes` (all interruptible: guards keep protected work) and
        requeue them at the front with their remaining work. Returns penalties per node."""
        penalty = np.zeros(self.n)
        on = np.isin(self.running.node, nodes)
        if not on.any():
            return penalty
        evicted = self.running.take(on)
        self.running = self.running.take(~on)
        done = np.maximum(now_s - evicted.start, 0.0)
        evicted.remaining_s = np.maximum(evicted.remaining_s - done, 60.0)
        np.add.at(
            penalty,
            evicted.node,
            evicted.gpus * gpu_price[evicted.node] * self.scoring.eviction_penalty_gpu_hours,
        )
        evicted.node = np.full(len(evicted), -1, dtype=np.intp)
        self.queue = self.queue.extend(evicted, front=True)
        ledger.evictions[k] = len(evicted)
        return penalty

    def _free_gpus(self) -> F64:
        busy = np.bincount(self.running.node, weights=self.running.gpus, minlength=self.n)
        busy = busy.astype(np.float64)
        accepting = (self.fleet.mode == Mode.AI) & self.model_ok & self.fleet.reachable
        return np.where(accepting, self.fleet.gpus - busy, 0.0)

    def _place(self, now_s: float) -> int:
        """First-fit queued jobs (FIFO) onto AI nodes with free GPUs."""
        if len(self.queue) == 0:
            return 0
        free = self._free_gpus()
        if free.max(initial=0.0) < self.queue.gpus.min():
            return 0
        candidates = np.flatnonzero(free > 0)
        slot = np.empty(len(self.queue), dtype=np.intp)
        _first_fit(self.queue.gpus, free[candidates], slot)
        idx = np.flatnonzero(slot >= 0)
        if not idx.size:
            return 0
        nodes = candidates[slot[idx]]
        started = self.queue.take(idx)
        started.node = nodes
        started.start = np.maximum(now_s, self.ready_at[started.node])
        self.running = self.running.extend(started)
        keep = np.ones(len(self.queue), dtype=bool)
        keep[idx] = False
        self.queue = self.queue.take(keep)
        return len(started)

    def _run_jobs(self, now_s: float, end_s: float, gpu_price: F64) -> tuple[F64, F64]:
        """Accrue running jobs over the step; retire the finished. Returns AI revenue and
        busy GPU-hours per node."""
        r = self.running
        if len(r) == 0:
            return np.zeros(self.n), np.zeros(self.n)
        gpu_h: F64
        finish = r.start + r.remaining_s
        run_h = np.clip(np.minimum(finish, end_s) - np.maximum(r.start, now_s), 0.0, None) / 3600
        gpu_h = np.bincount(r.node, weights=r.gpus * run_h, minlength=self.n).astype(np.float64)
        revenue = gpu_h * gpu_price
        done = finish <= end_s
        # Carry unfinished jobs: their clock restarts at the step end.
        carried = np.maximum(r.start, now_s)
        r.remaining_s = r.remaining_s - np.maximum(np.minimum(finish, end_s) - carried, 0.0)
        r.start = np.where(done, r.start, np.maximum(r.start, end_s))
        self.running = r.take(~done)
        return revenue, gpu_h

    def _refresh_fleet_columns(self) -> None:
        r = self.running
        busy = np.bincount(r.node, weights=r.gpus, minlength=self.n)
        lease = np.zeros(self.n)
        protected = ~r.interruptible
        if protected.any():
            np.maximum.at(lease, r.node[protected], r.start[protected] + r.remaining_s[protected])
        has_protected = np.bincount(r.node[protected], minlength=self.n) > 0
        self.fleet = self.fleet.with_columns(
            ai_gpus_busy=busy, lease_until=lease, ai_interruptible=~has_protected
        )


@compiled
def _accrue(
    mode: npt.NDArray[np.int8],
    ready_at: F64,
    site: npt.NDArray[np.int32],
    algorithm: npt.NDArray[np.int32],
    hashrate: F64,
    watts_mine: F64,
    watts_idle: F64,
    watts_ai: F64,
    gpus: F64,
    pool_fee: F64,
    platform_fee: F64,
    adder_usd_mwh: F64,
    power_usd_mwh_by_site: F64,
    usd_per_unit_day_by_algorithm: F64,
    ai_revenue_gross: F64,
    busy_gpu_h: F64,
    switching: F64,
    now_s: float,
    dt_s: float,
    node_revenue: F64,
    node_power: F64,
    node_switching: F64,
) -> tuple[float, float, float, float]:
    """Accrue one step per node into the per-node totals; return the step's mining
    revenue, AI revenue (after the platform fee), power cost and switching cost.

    A node earns only once its workload has started (`ready_at`); it draws idle power
    all step, plus the mining increment while mining, plus the AI increment per busy
    GPU-hour in AI mode.
    """
    end_s = now_s + dt_s
    dt_h = dt_s / 3600.0
    mine_sum = ai_sum = power_sum = switching_sum = 0.0
    for i in range(mode.shape[0]):
        productive_h = min(max(end_s - max(ready_at[i], now_s), 0.0), dt_s) / 3600.0
        energy_wh = watts_idle[i] * dt_h
        mine_rev = 0.0
        if mode[i] == MINE:
            usd_per_unit_day = usd_per_unit_day_by_algorithm[algorithm[i]]
            mine_rev = hashrate[i] * usd_per_unit_day / 24.0 * (1.0 - pool_fee[i]) * productive_h
            energy_wh += (watts_mine[i] - watts_idle[i]) * productive_h
        elif mode[i] == AI and gpus[i] > 0:
            energy_wh += (watts_ai[i] - watts_idle[i]) / gpus[i] * busy_gpu_h[i]
        ai_rev = ai_revenue_gross[i] * (1.0 - platform_fee[i])
        power_price = power_usd_mwh_by_site[site[i]] + adder_usd_mwh[i]
        power_cost = energy_wh / 1e6 * power_price
        node_revenue[i] += mine_rev + ai_rev
        node_power[i] += power_cost
        node_switching[i] += switching[i]
        mine_sum += mine_rev
        ai_sum += ai_rev
        power_sum += power_cost
        switching_sum += switching[i]
    return mine_sum, ai_sum, power_sum, switching_sum


@compiled
def _first_fit(job_gpus: F64, free: F64, slot: npt.NDArray[np.intp]) -> None:
    """FIFO first fit: each job, in queue order, takes the first candidate with room
    (`slot` = candidate index, -1: waits). Stops once no candidate has a whole GPU."""
    slot[:] = -1
    most_free = free.max() if free.shape[0] else 0.0
    for q in range(job_gpus.shape[0]):
        g = job_gpus[q]
        if g > most_free:
            if most_free < 1.0:
                return
            continue
        for c in range(free.shape[0]):
            if free[c] >= g:
                had = free[c]
                free[c] = had - g
                slot[q] = c
                if had == most_free:
                    most_free = free.max()
                break
