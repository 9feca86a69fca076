"""The hindsight oracle: a feasible schedule on the same data and a proven upper bound
on the best one, with the gap between them.

Per node, choosing a mode for every step with switching costs is a small dynamic
program over (step × 3 modes). Nodes couple only through the site power cap and the AI
demand they share. Both couplings are relaxed with Lagrange multipliers (λ on GPU
demand, μ per step and site on the power cap): for any λ, μ ≥ 0 the sum of the per-node
optima plus the multipliers times the limits is an upper bound on the coupled optimum
(weak duality). Each iteration also builds a feasible schedule from the relaxed one
(`_feasible_schedule`: the cap filled by value per watt, GPUs filled up to demand,
switching paid). Multipliers move by Polyak steps toward the best feasible value;
iterations stop when the gap (bound − feasible) ÷ feasible is at most the tolerance, or
at the iteration limit.

AI demand enters twice. The schedule fills, per step, the GPUs the simulated site's job
queue keeps busy when every GPU is offered to AI (`served_demand_gpus`). The bound, when
given the jobs' arrivals, holds only what the queue cannot escape: the GPU-hours served
by the end of any step are at most those queued by then, each job running from the first
decision after its submission (`queued_arrivals_gpus`, summed), and each step's fill is
at most the GPUs of the jobs that may be running then (`window_demand_gpus`). A queue
that delays work can run it in a later step, so the on-arrival demand of each step would
not bound it; the running total does. Downtime while switching is charged at the new
mode's value above idle, as the simulated site loses it (the node draws idle power).

On a site with a power contract (`contract_prices`), each step's energy is priced as the
contract bills it, and the lines that do not follow from the energy price enter the bound
on the schedule's side: exact where they are linear or fixed (resale of a fixed block,
coincident-peak charges, availability payments), the demand charge at its lower bound,
credits at their upper bounds, and each event's shortfall penalty through a multiplier ν
no higher than the penalty rate. The schedule plans at the same prices under the caps the
guards apply during called events.

Identical nodes (same profile, site and starting mode) share one dynamic program, so
the cost is O(steps × classes), independent of the fleet size. The oracle ignores min
dwell and switch budgets (both the bound and the schedule may switch every step).
A backtest runs the schedule through the simulated site (`schedule.ScheduleFollower`,
`runner.run_oracle`); that ledger's net is the feasible value it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.jobbook import MIN_REMAINING_S
from orchestrator.backtest.jobs import JobStream
from orchestrator.backtest.sim import SimulatedSite
from orchestrator.engine.contracts import ContractBook, hours_in_month
from orchestrator.framework.jit import compiled
from orchestrator.models.config import ScoringConfig
from orchestrator.models.contract import FixedPrice
from orchestrator.models.fleet import NO_GPU_MODEL, FleetTable
from orchestrator.models.modes import Mode

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OracleResult:
    #: Net USD of the best feasible hindsight schedule found (reachable: the capture base).
    feasible_usd: float
    #: Proven upper bound on the best net USD (Lagrangian dual).
    bound_usd: float
    iterations: int
    #: Modes per step of the feasible schedule: nodes per mode at each step (steps × 3).
    modes: npt.NDArray[np.int64]
    #: The feasible schedule's net per step (sums to `feasible_usd`), for plotting.
    net_per_step: F64
    #: Gap the iterations stopped at or below, and the iteration limit.
    tolerance: float = 0.005
    max_iterations: int = 0
    #: The node class (profile, site, starting mode) of every node, and the schedule as
    #: nodes of each class per mode at each step (steps × classes × 3).
    class_of_node: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64))
    class_modes: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((0, 0, 3), dtype=np.int64))
    #: The oracle's own estimate of the schedule's net USD, before the simulated site ran
    #: it (`feasible_usd` is the site's ledger once `on_site` has replaced it).
    estimate_usd: float = float("nan")
    #: Whether `feasible_usd` is the simulated site's ledger for this schedule.
    on_site_ledger: bool = False
    #: The AI revenue in that ledger (NaN before the site ran the schedule).
    ai_revenue_usd: float = float("nan")
    #: Which AI demand the bound holds: "per step", "arrivals, cumulative" or
    #: "arrivals, cumulative; job windows".
    bound_demand: str = "per step"
    #: Other schedules from the same relaxed plan (steps × classes × 3 each), filling
    #: other demand series: candidates the simulated site may run better.
    alternatives: tuple[npt.NDArray[np.int64], ...] = ()

    def on_site(self, net_per_step: F64, modes: npt.NDArray[np.int64],
                ai_revenue_usd: float = float("nan")) -> OracleResult:
        """The same schedule and bound, valued by the simulated site that ran it: its
        ledger's net per step, nodes per mode and AI revenue."""
        return replace(self, feasible_usd=float(np.sum(net_per_step)),
                       net_per_step=np.asarray(net_per_step, dtype=np.float64),
                       modes=np.asarray(modes, dtype=np.int64), on_site_ledger=True,
                       ai_revenue_usd=float(ai_revenue_usd))

    @property
    def net_usd(self) -> float:
        """The capture base: the best feasible schedule's net USD."""
        return self.feasible_usd

    @property
    def gap(self) -> float:
        """(bound − feasible) ÷ |feasible|: how far the feasible value may be from the best."""
        if self.feasible_usd == 0:
            return 0.0 if self.bound_usd <= 0 else np.inf
        return max(self.bound_usd - self.feasible_usd, 0.0) / abs(self.feasible_usd)

    @property
    def converged(self) -> bool:
        return self.gap <= self.tolerance

    @property
    def kind(self) -> str:
        if self.converged:
            state = "within tolerance"
        elif self.iterations >= self.max_iterations:
            state = "iteration limit reached"
        else:  # the oracle's own estimate met the tolerance; the site's ledger did not
            state = "estimate within tolerance"
        ran = " as the simulated site ran it" if self.on_site_ledger else ""
        return (
            f"feasible schedule{ran}, bound {self.bound_usd:,.0f} USD, gap {self.gap:.2%} "
            f"({state}: tolerance {self.tolerance:.2%}, {self.iterations} of "
            f"{self.max_iterations} iterations)"
        )


