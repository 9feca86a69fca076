"""From simulated days to cash flows, NPV, IRR, payback, risk and a recommended size.

Cash flows are monthly. Month 0 pays the conversion (works, tier, GPUs) and receives the
resale of the ASICs that make room. During the build the site earns what its existing
nodes earned in the run (a flat daily average); after it, the run's days repeat in order
until the horizon (recorded scenarios) or are drawn in blocks (bootstrap). The horizon
adds the GPUs' depreciated value and any residual the plan grants ASICs and works.
Taxes and financing structure are left out: the discount rate carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.planning.config import Plan
from orchestrator.planning.evaluate import CellResult, site_mw
from orchestrator.planning.finance import annual_rate, irr, npv, payback_periods, periodic_rate

F64 = npt.NDArray[np.float64]
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True, slots=True)
class Flows:
    """Monthly cash flows of one size in one scenario (index 0 = now)."""

    total: F64
    ai_revenue: F64  # the part of `total` that is AI revenue (after availability)
    mine_revenue: F64
    capex: float
    terminal: float  # what the horizon gives back (in `total`'s last month)

    @property
    def operating(self) -> F64:
        """`total` without the horizon's residual values: what payback counts."""
        out = self.total.copy()
        out[-1] -= self.terminal
        return out


def horizon_months(plan: Plan) -> int:
    return round(plan.file.financing.horizon_years * 12)


def capex_usd(plan: Plan, size_mw: float, gpus: int) -> float:
    c = plan.file.conversion
    return size_mw * (c.capex_per_mw_usd + c.tier_capex_per_mw_usd) + gpus * c.capex_per_gpu_usd


def _days_to_months(daily: F64, months: int) -> F64:
    days = int(np.ceil(months * DAYS_PER_MONTH))
    edges = np.floor(np.arange(months + 1) * DAYS_PER_MONTH).astype(np.int64)
    cum = np.concatenate([[0.0], np.cumsum(daily[:days])])
    return np.asarray(cum[edges[1:]] - cum[edges[:-1]], dtype=np.float64)


def _tile(daily: F64, days: int) -> F64:
    reps = int(np.ceil(days / daily.shape[0]))
    return np.tile(daily, reps)[:days]


