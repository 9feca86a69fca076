"""Evaluate conversion sizes × market scenarios by running the site hour by hour.

Each cell (one size, one scenario) builds the converted site's config, loads it through
the backtest (`prepare_backtest`) and runs the plan's policy with `run_policy`: the same
decision step, guards and simulator as `hashpivot backtest`. Cells are plain data, so the
runtime can ship them to Ray tasks; `run_cells_sequentially` runs them in this process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.recorded import PriceTable
from orchestrator.backtest.runner import BacktestInputs, PolicySpec, prepare_backtest, run_policy
from orchestrator.economics import hashprice_usd_per_ph_day
from orchestrator.errors import ConfigError, HashpivotError, PolicyError
from orchestrator.framework.registry import load_policy, resolve_policy_class
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import FleetGroup, HashpivotConfig
from orchestrator.models.site import Site
from orchestrator.planning.config import Plan, Stress

F64 = npt.NDArray[np.float64]
CellProgress = Callable[[int, int], None]
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    kind: str  # "recorded" or "stressed"
    start: datetime
    end: datetime
    hashprice: float = 1.0
    gpu_rent: float = 1.0
    power: float = 1.0
    load_factor: float | None = None

    def assumptions(self, base_load_factor: float | None) -> str:
        when = f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"
        parts = [f"recorded markets and demand trace {when}, repeated over the horizon"]
        for label, f in (
            ("hashprice", self.hashprice),
            ("GPU rent", self.gpu_rent),
            ("power price", self.power),
        ):
            if f != 1.0:
                parts.append(f"{label} × {f:g} ({(f - 1) * 100:+.0f}%)")
        if self.load_factor is not None:
            parts.append(
                f"AI demand load factor {self.load_factor:g}"
                + (
                    f" (recorded config: {base_load_factor:g})"
                    if base_load_factor is not None
                    else ""
                )
            )
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Cell:
    size_mw: float
    scenario: Scenario


@dataclass(frozen=True, slots=True)
class CellResult:
    """What one run of the site leaves for the financial model: money per day."""

    size_mw: float
    scenario: str
    mine_revenue: F64  # USD per day of the window
    ai_revenue: F64
    power_cost: F64
    switching_cost: F64
    existing_net_per_day: float  # the nodes that were there before, USD/day (build period)
    existing_mine_per_day: float  # of which ASIC mining revenue (build period)
    new_gpus: int
    removed_asics: int
    removed_th: float
    kept_th: float
    mean_gpu_rent: float  # USD/GPU-hour of the new GPUs' model, as run
    mean_hashprice: float  # USD/PH/day, as run
    totals: dict[str, float]

    @property
    def net(self) -> F64:
        return self.mine_revenue + self.ai_revenue - self.power_cost - self.switching_cost


def scenarios(plan: Plan) -> list[Scenario]:
    """Recorded windows, then the stressed variants (each on its window)."""
    sc = plan.file.scenarios
    span = timedelta(days=sc.window_days)
    out = [Scenario(f"recorded from {s:%Y-%m-%d}", "recorded", s, s + span) for s in sc.starts]
    for i, st in enumerate(sc.stresses):
        start = _utc(st.start) if st.start is not None else sc.starts[0]
        out.append(_stressed(st, start, start + span))
        if st.name in {s.name for s in out[:-1]}:
            raise ConfigError(
                f"scenario name {st.name!r} is used twice",
                source=plan.source,
                field=f"scenarios.stresses[{i}].name",
            )
    return out


def _utc(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _stressed(st: Stress, start: datetime, end: datetime) -> Scenario:
    return Scenario(
        st.name, "stressed", start, end, st.hashprice, st.gpu_rent, st.power, st.load_factor
    )


def site_mw(plan: Plan) -> float:
    site = _target_site(plan)
    assert site.power_cap_kw is not None  # checked by load_plan
    return site.power_cap_kw / 1000.0


def _target_site(plan: Plan) -> Site:
    name = plan.file.site_name or plan.site.sites[0].name
    return next(s for s in plan.site.sites if s.name == name)


def sizes_mw(plan: Plan) -> list[float]:
    sizes = plan.file.sizes
    if sizes.mw is not None:
        return sorted(set(sizes.mw))
    assert sizes.step_mw is not None
    top = site_mw(plan)
    n = int(np.floor(top / sizes.step_mw + 1e-9))
    out = [round(k * sizes.step_mw, 9) for k in range(n + 1)]
    if top - out[-1] > 1e-9:
        out.append(top)
    return out


def sized_config(
    plan: Plan, size_mw: float, scenario: Scenario
) -> tuple[HashpivotConfig, dict[str, float]]:
    """The site with `size_mw` of ASIC load replaced by GPU nodes, over the scenario window.

    The least efficient ASICs (most J/TH) make room first: they are the ones an operator
    sells. The GPU nodes start in AI mode; the policy may still move them.
    """
    cfg = plan.site
    conv = plan.file.conversion
    catalog = profile_catalog(cfg)
    site_name = plan.file.site_name or cfg.sites[0].name
    groups = [g.model_copy() for g in cfg.fleet]
    asic_idx = [
        i
        for i, g in enumerate(groups)
        if g.site == site_name
        and catalog[g.profile].gpus == 0
        and catalog[g.profile].mine_hashrate > 0
    ]
    asic_idx.sort(
        key=lambda i: (
            -catalog[groups[i].profile].watts_mine / catalog[groups[i].profile].mine_hashrate
        )
    )
    room_w = size_mw * 1e6
    removed, removed_th = 0, 0.0
    for i in asic_idx:
        p = catalog[groups[i].profile]
        # Never below 0: after a rounded-up group the room left is negative.
        k = max(0, min(groups[i].count, int(np.floor(room_w / p.watts_mine + 0.5))))
        groups[i] = groups[i].model_copy(update={"count": groups[i].count - k})
        room_w -= k * p.watts_mine
        removed += k
        removed_th += k * p.mine_hashrate
    kept_th = sum(
        g.count * catalog[g.profile].mine_hashrate for i, g in enumerate(groups) if i in asic_idx
    )
    profile = catalog[conv.gpu_profile]
    new_nodes = round(size_mw * conv.gpus_per_mw / profile.gpus)
    groups = [g for g in groups if g.count > 0]
    if new_nodes:
        groups.append(
            FleetGroup(
                profile=conv.gpu_profile,
                count=new_nodes,
                site=site_name,
                mode="ai",
                name_prefix=f"{site_name}-converted",
            )
        )
    update: dict[str, object] = {
        "fleet": groups,
        "backtest": cfg.backtest.model_copy(
            update={"start": scenario.start, "end": scenario.end, "baselines": False}
        ),
    }
    if scenario.load_factor is not None and cfg.demand is not None:
        update["demand"] = cfg.demand.model_copy(update={"load_factor": scenario.load_factor})
    if plan.file.policy is not None:
        update["policy"] = cfg.policy.model_copy(
            update={"name": plan.file.policy, "params": plan.file.policy_params or {}}
        )
    sized = cfg.model_copy(update=update)
    facts = {
        "new_nodes": float(new_nodes),
        "new_gpus": float(new_nodes * profile.gpus),
        "removed_asics": float(removed),
        "removed_th": removed_th,
        "kept_th": kept_th,
    }
    return sized, facts


def check_policy(plan: Plan) -> None:
    """Load the plan's policy once, and check every scenario's window against the recorded
    data, so bad names, parameters or windows fail before any run."""
    cfg = plan.site
    name = plan.file.policy or cfg.policy.name
    params = plan.file.policy_params if plan.file.policy is not None else cfg.policy.params
    field = "policy_params" if plan.file.policy is not None else "policy"
    try:
        load_policy(name, params, source=f"{plan.source}: {field}")
    except PolicyError as exc:
        if str(exc).startswith(plan.source):
            raise
        raise ConfigError(str(exc), source=plan.source, field="policy") from None
    for i, sc in enumerate(scenarios(plan)):
        sized, _ = sized_config(plan, 0.0, sc)
        try:
            prepare_backtest(sized.model_copy(update={"demand": None}))
        except HashpivotError as exc:  # bad config or data: name the scenario that needs it
            field = "scenarios.starts" if sc.kind == "recorded" else "scenarios.stresses"
            raise ConfigError(
                f"scenario {sc.name!r} ({i + 1}): {exc}", source=plan.source, field=field
            ) from None


def _stress(inputs: BacktestInputs, sc: Scenario) -> BacktestInputs:
    """Scale the recorded prices the way the scenario says, for decisions and settlement."""
    if sc.hashprice == 1.0 and sc.gpu_rent == 1.0 and sc.power == 1.0:
        return inputs

    def scale(table: PriceTable) -> PriceTable:
        unit = np.array(table.usd_per_unit_day, dtype=np.float64)
        unit[:, 0] *= sc.hashprice  # column 0 is SHA-256 (FleetTable lists it first)
        return dataclasses.replace(
            table,
            usd_per_unit_day=unit,
            # difficulty moves inversely so hashprice read from BTC and difficulty agrees
            difficulty=table.difficulty / sc.hashprice,
            gpu_usd_per_gpu_hour=table.gpu_usd_per_gpu_hour * sc.gpu_rent,
            power_usd_mwh=table.power_usd_mwh * sc.power,
        )

    history = inputs.history
    if history is not None:
        # A forecasting policy's view of the past is the same stressed market.
        history = history.scaled(sc.hashprice, sc.power)
    jobs = inputs.jobs
    if jobs.offered_usd_per_gpu_hour is not None:
        jobs = dataclasses.replace(
            jobs, offered_usd_per_gpu_hour=jobs.offered_usd_per_gpu_hour * sc.gpu_rent
        )
    return dataclasses.replace(
        inputs,
        known=scale(inputs.known),
        realized=scale(inputs.realized),
        jobs=jobs,
        history=history,
    )


def _daily(values: F64, times: F64, start_s: float, days: int) -> F64:
    idx = np.minimum(((times - start_s) // DAY_S).astype(np.int64), days - 1)
    return np.bincount(idx, weights=values, minlength=days).astype(np.float64)


def run_cell(plan: Plan, cell: Cell, progress: Callable[[int], None] | None = None) -> CellResult:
    """Run the converted site over one scenario with the plan's policy."""
    cfg, facts = sized_config(plan, cell.size_mw, cell.scenario)
    name = cfg.policy.name
    needs_history = resolve_policy_class(name).uses_history or cfg.scoring.nowcasts_power
    inputs = _stress(prepare_backtest(cfg, needs_history=needs_history), cell.scenario)
    spec = PolicySpec(
        f"{cell.size_mw:g} MW / {cell.scenario.name}", name, cfg.policy.params, cfg.guards
    )
    ledger = run_policy(inputs, spec, progress).ledger
    days = max(int(np.ceil((inputs.end_s - inputs.start_s) / DAY_S)), 1)
    t = inputs.times
    node_net = ledger.node_revenue - ledger.node_power - ledger.node_switching
    new = int(facts["new_nodes"])
    old = node_net.shape[0] - new
    existing = float(node_net[:old].sum())
    fleet = inputs.fleet
    # An ASIC earns only by mining; the revenue of GPU nodes already there is not split
    # between AI and GPU hashpower per node, so it stays out of the mining line.
    existing_mine = float(ledger.node_revenue[:old][fleet.gpus[:old] == 0].sum())
    rent, hashprice = _means(inputs, plan)
    return CellResult(
        size_mw=cell.size_mw,
        scenario=cell.scenario.name,
        mine_revenue=_daily(ledger.mine_revenue, t, inputs.start_s, days),
        ai_revenue=_daily(ledger.ai_revenue, t, inputs.start_s, days),
        power_cost=_daily(ledger.power_cost, t, inputs.start_s, days),
        switching_cost=_daily(ledger.switching_cost, t, inputs.start_s, days),
        existing_net_per_day=existing / days,
        existing_mine_per_day=existing_mine / days,
        new_gpus=int(facts["new_gpus"]),
        removed_asics=int(facts["removed_asics"]),
        removed_th=facts["removed_th"],
        kept_th=facts["kept_th"],
        mean_gpu_rent=rent,
        mean_hashprice=hashprice,
        totals={**ledger.totals(), "nodes": float(fleet.n)},
    )