def demand_gpus_per_step(jobs: JobStream, times_s: F64, dt_s: float) -> F64:
    """Mean GPUs busy in each step if every job ran on arrival."""
    k = times_s.shape[0]
    out = np.zeros(k)
    if len(jobs) == 0 or k == 0:
        return out
    t0 = float(times_s[0])
    start = (jobs.submit_s - t0) / dt_s
    end = (jobs.submit_s + jobs.duration_s - t0) / dt_s
    first = np.floor(start).astype(np.intp)
    last = np.minimum(np.ceil(end).astype(np.intp), k) - 1
    spans = np.maximum(last - first + 1, 0)
    rep = np.repeat(np.arange(start.shape[0]), spans)
    step = np.repeat(first, spans) + (
        np.arange(rep.shape[0]) - np.repeat(np.cumsum(spans) - spans, spans)
    )
    overlap = np.minimum(end[rep], step + 1) - np.maximum(start[rep], step)
    valid = (step >= 0) & (step < k) & (overlap > 0)
    np.add.at(out, step[valid], jobs.gpus[rep][valid] * overlap[valid])
    return out


def queued_arrivals_gpus(jobs: JobStream, times_s: F64, dt_s: float, node_gpus: F64) -> F64:
    """Mean GPUs busy in each step if every job ran from the first decision after it was
    submitted (when the simulated site's queue first holds it) and jobs no node could
    hold were left out: no queue serves any job earlier or longer, so the GPU-hours it has
    served by the end of a step never exceed this running total."""
    k = times_s.shape[0]
    if len(jobs) == 0 or k == 0:
        return np.zeros(k)
    t0 = float(times_s[0])
    # The site queues a job at the first step start strictly after its submission.
    first = np.maximum(np.floor((jobs.submit_s - t0) / dt_s) + 1.0, 0.0)
    largest = float(np.max(node_gpus)) if node_gpus.size else 0.0
    fits = jobs.gpus <= largest
    shifted = replace(jobs, submit_s=(t0 + first * dt_s)[fits], gpus=jobs.gpus[fits],
                      duration_s=jobs.duration_s[fits], interruptible=jobs.interruptible[fits])
    return demand_gpus_per_step(shifted, times_s, dt_s)


def window_demand_gpus(
    jobs: JobStream, times_s: F64, dt_s: float, node_gpus: F64, *, max_wait_s: float,
    start_delay_s: float,
) -> F64:
    """Mean GPUs of the jobs that may be running in each step on the simulated site,
    whatever the schedule: a job waits in the queue from the first decision after its
    submission, starts no later than `max_wait_s` after it (then it is dropped) plus the
    time its node takes to get ready (`start_delay_s`), and runs at most its duration
    (an evicted job keeps no more than that, and at least `MIN_REMAINING_S`). Jobs no node
    can hold are left out."""
    k = times_s.shape[0]
    if len(jobs) == 0 or k == 0:
        return np.zeros(k)
    t0 = float(times_s[0])
    first = t0 + np.maximum(np.floor((jobs.submit_s - t0) / dt_s) + 1.0, 0.0) * dt_s
    last = (jobs.submit_s + max_wait_s + start_delay_s
            + np.maximum(jobs.duration_s, MIN_REMAINING_S))
    largest = float(np.max(node_gpus)) if node_gpus.size else 0.0
    keep = (jobs.gpus <= largest) & (last > first)
    window = replace(jobs, submit_s=first[keep], gpus=jobs.gpus[keep],
                     duration_s=(last - first)[keep], interruptible=jobs.interruptible[keep])
    return demand_gpus_per_step(window, times_s, dt_s)


def served_demand_gpus(
    fleet: FleetTable, jobs: JobStream, times_s: F64, dt_s: float, *, max_wait_h: float,
    whole_nodes: bool = False,
) -> F64:
    """Mean GPUs the simulated site's job queue keeps busy in each step when every node
    that can take the jobs is in AI, ready, at every step: whole jobs, first fit, FIFO,
    SLA drops included (the same `JobBook` a backtest runs). A schedule that offers fewer
    GPUs than this at a step leaves work waiting, so this is what its AI nodes can fill.
    With `whole_nodes`, every GPU of a node with any work counts: what the jobs occupy
    once packed onto nodes."""
    k = times_s.shape[0]
    out = np.zeros(k)
    if len(jobs) == 0 or k == 0:
        return out
    site = SimulatedSite(fleet, jobs, ScoringConfig(), max_wait_h=max_wait_h)
    accepting = site.servable
    gpus = np.ascontiguousarray(fleet.gpus, dtype=np.float64)
    ready = np.zeros(fleet.n)
    dt_h = dt_s / 3600.0
    for i in range(k):
        now = float(times_s[i])
        site.book.arrive(now)
        _, busy_gpu_h = site.book.serve(accepting, gpus, ready, now, now + dt_s)
        if whole_nodes:
            out[i] = float(np.sum(gpus[busy_gpu_h > 0]))
        else:
            out[i] = float(np.sum(busy_gpu_h)) / dt_h
    return out


@dataclass(frozen=True, slots=True)
class ContractPrices:
    """What the oracle prices each step's energy at under the sites' power contracts
    (`contract_prices`), all per step and site, USD/MWh before the site's tariff adder.

    The bound's prices and constants make, for every schedule the site can run, a linear
    function of its energy that is at least the ledger's net contract lines:
    `bound_usd_mwh` × energy − `exact_usd` − `upper_usd` ≤ what the ledger bills
    (energy, unused contracted energy less its resale, demand and coincident-peak charges,
    less payments and credits), and the shortfall penalty of each called event is at least
    ν × (energy − `event_w` × hours) for any 0 ≤ ν ≤ `event_price_max`."""

    #: Price of a MWh in the bound: the contract's marginal energy price (spot below a
    #: resold block), the demand charge's lower bound, the coincident-peak charge and the
    #: slope of the curtailment credit's upper bound.
    bound_usd_mwh: F64
    #: Price of a MWh the feasible schedule plans with (the same lines).
    plan_usd_mwh: F64
    #: USD per step the ledger books whatever the schedule: availability payments, less
    #: the fixed block's cost above its resale at spot (exact).
    exact_usd: F64
    #: USD per step the bound adds for credits that depend on the schedule: each at
    #: its largest possible value (demand-response energy payments, the intercept of the
    #: curtailment credit's upper bound), and the intercept of the line bounding a
    #: resold block's cost where the site may draw beyond the block.
    upper_usd: F64
    #: The site's cap while a called event is in force (W; inf: none), as the guards
    #: apply it to every decision.
    event_cap_w: F64
    #: Draw above which an event's shortfall penalty applies (W), and the most its
    #: multiplier may cost a MWh (USD/MWh: 0 where no event window reaches the step).
    event_w: F64
    event_price_max: F64


