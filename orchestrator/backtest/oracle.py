"""The hindsight oracle: the best net profit achievable on the same data, or a proven
upper bound on it.

Per node, choosing a mode for every step with switching costs is a small dynamic
program over (step × 3 modes). Nodes couple only through the site power cap and the AI
demand they share. Both couplings are relaxed with Lagrange multipliers (λ per step on
GPU demand, μ per step and site on the power cap): for any λ, μ ≥ 0 the sum of the
per-node optima plus Σ λ·demand + Σ μ·cap is an upper bound on the coupled optimum (weak
duality), and a few projected subgradient steps tighten it. When the relaxed solution
already respects demand and cap, it is feasible and the bound is exact.

Identical nodes (same profile, site and starting mode) share one dynamic program, so
the cost is O(steps × classes), independent of the fleet size. The oracle ignores min
dwell and switch budgets (a relaxation: it can only raise the bound), and assumes AI
jobs are served on arrival.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.jobs import JobStream
from orchestrator.framework.jit import compiled
from orchestrator.models.fleet import NO_GPU_MODEL, FleetTable
from orchestrator.models.modes import Mode

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OracleResult:
    net_usd: float
    exact: bool
    iterations: int
    #: Nodes per mode at each step in the relaxed optimum (steps × 3).
    modes: npt.NDArray[np.int64]
    #: The bound's contribution per step (sums to `net_usd`), for plotting against policies.
    net_per_step: F64

    @property
    def kind(self) -> str:
        return "exact" if self.exact else "upper bound (Lagrangian dual)"


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


def hindsight_oracle(
    fleet: FleetTable,
    *,
    realized_unit_price: F64,  # (steps, algorithms) USD per unit per day
    realized_gpu_price: F64,  # (steps, gpu models) USD per GPU-hour (NaN: none)
    realized_power: F64,  # (steps, sites) USD/MWh
    demand_gpus: F64,  # (steps,)
    dt_s: float,
    offered_usd_per_gpu_hour: float | None = None,
    iterations: int = 25,
    progress: Callable[[int], None] | None = None,
) -> OracleResult:
    """Upper bound (exact when the couplings do not bind) on the best net profit."""
    steps = realized_power.shape[0]
    dt_h = dt_s / 3600.0
    # Node classes: identical profile, site and starting mode.
    key = np.stack([fleet.profile, fleet.site, fleet.mode.astype(np.int32)], axis=1)
    classes, first_node, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
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
    unit = realized_unit_price[:, fleet.algorithm[rows]]
    if offered_usd_per_gpu_hour is not None:
        gpu_price = np.where(is_gpu, offered_usd_per_gpu_hour, 0.0)[None, :].repeat(steps, 0)
    elif realized_gpu_price.size:
        gp = realized_gpu_price[:, np.where(is_gpu, fleet.gpu_model[rows], 0)]
        gpu_price = np.where(is_gpu[None, :] & np.isfinite(gp), gp, 0.0)
    else:
        gpu_price = np.zeros((steps, c))

    # Values per hour before multipliers, (T, C).
    v_idle = -w_idle * price / 1e6
    v_mine = fleet.hashrate[rows] * unit / 24.0 * (1.0 - pool_fee) - w_mine * price / 1e6
    ai_margin_per_gpu = (
        gpu_price * (1.0 - platform_fee) - (w_ai - w_idle) / np.maximum(gpus, 1) * price / 1e6
    )
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

    total_gpus = float(np.sum(count * gpus))
    lam = np.zeros(steps)
    mu = np.zeros((steps, len(sites)))
    best_bound = np.inf
    best: tuple[npt.NDArray[np.int64], F64] | None = None
    exact = False
    it = 0
    for it in range(1, iterations + 1):
        margin = ai_margin_per_gpu - lam[:, None]
        fill = margin > 0
        v_ai = np.where(is_gpu[None, :], v_idle + gpus * np.maximum(margin, 0.0), -np.inf)
        values = np.stack([v_idle, v_mine, v_ai], axis=2) * dt_h  # (T, C, 3)
        mu_c = mu[:, site]  # (T, C)
        values -= mu_c[:, :, None] * watts_mode.T[None, :, :] * dt_h
        modes, dp_total = _dynamic_program(values, stop, start, wear, fleet.mode[rows], dt_h)
        dual = float(np.sum(count * dp_total)) + float(np.sum(lam * demand_gpus)) * dt_h
        dual += float(np.sum(mu[:, capped] * caps_w[capped][None, :])) * dt_h
        in_ai = modes == Mode.AI  # (T, C)
        used_gpus = np.sum(np.where(in_ai & fill, count * gpus, 0.0), axis=1)
        drawn = np.zeros((steps, len(sites)))
        w_sel = np.take_along_axis(
            watts_mode.T[None, :, :].repeat(steps, 0), modes[:, :, None], axis=2
        )[:, :, 0]
        for s_idx in range(len(sites)):
            drawn[:, s_idx] = np.sum(np.where(site == s_idx, count * w_sel, 0.0), axis=1)
        if dual < best_bound:
            best_bound = dual
            counts_per_mode = np.stack(
                [np.sum(np.where(modes == m, count, 0.0), axis=1) for m in Mode], axis=1
            ).astype(np.int64)
            # The bound, step by step: the path's (multiplier-adjusted) values less its
            # switching costs, plus each step's λ·demand and μ·cap. Sums to `dual`.
            chosen = np.take_along_axis(values, modes[:, :, None], axis=2)[:, :, 0]
            switch = _path_switch_costs(modes, fleet.mode[rows], values, stop, start, wear,
                                        dt_h)
            per_step = np.sum(count * (chosen - switch), axis=1) + lam * demand_gpus * dt_h
            per_step += np.sum(mu[:, capped] * caps_w[capped][None, :], axis=1) * dt_h
            best = (counts_per_mode, per_step)
        over_demand = used_gpus - demand_gpus
        over_cap = np.where(capped[None, :], drawn - np.where(capped, caps_w, 0.0)[None, :], 0.0)
        feasible = np.all(over_demand <= 1e-6) and np.all(over_cap <= 1e-6)
        if progress is not None:
            progress(it)
        if (
            feasible
            and not np.any((lam > 0) & (over_demand < -1e-6))
            and not np.any((mu > 0) & (over_cap < -1e-6))
        ):
            exact = True  # complementary slackness holds: the relaxed optimum is optimal
            break
        # Projected subgradient step, scaled so early steps move by a fraction of prices.
        step = 1.0 / np.sqrt(it)
        price_scale = float(np.nanmax(np.abs(ai_margin_per_gpu))) if ai_margin_per_gpu.size else 1.0
        lam = np.maximum(
            0.0,
            lam
            + step
            * price_scale
            * np.sign(over_demand)
            * (np.abs(over_demand) / max(total_gpus, 1.0)) ** 0.5,
        )
        if capped.any():
            w_scale = float(np.max(np.abs(v_mine))) / max(float(np.max(w_mine)), 1.0)
            mu = np.maximum(
                0.0,
                mu
                + step
                * w_scale
                * np.sign(over_cap)
                * (np.abs(over_cap) / np.where(capped, caps_w, 1.0)[None, :]) ** 0.5,
            )
    assert best is not None
    return OracleResult(best_bound, exact, it, best[0], best[1])


def _path_switch_costs(
    modes: npt.NDArray[np.int64],  # (T, C)
    initial: npt.NDArray[np.int8],  # (C,)
    values: F64,  # (T, C, 3)
    stop_h: F64,
    start_h: F64,
    wear: F64,
    dt_h: float,
) -> F64:
    """Switching cost paid at each step along a mode path, (T, C), as the DP charges it."""
    prev = np.vstack([initial.astype(np.int64)[None, :], modes[:-1]])
    c = np.arange(modes.shape[1])
    downtime = np.minimum(stop_h[prev, c] + start_h[modes, c], dt_h)
    rate = np.maximum(np.take_along_axis(values, modes[:, :, None], axis=2)[:, :, 0] / dt_h, 0.0)
    return np.where(prev != modes, downtime * rate + wear[None, :], 0.0)


def _dynamic_program(
    values: F64,  # (T, C, 3) USD per step
    stop_h: F64,  # (3, C)
    start_h: F64,  # (3, C)
    wear: F64,  # (C,)
    initial: npt.NDArray[np.int8],  # (C,)
    dt_h: float,
) -> tuple[npt.NDArray[np.int64], F64]:
    """Best mode path per class with switching costs; returns modes (T, C) and totals."""
    steps, c, _ = values.shape
    modes = np.zeros((steps, c), dtype=np.int64)
    total = np.empty(c)
    _best_paths(
        np.ascontiguousarray(values, dtype=np.float64),
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
    stop_h: F64,
    start_h: F64,
    wear: F64,
    initial: npt.NDArray[np.int64],
    dt_h: float,
    modes: npt.NDArray[np.int64],
    total: F64,
) -> None:
    """Viterbi over (step × mode) for each class: switching a→b at a step costs the
    downtime (capped at the step) × the hourly value of b (if positive) + wear. Ties go to
    the lower mode."""
    steps, classes = values.shape[0], values.shape[1]
    choice = np.zeros((steps, 3), dtype=np.int8)
    value = np.empty(3)
    new = np.empty(3)
    for c in range(classes):
        for m in range(3):
            value[m] = 0.0 if m == initial[c] else -np.inf
        for t in range(steps):
            for b in range(3):
                rate = max(values[t, c, b] / dt_h, 0.0)
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