def _means(inputs: BacktestInputs, plan: Plan) -> tuple[float, float]:
    r = inputs.realized
    hp = hashprice_usd_per_ph_day(r.difficulty, r.btc_usd, r.subsidy_btc, r.fees_btc_per_block)
    model = profile_catalog(plan.site)[plan.file.conversion.gpu_profile].gpu_model
    rent = float("nan")
    if model in inputs.fleet.gpu_models:
        col = r.gpu_usd_per_gpu_hour[:, inputs.fleet.gpu_models.index(model)]
        rent = float(np.nanmean(col)) if np.any(np.isfinite(col)) else rent
    if inputs.jobs.offered_usd_per_gpu_hour is not None:
        rent = float(inputs.jobs.offered_usd_per_gpu_hour)
    return rent, float(np.mean(hp))


MapCells = Callable[[Plan, Sequence[Cell], "CellProgress | None"], list[CellResult]]


def run_cells_sequentially(
    plan: Plan, cells: Sequence[Cell], progress: CellProgress | None = None
) -> list[CellResult]:
    out = []
    for i, cell in enumerate(cells):
        out.append(run_cell(plan, cell))
        if progress is not None:
            progress(i + 1, len(cells))
    return out


def grid(plan: Plan) -> list[Cell]:
    return [Cell(size, sc) for sc in scenarios(plan) for size in sizes_mw(plan)]