def contract_prices(
    book: ContractBook, fleet: FleetTable, times_s: F64, spot_usd_mwh: F64, dt_s: float,
) -> ContractPrices:
    """Each step's contract prices and constants for the oracle (see `ContractPrices`).

    Per site, `hi` is the most the site can draw (its cap, at most every node's largest
    mode) and `lo` the least (every node idle); the bound holds for every schedule whose
    draw stays in [lo, hi], which the power cap guard keeps it in.

    - Fixed price with resale of a block B: the ledger bills B × (fixed − spot) + E ×
      (spot + adder) for E ≤ B, and E × (fixed + adder) above it; B × (fixed − spot) is
      exact and E is priced at spot where `hi` ≤ B; else at spot + r × (fixed − spot),
      r = (hi − B) ÷ (hi − lo): where spot is above fixed (the cost then concave) the
      part above the block is bounded by its chord over [lo, hi], where it is below (the
      cost convex) by a blend of the two pieces' lines. The schedule plans at that price.
    - Demand charge (≥ 0): bounded below by the rate × the month's average draw (the
      highest hourly average is at least the average), a price of rate ÷ hours of the
      month per kWh.
    - Coincident peak: exactly linear in each step's draw (usd_per_kw × p ÷ intervals).
    - Curtailment credit: credit × max(baseline − kW, 0) is convex in kW, so the chord
      over [lo, hi] lies above it: an intercept (in `upper_usd`) less a slope per MWh.
    - Demand response: availability payments exact; energy payments at most the rate ×
      (hi − lo) × the event's hours; shortfall penalties through `event_price_max`.
    """
    steps, n_sites = times_s.shape[0], len(fleet.sites)
    dt_h = dt_s / 3600.0
    bound = np.array(spot_usd_mwh, dtype=np.float64, copy=True).reshape(steps, n_sites)
    plan = bound.copy()
    exact = np.zeros(steps)
    upper = np.zeros(steps)
    cap_w = np.asarray(fleet.site_power_cap_w(), dtype=np.float64)
    event_cap = np.repeat(cap_w[None, :], steps, axis=0)
    event_w = np.zeros((steps, n_sites))
    event_max = np.zeros((steps, n_sites))
    site = fleet.site.astype(np.intp)
    top_w = np.maximum(np.maximum(fleet.watts_idle, fleet.watts_mine),
                       np.where(fleet.gpus > 0, fleet.watts_ai, 0.0))
    lo_kw = np.bincount(site, weights=fleet.watts_idle, minlength=n_sites) / 1000.0
    hi_kw = np.minimum(np.bincount(site, weights=top_w, minlength=n_sites) / 1000.0,
                       cap_w / 1000.0)
    index = {s.name: j for j, s in enumerate(book.sites)}
    for j, s in enumerate(fleet.sites):
        contract = s.contract
        b = index.get(s.name)
        if contract is None or contract.is_plain_spot or b is None:
            continue
        spot = bound[:, j].copy()
        local = [datetime.fromtimestamp(float(t), s.zone) for t in times_s]
        month_h = np.array([hours_in_month(t) for t in local])
        price = contract.price
        if isinstance(price, FixedPrice) and s.contracted_kw > 0:
            block_kw = s.contracted_kw
            exact += block_kw * dt_h / 1000.0 * (spot - price.usd_mwh)
            if hi_kw[j] > block_kw:
                # Above the block each MWh costs fixed instead of spot: the cost is the
                # block's line plus (fixed − spot) × max(kW − B, 0). Where spot is the
                # higher that part is concave and its chord on [lo, hi], r × kW − q, keeps
                # the bound's cost below it; where fixed is, any blend of the two pieces'
                # lines does, and the bound takes the same weight r on the fixed price.
                if block_kw <= lo_kw[j]:
                    r, q = 1.0, block_kw
                else:
                    r = (hi_kw[j] - block_kw) / (hi_kw[j] - lo_kw[j])
                    q = r * lo_kw[j]
                dearer = spot - price.usd_mwh
                upper -= np.where(dearer > 0, dearer * q, dearer * r * block_kw) * dt_h / 1000.0
                spot = spot - r * dearer
            bound[:, j] = plan[:, j] = spot
        elif price != "spot":
            energy = np.array([book.energy_usd_mwh(b, t, float(x))
                               for t, x in zip(local, spot, strict=True)])
            bound[:, j] = plan[:, j] = energy
        rate = contract.demand_charge_usd_per_kw_month
        if rate > 0:
            share = rate * 1000.0 / month_h  # USD/kW-month over the month's hours, per MWh
            bound[:, j] += share
            plan[:, j] += share
        cp = contract.coincident_peak
        if cp is not None:
            alerts = book.alerts.get(s.name)
            p = np.array([alerts.at(float(t)) if alerts is not None else 0.0
                          for t in times_s])
            p = np.where([t.month in cp.months for t in local], p, 0.0)
            per_mwh = cp.usd_per_kw * 1000.0 * p / cp.peak_intervals / dt_h
            bound[:, j] += per_mwh
            plan[:, j] += per_mwh
        credit = contract.curtailment_credit
        if credit is not None and credit.usd_mwh > 0:
            paid = np.array([book.credit_hour(b, t) for t in local])
            base, lo, hi = credit.baseline_kw, float(lo_kw[j]), float(hi_kw[j])
            if base > lo:
                slope = 1.0 if base >= hi or hi <= lo else (base - lo) / (hi - lo)
                intercept = base if base >= hi or hi <= lo else slope * hi
                bound[:, j] += np.where(paid, credit.usd_mwh * slope, 0.0)
                plan[:, j] += np.where(paid, credit.usd_mwh * slope, 0.0)
                upper += np.where(paid, credit.usd_mwh * intercept * dt_h / 1000.0, 0.0)
        dr = contract.demand_response
        if dr is None:
            continue
        exact += dr.committed_kw * dr.availability_usd_per_kw_month * dt_h / month_h
        calendar = book.events.get(s.name)
        if calendar is None or len(calendar) == 0:
            continue
        inside_h = np.zeros(steps)
        for e in range(len(calendar)):
            inside_h += np.clip(np.minimum(calendar.end_s[e], times_s + dt_s)
                                - np.maximum(calendar.due_s[e], times_s), 0.0, None) / 3600.0
        upper += dr.energy_usd_mwh * max(float(hi_kw[j] - lo_kw[j]), 0.0) * inside_h / 1000.0
        event_w[:, j] = dr.max_draw_kw * 1000.0
        event_max[:, j] = dr.shortfall_usd_mwh * inside_h / dt_h
    if np.any(event_max > 0):
        # The caps the guards apply: the decision step's own rule for when an event holds.
        of_book = np.array([index.get(s.name, -1) for s in fleet.sites])
        book_cap_w = np.full(len(book.sites), np.inf)
        book_cap_w[of_book[of_book >= 0]] = cap_w[of_book >= 0]
        for k, t in enumerate(times_s):
            caps_k, _ = book.event_caps(float(t), dt_s, book_cap_w)
            if caps_k is not None:
                event_cap[k, of_book >= 0] = caps_k[of_book[of_book >= 0]]
    return ContractPrices(bound, plan, exact, upper, event_cap, event_w, event_max)