def bootstrap_days(
    n_days: int, days: int, block: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Day indices made of blocks of `block` consecutive recorded days, drawn with replacement."""
    block = min(block, n_days)
    starts = rng.integers(0, n_days - block + 1, size=int(np.ceil(days / block)))
    return (starts[:, None] + np.arange(block)[None, :]).ravel()[:days]


def flows(plan: Plan, cell: CellResult, day_index: npt.NDArray[np.int64] | None = None) -> Flows:
    """Monthly cash flows of `cell` over the plan's horizon."""
    conv, fin = plan.file.conversion, plan.file.financing
    months = horizon_months(plan)
    days = int(np.ceil(months * DAYS_PER_MONTH)) + 1
    ai = cell.ai_revenue * conv.availability
    net = cell.mine_revenue + ai - cell.power_cost - cell.switching_cost
    pick = (lambda x: _tile(x, days)) if day_index is None else (lambda x: x[day_index[:days]])
    op_net, op_ai, op_mine = (
        _days_to_months(pick(x), months) for x in (net, ai, cell.mine_revenue)
    )
    built = (
        np.clip(np.arange(1, months + 1) - conv.build_months, 0.0, 1.0)
        if cell.size_mw
        else np.ones(months)
    )
    building = 1.0 - built
    opex = cell.size_mw * conv.tier_opex_per_mw_year_usd / 12.0
    monthly = built * (op_net - opex) + building * cell.existing_net_per_day * DAYS_PER_MONTH
    capex = capex_usd(plan, cell.size_mw, cell.new_gpus)
    total = np.zeros(months + 1)
    total[0] = -capex + cell.removed_th * fin.asic_resale_usd_per_th
    total[1:] = monthly
    years_in_service = max(fin.horizon_years - conv.build_months / 12.0, 0.0)
    gpu_left = max(0.0, 1.0 - years_in_service / fin.gpu_life_years)
    terminal = (
        cell.new_gpus * conv.capex_per_gpu_usd * gpu_left
        + cell.kept_th * fin.asic_resale_usd_per_th * fin.asic_residual_share
        + cell.size_mw
        * (conv.capex_per_mw_usd + conv.tier_capex_per_mw_usd)
        * fin.facility_residual_share
    )
    total[-1] += terminal
    zero = np.zeros(1)
    # While the conversion is built the kept ASICs still mine: that money moves with
    # hashprice too, so the break-even hashprice needs it in the mining line.
    build_mine = building * cell.existing_mine_per_day * DAYS_PER_MONTH
    return Flows(
        total,
        np.concatenate([zero, built * op_ai]),
        np.concatenate([zero, built * op_mine + build_mine]),
        capex,
        terminal,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One size in one scenario."""

    size_mw: float
    scenario: str
    npv_usd: float
    delta_npv_usd: float  # against keeping the hall as it is (size 0), same scenario
    irr: float | None  # of the conversion's own flows (against size 0), per year
    payback_years: float | None
    revenue_usd_per_year: float
    capex_usd: float
    pv_ai_revenue_usd: float
    pv_mine_revenue_usd: float
    mean_gpu_rent: float
    mean_hashprice: float


def outcomes(plan: Plan, cells: Sequence[CellResult]) -> list[Outcome]:
    rate = periodic_rate(plan.file.financing.discount_rate, 12)
    availability = plan.file.conversion.availability  # as the cash flows count AI revenue
    base = {c.scenario: flows(plan, c) for c in cells if c.size_mw == 0}
    out = []
    for c in cells:
        f = flows(plan, c)
        b = base.get(c.scenario)
        if b is None:
            raise ValueError("every scenario needs the size 0 run to compare against")
        delta = f.total - b.total
        r = irr(delta) if c.size_mw else None
        # Payback counts cash earned, not what the hardware would sell for at the end.
        pb = payback_periods(f.operating - b.operating) if c.size_mw else None
        days = c.mine_revenue.shape[0]
        out.append(
            Outcome(
                size_mw=c.size_mw,
                scenario=c.scenario,
                npv_usd=npv(rate, f.total),
                delta_npv_usd=npv(rate, delta),
                irr=None if r is None else annual_rate(r, 12),
                payback_years=None if pb is None else pb / 12.0,
                revenue_usd_per_year=float(
                    (c.mine_revenue.sum() + c.ai_revenue.sum() * availability) * 365.25 / days
                ),
                capex_usd=f.capex,
                pv_ai_revenue_usd=npv(rate, f.ai_revenue - b.ai_revenue),
                pv_mine_revenue_usd=npv(rate, f.mine_revenue - b.mine_revenue),
                mean_gpu_rent=c.mean_gpu_rent,
                mean_hashprice=c.mean_hashprice,
            )
        )
    return out


def bootstrap_npv(plan: Plan, cells: Sequence[CellResult], scenario: str,
                  progress: Callable[[int, int], None] | None = None) -> dict[float, F64]:
    """NPV per size over block-bootstrapped histories of `scenario`'s recorded days
    (`progress(done, total)` after each history).

    Every size sees the same drawn histories, so the spread compares sizes fairly.
    """
    bs = plan.file.scenarios.bootstrap
    rate = periodic_rate(plan.file.financing.discount_rate, 12)
    mine = [c for c in cells if c.scenario == scenario]
    if bs.draws == 0 or not mine:
        return {}
    rng = np.random.default_rng(bs.seed)
    n_days = mine[0].mine_revenue.shape[0]
    days = int(np.ceil(horizon_months(plan) * DAYS_PER_MONTH)) + 1
    draws = [bootstrap_days(n_days, days, bs.block_days, rng) for _ in range(bs.draws)]
    out = {c.size_mw: np.empty(len(draws)) for c in mine}
    for k, d in enumerate(draws):
        for c in mine:
            out[c.size_mw][k] = npv(rate, flows(plan, c, d).total)
        if progress is not None:
            progress(k + 1, len(draws))
    return out


@dataclass(frozen=True, slots=True)
class SizeSummary:
    size_mw: float
    npv_mean: float
    npv_min: float
    npv_max: float
    npv_std: float
    delta_npv_mean: float
    irr_median: float | None
    payback_years_median: float | None
    revenue_usd_per_year: float
    value_per_mw: float  # mean NPV / site MW
    positive_share: float  # scenarios where converting beats keeping the hall as it is
    bootstrap_p10: float | None
    bootstrap_p50: float | None
    bootstrap_p90: float | None
    breakeven_gpu_rent: float | None  # USD/GPU-hour at which delta NPV is zero (base scenario)
    breakeven_hashprice: float | None  # USD/PH/day at which delta NPV is zero (base scenario)
    converted_mw_value: float | None  # PV per converted MW before its capex (base scenario)
    capex_usd: float


def _median(xs: list[float]) -> float | None:
    return float(np.median(xs)) if xs else None


def summarize(
    plan: Plan, results: Sequence[Outcome], boot: dict[float, F64], base_scenario: str
) -> list[SizeSummary]:
    sizes = sorted({o.size_mw for o in results})
    mw = site_mw(plan)
    out = []
    for s in sizes:
        mine = [o for o in results if o.size_mw == s]
        npvs = np.array([o.npv_usd for o in mine])
        base = next(o for o in mine if o.scenario == base_scenario)
        zero = next(o for o in results if o.size_mw == 0 and o.scenario == base_scenario)
        b = boot.get(s)
        # First order: the decisions stay as simulated while one price scales, so the
        # conversion's NPV moves by (factor - 1) × the PV of that revenue line.
        rent = hp = None
        if s and base.pv_ai_revenue_usd > 0 and np.isfinite(base.mean_gpu_rent):
            rent = (1 - base.delta_npv_usd / base.pv_ai_revenue_usd) * base.mean_gpu_rent
        if s and base.pv_mine_revenue_usd < 0:
            hp = (1 - base.delta_npv_usd / base.pv_mine_revenue_usd) * base.mean_hashprice
        capex_net = base.capex_usd
        out.append(
            SizeSummary(
                size_mw=s,
                npv_mean=float(npvs.mean()),
                npv_min=float(npvs.min()),
                npv_max=float(npvs.max()),
                npv_std=float(npvs.std()),
                delta_npv_mean=float(np.mean([o.delta_npv_usd for o in mine])),
                irr_median=_median([o.irr for o in mine if o.irr is not None]),
                payback_years_median=_median(
                    [o.payback_years for o in mine if o.payback_years is not None]
                ),
                revenue_usd_per_year=float(np.mean([o.revenue_usd_per_year for o in mine])),
                value_per_mw=float(npvs.mean()) / mw,
                positive_share=float(np.mean([o.delta_npv_usd > 0 for o in mine])) if s else 0.0,
                bootstrap_p10=None if b is None else float(np.percentile(b, 10)),
                bootstrap_p50=None if b is None else float(np.percentile(b, 50)),
                bootstrap_p90=None if b is None else float(np.percentile(b, 90)),
                breakeven_gpu_rent=rent,
                breakeven_hashprice=hp,
                converted_mw_value=(base.delta_npv_usd + capex_net) / s + zero.npv_usd / mw
                if s
                else None,
                capex_usd=capex_net,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Recommendation:
    size_mw: float
    why: str


def recommend(plan: Plan, sizes: Sequence[SizeSummary], n_scenarios: int) -> Recommendation:
    """The size with the best mean (or worst-case) NPV; the smaller size on a tie."""
    worst = plan.file.objective == "worst"

    def key(s: SizeSummary) -> float:
        return s.npv_min if worst else s.npv_mean

    best = max(sizes, key=lambda s: (round(key(s), 2), -s.size_mw))
    zero = next(s for s in sizes if s.size_mw == 0)
    measure = "mean" if plan.file.objective == "mean" else "worst-case"
    if best.size_mw == 0:
        return Recommendation(
            0.0,
            (
                f"keep the hall mining: no conversion size beats its {measure} NPV over "
                f"{n_scenarios} scenarios (${key(zero) / 1e6:,.1f}M); the best conversion "
                f"loses ${(key(zero) - max(key(s) for s in sizes if s.size_mw)) / 1e6:,.1f}M"
                if len(sizes) > 1
                else "only size 0 was evaluated"
            ),
        )
    others = sorted((s for s in sizes if s is not best), key=key, reverse=True)
    runner = others[0] if others else None
    text = (
        f"convert {best.size_mw:g} MW: the highest {measure} NPV over {n_scenarios} "
        f"scenarios (${key(best) / 1e6:,.1f}M vs ${key(zero) / 1e6:,.1f}M keeping the hall "
        f"mining); it beats mining in {best.positive_share:.0%} of scenarios"
    )
    if best.bootstrap_p10 is not None:
        text += f"; bootstrap P10 ${best.bootstrap_p10 / 1e6:,.1f}M"
    if runner is not None:
        text += f"; next best {runner.size_mw:g} MW at ${key(runner) / 1e6:,.1f}M"
    return Recommendation(best.size_mw, text)