def hindsight_oracle(
    fleet: FleetTable,
    *,
    realized_unit_price: F64,  # (steps, algorithms) USD per unit per day
    realized_gpu_price: F64,  # (steps, gpu models) USD per GPU-hour (NaN: none)
    realized_power: F64,  # (steps, sites) USD/MWh
    demand_gpus: F64,  # (steps,) GPUs the schedule may fill at each step
    dt_s: float,
    offered_usd_per_gpu_hour: float | None = None,
    max_iterations: int = 200,
    tolerance: float = 0.005,
    progress: Callable[[int], None] | None = None,
    arrived_gpus: F64 | None = None,  # (steps,) GPUs of work arriving, as if run at once
    other_demands: Sequence[F64] = (),  # (steps,) each: another schedule from the same plan
    window_gpus: F64 | None = None,  # (steps,) GPUs of the jobs that may run at each step
    contracts: ContractBook | None = None,  # the sites' power contracts, priced per step
    times_s: F64 | None = None,  # (steps,) each step's start; needed with `contracts`
) -> OracleResult:
    """A feasible hindsight schedule and an upper bound on the best one: iterates until
    their gap is at most `tolerance` (a share of the feasible value) or `max_iterations`.

    Without `arrived_gpus` the bound holds the schedule's own per-step demand; with it,
    the bound holds the running total of arrived work instead (GPU-hours served by the
    end of a step ≤ GPU-hours arrived by then), which no queue can exceed. Each of
    `other_demands` gives one more schedule (`OracleResult.alternatives`), built from the
    same relaxed plan as the best one but filling that demand. With `window_gpus` (and
    `arrived_gpus`) the bound also holds each step's fill to the GPUs of the jobs that
    may be running then (`window_demand_gpus`).

    With `contracts`, each step's energy is priced as the sites' contracts bill it and the
    bound adds the contract's lines (`contract_prices`); the schedule plans at the same
    prices and keeps every called demand-response event's cap."""
    if max_iterations < 1:
        raise ValueError(f"max_iterations: expected at least 1, got {max_iterations}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance: expected a share >= 0, got {tolerance}")
    steps = realized_power.shape[0]
    dt_h = dt_s / 3600.0
    # Node classes: identical profile, site and starting mode.
    key = np.stack([fleet.profile, fleet.site, fleet.mode.astype(np.int32)], axis=1)
    classes, first_node, class_of_node, counts = np.unique(
        key, axis=0, return_index=True, return_inverse=True, return_counts=True)
    c = classes.shape[0]
    rows = first_node
    count = counts.astype(np.float64)
    site = fleet.site[rows]
    sites = fleet.sites
    adder = np.array([s.tariff_adder_usd_mwh for s in sites])[site]
    pool_fee = np.array([s.pool_fee for s in sites])[site]
    platform_fee = np.array([s.ai_platform_fee for s in sites])[site]
    is_gpu = fleet.gpu_model[rows] != NO_GPU_MODEL
    gpus = fleet.gpus[rows]
    w_idle, w_mine, w_ai = fleet.watts_idle[rows], fleet.watts_mine[rows], fleet.watts_ai[rows]
    price = realized_power[:, site] + adder  # (T, C)
    terms: ContractPrices | None = None
    plan_price = price
    if contracts is not None:
        if times_s is None:
            raise ValueError("times_s: pricing a power contract needs each step's start")
        terms = contract_prices(contracts, fleet, np.asarray(times_s, dtype=np.float64),
                                realized_power, dt_s)
        price = terms.bound_usd_mwh[:, site] + adder
        plan_price = terms.plan_usd_mwh[:, site] + adder
    unit = realized_unit_price[:, fleet.algorithm[rows]]
    if offered_usd_per_gpu_hour is not None:
        gpu_price = np.where(is_gpu, offered_usd_per_gpu_hour, 0.0)[None, :].repeat(steps, 0)
    elif realized_gpu_price.size:
        gp = realized_gpu_price[:, np.where(is_gpu, fleet.gpu_model[rows], 0)]
        gpu_price = np.where(is_gpu[None, :] & np.isfinite(gp), gp, 0.0)
    else:
        gpu_price = np.zeros((steps, c))

    mine_usd_h = fleet.hashrate[rows] * unit / 24.0 * (1.0 - pool_fee)
    ai_usd_gpu_h = gpu_price * (1.0 - platform_fee)

    def mode_values(p: F64) -> tuple[F64, F64, F64]:
        """Values per hour at energy prices `p` (T, C): idle, mining, and the margin of a
        filled GPU-hour in AI beyond idle."""
        return (-w_idle * p / 1e6, mine_usd_h - w_mine * p / 1e6,
                ai_usd_gpu_h - (w_ai - w_idle) / np.maximum(gpus, 1) * p / 1e6)

    # Values per hour before multipliers, (T, C): the bound's, and the schedule's.
    v_idle, v_mine, ai_margin_per_gpu = mode_values(price)
    pv_idle, pv_mine, p_margin = (
        (v_idle, v_mine, ai_margin_per_gpu) if terms is None else mode_values(plan_price))
    stop = (
        np.stack(
            [
                np.zeros(c),
                fleet.profile_column("mine_stop_s")[rows],
                fleet.profile_column("ai_drain_s")[rows],
            ]
        )
        / 3600.0
    )
    start = (
        np.stack(
            [
                np.zeros(c),
                fleet.profile_column("mine_start_s")[rows],
                fleet.profile_column("ai_start_s")[rows],
            ]
        )
        / 3600.0
    )
    wear = fleet.profile_column("wear_usd_per_switch")[rows]
    caps_w = fleet.site_power_cap_w()
    capped = np.isfinite(caps_w)
    watts_mode = np.stack([w_idle, w_mine, np.where(is_gpu, w_ai, 0.0)])  # (3, C)

    caps = np.where(capped, caps_w, np.inf)
    # The schedule's cap at each step: the site's, lowered while a called event is in force.
    plan_caps = (np.repeat(caps[None, :], steps, axis=0) if terms is None
                 else np.ascontiguousarray(terms.event_cap_w))
    site_caps = np.repeat(caps[None, :], steps, axis=0)
    # Constraints measured in typical nodes (watts) and typical nodes' GPUs, so one Polyak
    # step moves both kinds of multiplier alike.
    w_ref = max(float(np.average(w_mine, weights=count)), 1.0)
    g_ref = max(float(np.max(gpus)), 1.0)
    initial = fleet.mode[rows].astype(np.int64)
    # Start from each step's own prices (no switching): the GPU-hour margin of the last
    # GPU demand can fill, and the value per watt of the last load the cap admits.
    lam, mu = _step_prices(
        count=counts.astype(np.float64), site=site.astype(np.int64), is_gpu=is_gpu,
        gpus=gpus.astype(np.float64), v_idle=np.ascontiguousarray(v_idle),
        v_mine=np.ascontiguousarray(v_mine), margin=np.ascontiguousarray(ai_margin_per_gpu),
        watts=np.ascontiguousarray(watts_mode), caps=site_caps, demand=demand_gpus,
    )
    # ν prices each event's shortfall penalty on the site's energy (USD/MWh), at most the
    # penalty itself: penalty ≥ ν × (draw − max_draw) for any such ν, so the bound needs no
    # assumption that the event's cap holds. It starts at the value per watt of the last
    # load the event's cap admits, above the site cap's.
    nu_max = np.zeros((steps, len(sites))) if terms is None else terms.event_price_max
    events_on = bool(np.any(nu_max > 0))
    nu = np.zeros((steps, len(sites)))
    if terms is not None and events_on:
        _, mu_event = _step_prices(
            count=counts.astype(np.float64), site=site.astype(np.int64), is_gpu=is_gpu,
            gpus=gpus.astype(np.float64), v_idle=np.ascontiguousarray(v_idle),
            v_mine=np.ascontiguousarray(v_mine),
            margin=np.ascontiguousarray(ai_margin_per_gpu),
            watts=np.ascontiguousarray(watts_mode), caps=plan_caps, demand=demand_gpus,
        )
        nu = np.clip((mu_event - mu) * 1e6, 0.0, nu_max)
    fixed_usd = 0.0 if terms is None else float(np.sum(terms.exact_usd))
    upper_usd = 0.0 if terms is None else float(np.sum(terms.upper_usd))
    cumulative = arrived_gpus is not None
    if arrived_gpus is not None:
        # λ_t prices "served by the end of step t ≤ arrived by then"; a GPU filled at step s
        # pays every λ_t with t ≥ s, so its price π_s is nonincreasing. Start from the
        # per-step prices, raised to the latest step's where a later one is higher.
        arrived_by = np.cumsum(arrived_gpus)
        pi0 = np.maximum.accumulate(lam[::-1])[::-1]
        lam = pi0 - np.append(pi0[1:], 0.0)
    if window_gpus is not None and arrived_gpus is None:
        raise ValueError("window_gpus: the per-step window limit needs arrived_gpus")
    # λ_w_t prices "GPUs filled at step t ≤ GPUs of the jobs that may run then".
    lam_w = np.zeros(steps)
    best_bound, best_feasible = np.inf, -np.inf
    best_modes = np.zeros((steps, 3), dtype=np.int64)
    best_class_modes = np.zeros((steps, c, 3), dtype=np.int64)
    best_plan = np.zeros((steps, c), dtype=np.int64)
    best_per_step = np.zeros(steps)
    agility, stalled = 1.0, 0
    it = 0
    for it in range(1, max_iterations + 1):
        # The price a GPU filled at each step pays for the demand it uses.
        price_ai = np.cumsum(lam[::-1])[::-1] if cumulative else lam
        if window_gpus is not None:
            price_ai = price_ai + lam_w
        b_idle, b_mine, b_margin = v_idle, v_mine, ai_margin_per_gpu
        if events_on:
            b_idle, b_mine, b_margin = mode_values(price + nu[:, site])
        margin = b_margin - price_ai[:, None]
        v_ai = np.where(is_gpu[None, :], b_idle + gpus * np.maximum(margin, 0.0), -np.inf)
        values = np.stack([b_idle, b_mine, v_ai], axis=2) * dt_h  # (T, C, 3)
        # Downtime gives up output, not the cap's price: the plan holds the mode's full
        # draw against the cap for the whole step.
        lost = _downtime_rates(values, dt_h)
        values -= mu[:, site][:, :, None] * watts_mode.T[None, :, :] * dt_h
        modes, dp_total = _dynamic_program(values, stop, start, wear, fleet.mode[rows], dt_h,
                                           lost)
        limit = arrived_by if arrived_gpus is not None else demand_gpus
        dual = float(np.sum(count * dp_total)) + float(np.sum(lam * limit)) * dt_h
        if window_gpus is not None:
            dual += float(np.sum(lam_w * window_gpus)) * dt_h
        dual += float(np.sum(mu[:, capped] * caps_w[capped][None, :])) * dt_h
        if terms is not None:
            dual += float(np.sum(nu * terms.event_w)) / 1e6 * dt_h + fixed_usd + upper_usd
        if dual < best_bound - 1e-9 * abs(best_bound if np.isfinite(best_bound) else 0.0):
            best_bound, stalled = dual, 0
        else:
            stalled += 1
        per_step = np.empty(steps)
        counts_per_mode = np.zeros((steps, 3), dtype=np.int64)
        class_modes = np.zeros((steps, c, 3), dtype=np.int64)
        feasible = _feasible_schedule(
            desired=modes, count=counts.astype(np.int64), site=site.astype(np.int64),
            is_gpu=is_gpu, gpus=gpus.astype(np.float64), v_idle=np.ascontiguousarray(pv_idle),
            v_mine=np.ascontiguousarray(pv_mine), margin=np.ascontiguousarray(p_margin),
            watts=np.ascontiguousarray(watts_mode), caps=plan_caps, demand=demand_gpus,
            stop_h=np.ascontiguousarray(stop), start_h=np.ascontiguousarray(start),
            wear=wear.astype(np.float64), initial=initial, dt_h=float(dt_h),
            per_step=per_step, counts_per_mode=counts_per_mode, class_modes=class_modes,
        )
        if terms is not None:  # the lines booked whatever the schedule
            per_step += terms.exact_usd
            feasible += fixed_usd
        if feasible > best_feasible:
            best_feasible = feasible
            best_modes, best_per_step = counts_per_mode, per_step
            best_class_modes, best_plan = class_modes, modes
        if progress is not None:
            progress(it)
        if best_bound - best_feasible <= tolerance * abs(best_feasible):
            break
        # Subgradient of the dual: slack of each relaxed constraint (negative: violated).
        in_ai = (modes == Mode.AI) & (margin > 0)
        used_gpus = np.sum(np.where(in_ai, count * gpus, 0.0), axis=1)
        w_sel = np.take_along_axis(watts_mode.T[None, :, :].repeat(steps, 0),
                                   modes[:, :, None], axis=2)[:, :, 0]
        drawn = np.zeros((steps, len(sites)))
        for s_idx in range(len(sites)):
            drawn[:, s_idx] = np.sum(np.where(site == s_idx, count * w_sel, 0.0), axis=1)
        if arrived_gpus is not None:
            g_lam = (arrived_by - np.cumsum(used_gpus)) / g_ref
        else:
            g_lam = (demand_gpus - used_gpus) / g_ref
        g_mu = np.where(capped[None, :], (np.where(capped, caps_w, 0.0) - drawn) / w_ref, 0.0)
        # Only directions that can move: a multiplier at 0 with slack stays at 0.
        g_lam = np.where((lam <= 0) & (g_lam > 0), 0.0, g_lam)
        g_w = np.zeros(steps)
        if window_gpus is not None:
            g_w = (window_gpus - used_gpus) / g_ref
            g_w = np.where((lam_w <= 0) & (g_w > 0), 0.0, g_w)
        g_mu = np.where((mu <= 0) & (g_mu > 0), 0.0, g_mu)
        g_nu = np.zeros((steps, len(sites)))
        if events_on and terms is not None:
            # The draw the relaxed plan's energy comes from: AI nodes without a filled
            # GPU draw idle power.
            w_act = np.where((modes == Mode.AI) & (margin <= 0), w_idle[None, :], w_sel)
            for s_idx in range(len(sites)):
                g_nu[:, s_idx] = (terms.event_w[:, s_idx] - np.sum(
                    np.where(site == s_idx, count * w_act, 0.0), axis=1)) / w_ref
            g_nu = np.where(nu_max > 0, g_nu, 0.0)
            g_nu = np.where(((nu <= 0) & (g_nu > 0)) | ((nu >= nu_max) & (g_nu < 0)), 0.0,
                            g_nu)
        norm = float(np.sum(g_lam**2) + np.sum(g_w**2) + np.sum(g_mu**2)
                     + np.sum(g_nu**2)) * dt_h
        if norm <= 0:
            break  # the relaxed optimum meets every constraint: nothing left to price
        if stalled >= 5:
            agility, stalled = agility / 2.0, 0
        target = best_feasible if np.isfinite(best_feasible) else 0.0
        theta = agility * max(dual - target, 1e-9 * max(abs(dual), 1.0)) / norm
        lam = np.maximum(0.0, lam - theta * g_lam / g_ref)
        lam_w = np.maximum(0.0, lam_w - theta * g_w / g_ref)
        mu = np.maximum(0.0, mu - theta * g_mu / w_ref)
        nu = np.clip(nu - theta * g_nu / w_ref * 1e6, 0.0, nu_max)
    alternatives = []
    for other in other_demands:
        alt = np.zeros((steps, c, 3), dtype=np.int64)
        _feasible_schedule(
            desired=best_plan, count=counts.astype(np.int64), site=site.astype(np.int64),
            is_gpu=is_gpu, gpus=gpus.astype(np.float64), v_idle=np.ascontiguousarray(pv_idle),
            v_mine=np.ascontiguousarray(pv_mine), margin=np.ascontiguousarray(p_margin),
            watts=np.ascontiguousarray(watts_mode), caps=plan_caps,
            demand=np.ascontiguousarray(other, dtype=np.float64),
            stop_h=np.ascontiguousarray(stop), start_h=np.ascontiguousarray(start),
            wear=wear.astype(np.float64), initial=initial, dt_h=float(dt_h),
            per_step=np.empty(steps), counts_per_mode=np.zeros((steps, 3), dtype=np.int64),
            class_modes=alt,
        )
        alternatives.append(alt)
    # The schedule's estimate is within the relaxation only when it fills the demand the
    # bound holds; against the running total of arrivals the dual alone is the bound.
    bound = best_bound if cumulative else max(best_bound, best_feasible)
    return OracleResult(
        feasible_usd=float(best_feasible), bound_usd=float(bound),
        iterations=it, modes=best_modes, net_per_step=best_per_step, tolerance=tolerance,
        max_iterations=max_iterations, class_of_node=class_of_node.astype(np.int64).ravel(),
        class_modes=best_class_modes, estimate_usd=float(best_feasible),
        bound_demand=("per step" if not cumulative else "arrivals, cumulative"
                      + ("; job windows" if window_gpus is not None else "")),
        alternatives=tuple(alternatives),
    )


def _downtime_rates(values: F64, dt_h: float) -> F64:
    """USD/h a node gives up while it switches into each mode, (T, C, 3): the mode's value
    above idle (on the simulated site a switching node draws idle power and earns
    nothing until its new workload runs), never below zero."""
    return np.maximum((values - values[:, :, :1]) / dt_h, 0.0)


def _path_switch_costs(
    modes: npt.NDArray[np.int64],  # (T, C)
    initial: npt.NDArray[np.int8],  # (C,)
    values: F64,  # (T, C, 3)
    stop_h: F64,
    start_h: F64,
    wear: F64,
    dt_h: float,
    lost: F64 | None = None,  # (T, C, 3) USD/h; default `_downtime_rates(values)`
) -> F64:
    """Switching cost paid at each step along a mode path, (T, C), as the DP charges it."""
    lost = _downtime_rates(values, dt_h) if lost is None else lost
    prev = np.vstack([initial.astype(np.int64)[None, :], modes[:-1]])
    c = np.arange(modes.shape[1])
    downtime = np.minimum(stop_h[prev, c] + start_h[modes, c], dt_h)
    rate = np.take_along_axis(lost, modes[:, :, None], axis=2)[:, :, 0]
    return np.where(prev != modes, downtime * rate + wear[None, :], 0.0)


def _dynamic_program(
    values: F64,  # (T, C, 3) USD per step
    stop_h: F64,  # (3, C)
    start_h: F64,  # (3, C)
    wear: F64,  # (C,)
    initial: npt.NDArray[np.int8],  # (C,)
    dt_h: float,
    lost: F64 | None = None,  # (T, C, 3) USD/h; default `_downtime_rates(values)`
) -> tuple[npt.NDArray[np.int64], F64]:
    """Best mode path per class with switching costs; returns modes (T, C) and totals."""
    steps, c, _ = values.shape
    modes = np.zeros((steps, c), dtype=np.int64)
    total = np.empty(c)
    lost = _downtime_rates(values, dt_h) if lost is None else lost
    _best_paths(
        np.ascontiguousarray(values, dtype=np.float64),
        np.ascontiguousarray(lost, dtype=np.float64),
        np.ascontiguousarray(stop_h, dtype=np.float64),
        np.ascontiguousarray(start_h, dtype=np.float64),
        np.ascontiguousarray(wear, dtype=np.float64),
        initial.astype(np.int64),
        float(dt_h),
        modes,
        total,
    )
    return modes, total


@compiled
def _best_paths(
    values: F64,
    lost: F64,
    stop_h: F64,
    start_h: F64,
    wear: F64,
    initial: npt.NDArray[np.int64],
    dt_h: float,
    modes: npt.NDArray[np.int64],
    total: F64,
) -> None:
    """Viterbi over (step × mode) for each class: switching a→b at a step costs the
    downtime (capped at the step) × what b earns per hour above idle (`lost`) + wear.
    Ties go to the lower mode."""
    steps, classes = values.shape[0], values.shape[1]
    choice = np.zeros((steps, 3), dtype=np.int8)
    value = np.empty(3)
    new = np.empty(3)
    for c in range(classes):
        for m in range(3):
            value[m] = 0.0 if m == initial[c] else -np.inf
        for t in range(steps):
            for b in range(3):
                rate = lost[t, c, b]
                best, arg = -np.inf, 0
                for a in range(3):
                    cost = 0.0
                    if a != b:
                        cost = min(stop_h[a, c] + start_h[b, c], dt_h) * rate + wear[c]
                    cand = value[a] - cost
                    if a == 0 or cand > best:
                        best, arg = cand, a
                new[b] = best + values[t, c, b]
                choice[t, b] = arg
            value[:] = new
        m = 0
        for b in (1, 2):
            if value[b] > value[m]:
                m = b
        total[c] = value[m]
        for t in range(steps - 1, -1, -1):
            modes[t, c] = m
            m = choice[t, m]


@compiled
def _feasible_schedule(
    desired: npt.NDArray[np.int64],  # (T, C) mode each class wants (the relaxed optimum)
    count: npt.NDArray[np.int64],  # (C,) nodes per class
    site: npt.NDArray[np.int64],  # (C,)
    is_gpu: npt.NDArray[np.bool_],
    gpus: F64,
    v_idle: F64,  # (T, C) USD/h
    v_mine: F64,  # (T, C) USD/h
    margin: F64,  # (T, C) USD per filled GPU-hour in AI beyond idle
    watts: F64,  # (3, C) full-load W per mode
    caps: F64,  # (T, S) W, inf when uncapped
    demand: F64,  # (T,) GPUs
    stop_h: F64,
    start_h: F64,
    wear: F64,
    initial: npt.NDArray[np.int64],
    dt_h: float,
    per_step: F64,
    counts_per_mode: npt.NDArray[np.int64],
    class_modes: npt.NDArray[np.int64],  # (T, C, 3) out: nodes of each class per mode
) -> float:
    """A schedule that keeps every cap and fills no more GPUs than demand, built step by
    step from the relaxed optimum, and its net USD (`per_step` gets each step's share).

    Each step starts from the modes the relaxed optimum wants; a site over its cap sheds
    nodes to idle, least value per watt first; GPUs fill up to demand, best margin first;
    AI nodes left without work fall back to the better of mining and idle where the cap
    allows, unless idle is the fallback on an uncapped site or demand returns before the
    fallback pays for the round trip (then they stay in AI). Switching is paid as the
    dynamic program charges it (downtime × the new mode's hourly value above idle +
    wear), pairing nodes that leave a mode with nodes that enter one within each class.
    """
    steps, classes = desired.shape
    n_sites = caps.shape[1]
    max_horizon = int(np.ceil(24.0 / dt_h))  # how far ahead a spare AI node looks for work
    prev = np.zeros((classes, 3), dtype=np.int64)
    for c in range(classes):
        prev[c, initial[c]] = count[c]
    now = np.zeros((classes, 3), dtype=np.int64)
    worth = np.empty((classes, 3))
    drawn = np.empty(n_sites)
    total = 0.0
    for t in range(steps):
        now[:] = 0
        for c in range(classes):
            m = desired[t, c]
            if m == 2 and not is_gpu[c]:
                m = 0
            now[c, m] = count[c]
            worth[c, 0] = v_idle[t, c]
            worth[c, 1] = v_mine[t, c]
            worth[c, 2] = v_idle[t, c] + gpus[c] * max(margin[t, c], 0.0) if is_gpu[c] else -1e300
        # The cap: shed whole nodes to idle, least value per watt first.
        drawn[:] = 0.0
        for c in range(classes):
            for m in range(3):
                drawn[site[c]] += now[c, m] * watts[m, c]
        for s in range(n_sites):
            while drawn[s] > caps[t, s] + 1e-9:
                pick_c, pick_m, pick_cost = -1, -1, np.inf
                for c in range(classes):
                    if site[c] != s:
                        continue
                    for m in (1, 2):
                        saving = watts[m, c] - watts[0, c]
                        if now[c, m] > 0 and saving > 0:
                            cost = (worth[c, m] - worth[c, 0]) / saving
                            if cost < pick_cost:
                                pick_c, pick_m, pick_cost = c, m, cost
                if pick_c < 0:
                    break  # nothing left to shed: an infeasible cap (idle draw above it)
                saving = watts[pick_m, pick_c] - watts[0, pick_c]
                k = min(now[pick_c, pick_m], int(np.ceil((drawn[s] - caps[t, s]) / saving)))
                k = max(k, 1)
                now[pick_c, pick_m] -= k
                now[pick_c, 0] += k
                drawn[s] -= k * saving
        # Room left under the cap: admit what is worth more than it costs to switch,
        # most value per watt first (the relaxed optimum may have over-priced power).
        for s in range(n_sites):
            while True:
                pick_c, pick_a, pick_b, pick_gain = -1, -1, -1, 0.0
                for c in range(classes):
                    if site[c] != s:
                        continue
                    for a in range(3):
                        if now[c, a] == 0:
                            continue
                        for b in range(3):
                            extra = watts[b, c] - watts[a, c]
                            gain = (worth[c, b] - worth[c, a]) * dt_h
                            if b == a or gain <= 0 or drawn[s] + extra > caps[t, s] + 1e-9:
                                continue
                            if prev[c, b] <= now[c, b]:
                                gain -= min(stop_h[a, c] + start_h[b, c], dt_h) * max(
                                    worth[c, b] - worth[c, 0], 0.0) + wear[c]
                            per_w = gain / max(extra, 1e-9)
                            if gain > 0 and per_w > pick_gain:
                                pick_c, pick_a, pick_b, pick_gain = c, a, b, per_w
                if pick_c < 0:
                    break
                extra = watts[pick_b, pick_c] - watts[pick_a, pick_c]
                k = now[pick_c, pick_a]
                if extra > 0:
                    k = min(k, int((caps[t, s] - drawn[s] + 1e-9) // extra))
                if pick_b == 2 or pick_a == 2:
                    k = min(k, 1)  # AI value depends on demand: one node at a time
                k = max(k, 1)
                now[pick_c, pick_a] -= k
                now[pick_c, pick_b] += k
                drawn[s] += k * extra
        # Demand: fill GPUs in AI, best margin first; whole nodes left without work fall
        # back to the better of mining and idle if the cap allows.
        left = demand[t]
        value = 0.0
        filled_nodes = np.zeros(classes, dtype=np.int64)
        done = np.zeros(classes, dtype=np.bool_)
        while True:
            best_c, best_margin = -1, 0.0
            for c in range(classes):
                if not done[c] and now[c, 2] > 0 and margin[t, c] > best_margin:
                    best_c, best_margin = c, margin[t, c]
            if best_c < 0:
                break
            done[best_c] = True
            g = min(now[best_c, 2] * gpus[best_c], max(left, 0.0))
            left -= g
            value += g * margin[t, best_c]
            filled_nodes[best_c] = int(np.ceil(g / gpus[best_c] - 1e-9)) if g > 0 else 0
        for c in range(classes):
            spare = now[c, 2] - filled_nodes[c]
            if spare <= 0:
                continue
            fallback = 1 if v_mine[t, c] > v_idle[t, c] else 0
            if fallback == 0 and caps[t, site[c]] == np.inf:
                # An AI node without work draws idle power on the simulated site: left
                # offered, it costs nothing and takes work the queue hands it.
                continue
            # A node already in AI stays there while the demand coming back within the
            # time its fallback needs to pay for the round trip would call it back.
            gain = (v_mine[t, c] - v_idle[t, c]) * dt_h if fallback == 1 else 0.0
            trip = 2.0 * wear[c] + min(stop_h[2, c] + start_h[fallback, c], dt_h) * (
                gain / dt_h) + min(stop_h[fallback, c] + start_h[2, c], dt_h) * gpus[c] * max(
                margin[t, c], 0.0)
            horizon = max_horizon if gain <= 0 else min(int(np.ceil(trip / gain)), max_horizon)
            horizon = min(horizon, steps - t - 1)
            soon = 0.0
            for u in range(t + 1, t + 1 + horizon):
                soon = max(soon, demand[u] - demand[t])
            was_ai = min(spare, max(prev[c, 2] - filled_nodes[c], 0))
            spare -= min(was_ai, int(np.ceil(soon / gpus[c] - 1e-9)))
            if spare <= 0:
                continue
            extra = watts[fallback, c] - watts[2, c]
            if extra > 0 and caps[t, site[c]] < np.inf:
                room = caps[t, site[c]] - drawn[site[c]]
                spare = min(spare, int(max(room, 0.0) // extra))
            now[c, 2] -= spare
            now[c, fallback] += spare
            drawn[site[c]] += spare * extra
        for c in range(classes):
            value += now[c, 0] * v_idle[t, c] + now[c, 1] * v_mine[t, c] + now[c, 2] * v_idle[t, c]
        value *= dt_h
        # Switching: nodes that leave a mode paired with nodes that enter one.
        for c in range(classes):
            out = np.zeros(3, dtype=np.int64)
            into = np.zeros(3, dtype=np.int64)
            for m in range(3):
                stay = min(prev[c, m], now[c, m])
                out[m] = prev[c, m] - stay
                into[m] = now[c, m] - stay
            for a in range(3):
                for b in range(3):
                    if a == b or out[a] == 0 or into[b] == 0:
                        continue
                    k = min(out[a], into[b])
                    rate = max(worth[c, b] - worth[c, 0], 0.0)
                    cost = min(stop_h[a, c] + start_h[b, c], dt_h) * rate + wear[c]
                    value -= k * cost
                    out[a] -= k
                    into[b] -= k
            for m in range(3):
                prev[c, m] = now[c, m]
                counts_per_mode[t, m] += now[c, m]
                class_modes[t, c, m] = now[c, m]
        per_step[t] = value
        total += value
    return total


@compiled
def _step_prices(
    count: F64,
    site: npt.NDArray[np.int64],
    is_gpu: npt.NDArray[np.bool_],
    gpus: F64,
    v_idle: F64,
    v_mine: F64,
    margin: F64,
    watts: F64,
    caps: F64,  # (T, S) W, inf when uncapped
    demand: F64,
) -> tuple[F64, F64]:
    """Starting multipliers, each step on its own: λ is the margin of the last GPU-hour
    demand fills (0 when every profitable GPU finds work), μ the value per watt of the last
    load a site's cap admits (0 when the cap does not bind). Later iterations correct
    them for switching."""
    steps, classes = v_idle.shape
    n_sites = caps.shape[1]
    lam = np.zeros(steps)
    mu = np.zeros((steps, n_sites))
    order = np.empty(classes, dtype=np.intp)
    dens = np.empty(classes)
    for t in range(steps):
        # λ: GPUs by margin, best first, until demand is filled.
        for c in range(classes):
            dens[c] = -margin[t, c] if is_gpu[c] else np.inf
        order[:] = np.argsort(dens)
        left = demand[t]
        for g in order:
            if not is_gpu[g] or margin[t, g] <= 0:
                break
            left -= count[g] * gpus[g]
            if left < 0:
                lam[t] = margin[t, g]
                break
        for s in range(n_sites):
            if not np.isfinite(caps[t, s]):
                continue
            room = caps[t, s]
            for c in range(classes):
                if site[c] == s:
                    room -= count[c] * watts[0, c]
            # Each class's best load above idle, priced at λ, by value per watt.
            gain_w = np.zeros(classes)
            for c in range(classes):
                dens[c] = np.inf
                if site[c] != s:
                    continue
                best_gain, best_w = v_mine[t, c] - v_idle[t, c], watts[1, c] - watts[0, c]
                if is_gpu[c]:
                    ai = gpus[c] * max(margin[t, c] - lam[t], 0.0)
                    if ai / max(watts[2, c] - watts[0, c], 1e-9) > best_gain / max(best_w, 1e-9):
                        best_gain, best_w = ai, watts[2, c] - watts[0, c]
                if best_gain > 0 and best_w > 0:
                    dens[c] = -best_gain / best_w
                    gain_w[c] = best_w
            order[:] = np.argsort(dens)
            for k in order:
                if not np.isfinite(dens[k]):
                    break
                room -= count[k] * gain_w[k]
                if room < 0:
                    mu[t, s] = -dens[k]
                    break
    return lam, mu
