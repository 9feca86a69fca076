"""Run policies over recorded data on a simulated site; the same engine as live control."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.analysis import RunAnalysis, analyse
from orchestrator.backtest.baselines import BASELINES, CONFIGURED_GUARDS, UNGUARDED, unguarded
from orchestrator.backtest.contracts import contract_accounts, contract_book
from orchestrator.backtest.jobs import JobStream, scale_trace
from orchestrator.backtest.oracle import (
    OracleResult,
    demand_gpus_per_step,
    hindsight_oracle,
    queued_arrivals_gpus,
    served_demand_gpus,
    window_demand_gpus,
)
from orchestrator.backtest.recorded import HistoryRows, PriceTable, RecordedMarketSource
from orchestrator.backtest.schedule import ScheduleFollower
from orchestrator.backtest.sim import Ledger, SimulatedSite
from orchestrator.engine.step import DecisionStep
from orchestrator.errors import ConfigError, PolicyError
from orchestrator.framework.context import MarketHistory
from orchestrator.framework.policy import Policy
from orchestrator.framework.registry import load_policy, resolve_policy_class
from orchestrator.models.build import build_fleet
from orchestrator.models.config import GuardConfig, HashpivotConfig, base_dir
from orchestrator.models.fleet import FleetTable

_log = logging.getLogger("hashpivot.backtest")
F64 = npt.NDArray[np.float64]
Progress = Callable[[str, int, int], None]

HISTORY_WINDOW_S = 14 * 86_400.0


@dataclass(frozen=True, slots=True)
class PolicyRun:
    name: str
    ledger: Ledger
    baseline: bool
    #: The guards the row ran under, as the table and report label it.
    guards: str = CONFIGURED_GUARDS
    #: The policy as named (registry name, module:Class or file) and its parameters.
    spec: str = ""
    params: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    start_s: float
    end_s: float
    step_s: float
    fleet: FleetTable
    runs: list[PolicyRun]
    oracle: OracleResult | None
    known: PriceTable
    realized: PriceTable
    demand_gpus: F64

    def analysis(self, run: PolicyRun) -> RunAnalysis:
        """Per month, drawdown, worst day, spike exposure and idle hours of one run."""
        ledger = run.ledger
        price = self.realized.power_usd_mwh
        spikes = price.max(axis=1) if price.ndim == 2 and price.shape[1] else np.zeros(0)
        return analyse(ledger.times_s, ledger.net, ledger.power_cost, ledger.modes,
                       spikes, self.step_s)

    def summary(self) -> dict[str, object]:
        """Per policy: revenue, power, switching, net, switches and capture ratio."""
        oracle_net = self.oracle.net_usd if self.oracle else None
        policies = {}
        for run in self.runs:
            totals = run.ledger.totals()
            capture = totals["net_usd"] / oracle_net if oracle_net and oracle_net > 0 else None
            policies[run.name] = {**totals, "baseline": run.baseline, "guards": run.guards,
                                  "capture_ratio": capture, "policy": run.spec,
                                  "params": run.params or {},
                                  "guard_holds": run.ledger.holds(),
                                  "analysis": self.analysis(run).as_dict()}
        return {
            "period": {
                "start": _iso(self.start_s),
                "end": _iso(self.end_s),
                "step_s": self.step_s,
                "steps": int(self.known.times_s.shape[0]),
            },
            "fleet": {
                "nodes": self.fleet.n,
                "profiles": {
                    p.name: int(np.count_nonzero(self.fleet.profile == i))
                    for i, p in enumerate(self.fleet.profiles)
                },
            },
            "oracle": None
            if self.oracle is None
            else {
                "net_usd": self.oracle.net_usd,
                "feasible_usd": self.oracle.feasible_usd,
                "bound_usd": self.oracle.bound_usd,
                "estimate_usd": self.oracle.estimate_usd,
                "on_site_ledger": self.oracle.on_site_ledger,
                "bound_demand": self.oracle.bound_demand,
                "ai_revenue_usd": self.oracle.ai_revenue_usd,
                "gap": self.oracle.gap,
                "tolerance": self.oracle.tolerance,
                "max_iterations": self.oracle.max_iterations,
                "kind": self.oracle.kind,
                "iterations": self.oracle.iterations,
            },
            "policies": policies,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class _History:
    """Market history precomputed once and sliced per step (no look-ahead: a step sees
    the rows published at or before it, each site's price once published)."""

    def __init__(self, market: RecordedMarketSource | None, end_s: float,
                 rows: HistoryRows | None = None, start_s: float = 0.0):
        if rows is None:
            assert market is not None
            # From the first recorded value, or the run's start when every series is a
            # constant (they have no first value).
            first_s = market.span()[0]
            if not np.isfinite(first_s):
                first_s = start_s
            rows = market.history_rows(end_s, end_s - first_s + HISTORY_WINDOW_S)
        self.rows = rows

    @property
    def hashprice(self) -> F64:
        return self.rows.history.hashprice_usd_ph_day

    @property
    def power(self) -> F64:
        """Each site's power price, (rows, sites)."""
        return self.rows.history.site_power_usd_mwh

    def scaled(self, hashprice: float, power: float) -> _History:
        """The same rows in a stressed market: hashprice and every power price scaled."""
        return _History(None, 0.0, self.rows.scaled(hashprice, power))

    def at(self, now_s: float) -> MarketHistory:
        return self.rows.rows_known_at(now_s, HISTORY_WINDOW_S)


def resolve_period(
    config: HashpivotConfig,
    market: RecordedMarketSource,
    start: datetime | None,
    end: datetime | None,
    history_s: float = 0.0,
) -> tuple[float, float]:
    lo, hi = market.span()
    start_s = start or config.backtest.start
    end_s = end or config.backtest.end
    s = start_s.timestamp() if start_s else lo
    e = end_s.timestamp() if end_s else hi
    if not np.isfinite(s) or not np.isfinite(e):
        raise ConfigError("set backtest.start and backtest.end: every market series is constant")
    if e <= s:
        raise ConfigError(
            f"backtest end {_iso(e)} is not after start {_iso(s)}",
            field="--to" if end is not None else "backtest.end",
        )
    # A step is billed whole: an end set by the user ends at its last whole step, so no
    # time past it is billed (an end taken from the data is its last row's start, and
    # that row's interval is still recorded).
    step_s = config.backtest.step_s
    steps = math.floor((e - s) / step_s + 1e-9)
    if steps < 1:
        raise ConfigError(
            f"a step of {step_s / 3600:g} h is longer than the period "
            f"{_iso(s)} → {_iso(e)} ({(e - s) / 3600:g} h)", field="backtest.step_s")
    if end_s is not None and s + steps * step_s < e:
        _log.warning("the period ends %.0f min into a step: the backtest ends at %s, "
                     "after its last whole step", (e - s - steps * step_s) / 60,
                     _iso(s + steps * step_s))
        e = s + steps * step_s
    market.check_period(s, e, history_s)  # rows the decisions' history reads count too
    return s, e


def simulate(
    config: HashpivotConfig,
    policy: Policy,
    guards: GuardConfig,
    *,
    fleet: FleetTable,
    times: F64,
    known: PriceTable,
    realized: PriceTable,
    jobs: JobStream,
    history: _History | None,
    progress: Callable[[int], None] | None = None,
    programs: bool = True,
) -> Ledger:
    """One policy over every step: arrive → decide (the decision step every mode uses) →
    apply (simulator)."""
    step_s = config.backtest.step_s
    max_wait = config.demand.max_wait_h if config.demand else 24.0
    sim = SimulatedSite(fleet, jobs, config.scoring, max_wait_h=max_wait,
                        contracts=contract_accounts(config))
    ledger = Ledger.zeros(times, fleet.n)
    step = decision_step(config, policy, guards, programs=programs)
    wants_history = history is not None and step.needs_history
    for k in range(times.shape[0]):
        now = float(times[k])
        ledger.sla_misses[k] = sim.arrive(now)
        try:
            plan = step.decide(
                now_s=now,
                prices=known.prices(k),
                demand=sim.demand(now),
                fleet=sim.fleet_at(now),
                history=history.at(now) if wants_history and history is not None else None,
            )
        except PolicyError as exc:  # when, in simulated time, besides what and where
            raise PolicyError(f"at simulated time {_iso(now)}: {exc}") from None
        sim.step(plan, now_s=now, dt_s=step_s, realized=realized.prices(k), ledger=ledger, k=k)
        step.commit(plan)
        if progress is not None:
            progress(k + 1)
    return ledger


def decision_step(config: HashpivotConfig, policy: Policy, guards: GuardConfig,
                  interval_s: float | None = None, programs: bool = True) -> DecisionStep:
    """The decision step for `config`: the same in a backtest, a dry-run and live.
    `programs=False`: the sites' power-contract programs are invisible to the decision
    (the ledger still bills them)."""
    return DecisionStep(
        policy, guards, config.scoring,
        interval_s=config.backtest.step_s if interval_s is None else interval_s,
        demand_model=config.demand.gpu_model if config.demand is not None else None,
        contracts=contract_book(config, programs),
    )


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One run to make: which policy (by name, module:Class or file), its params and guards.

    Specs are plain data so a run can be shipped to another process (Ray) and the policy
    loaded there.
    """

    label: str
    spec: str
    params: dict[str, object] | None
    guards: GuardConfig
    baseline: bool = False
    guards_label: str = CONFIGURED_GUARDS
    #: False: the power contract's programs are invisible to the decision, still billed.
    programs: bool = True


@dataclass(frozen=True, slots=True)
class BacktestInputs:
    """Everything every policy run shares: data loaded once, read-only."""

    config: HashpivotConfig
    fleet: FleetTable
    times: F64
    known: PriceTable
    realized: PriceTable
    jobs: JobStream
    history: _History | None
    start_s: float
    end_s: float


def prepare_backtest(
    config: HashpivotConfig,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    needs_history: bool = False,
) -> BacktestInputs:
    """Load market data and the job trace, build the fleet and the price tables."""
    if config.market is None:
        raise ConfigError("a backtest needs recorded market data", field="market")
    if not config.fleet:
        raise ConfigError("a backtest needs a simulated fleet", field="fleet")
    root = base_dir(config)
    fleet = build_fleet(config)
    market = RecordedMarketSource(config.market, root, fleet)
    history_s = HISTORY_WINDOW_S if needs_history else 0.0
    start_s, end_s = resolve_period(config, market, start, end, history_s)
    times = np.arange(start_s, end_s, config.backtest.step_s)
    # Nodes start settled: their last switch was long before the period.
    fleet = fleet.with_columns(since=np.full(fleet.n, start_s - HISTORY_WINDOW_S))
    jobs = JobStream.empty()
    if config.demand is not None:
        gpus_per_node = float(fleet.gpus.max()) if np.any(fleet.gpus > 0) else 8.0
        jobs = scale_trace(
            config.demand,
            root,
            start_s=start_s,
            end_s=end_s,
            site_gpus=float(fleet.gpus.sum()),
            gpus_per_node=gpus_per_node,
        )
    return BacktestInputs(
        config=config,
        fleet=fleet,
        times=times,
        known=market.price_table(times),
        realized=market.price_table(times, realized=True),
        jobs=jobs,
        history=_History(market, end_s, start_s=start_s) if needs_history else None,
        start_s=start_s,
        end_s=end_s,
    )


def run_policy(
    inputs: BacktestInputs, spec: PolicySpec, progress: Callable[[int], None] | None = None
) -> PolicyRun:
    """Load the policy named by `spec` and simulate it over the whole period."""
    policy = load_policy(spec.spec, spec.params)
    config = inputs.config
    if spec.baseline and config.scoring.nowcasts_power:
        # A baseline stands for what a site runs without hashpivot: the published price.
        config = config.model_copy(update={"scoring": config.scoring.model_copy(
            update={"power_nowcast": "last-published"})})
    ledger = simulate(
        config,
        policy,
        spec.guards,
        fleet=inputs.fleet,
        times=inputs.times,
        known=inputs.known,
        realized=inputs.realized,
        jobs=inputs.jobs,
        history=inputs.history,
        progress=progress,
        programs=spec.programs,
    )
    return PolicyRun(spec.label, ledger, spec.baseline, spec.guards_label, spec.spec,
                     spec.params)


def run_oracle(
    inputs: BacktestInputs, progress: Callable[[int], None] | None = None
) -> tuple[OracleResult, F64]:
    """The hindsight oracle, iterating to the configured gap or iteration limit, its
    schedule then run through the simulated site: the feasible value is that ledger's net.
    Returns the result and the on-arrival demand per step."""
    result, demand, _ = run_oracle_on_site(inputs, progress)
    return result, demand


def run_oracle_on_site(
    inputs: BacktestInputs, progress: Callable[[int], None] | None = None
) -> tuple[OracleResult, F64, ScheduleFollower]:
    """`run_oracle`, also returning the policy that followed the reported schedule (its
    `issued` targets are that schedule node by node).

    The oracle's schedule fills, per step, the GPUs the job queue keeps busy when every
    GPU is offered; more schedules from the same plan fill every GPU of the nodes that
    work occupies, the larger of the busy GPUs and the on-arrival demand, and every GPU
    (more AI nodes absorb whole-job packing and nodes still starting). The simulated
    site runs each; the best ledger is the feasible value. The bound holds the running
    total of queued arrivals and, each step, the GPUs of the jobs that may run then.
    """
    config, step_s = inputs.config, inputs.config.backtest.step_s
    arrived = demand_gpus_per_step(inputs.jobs, inputs.times, step_s)
    max_wait = config.demand.max_wait_h if config.demand else 24.0
    served = served_demand_gpus(inputs.fleet, inputs.jobs, inputs.times, step_s,
                                max_wait_h=max_wait)
    occupied = served_demand_gpus(inputs.fleet, inputs.jobs, inputs.times, step_s,
                                  max_wait_h=max_wait, whole_nodes=True)
    servable = SimulatedSite(inputs.fleet, inputs.jobs, config.scoring).servable
    queued = queued_arrivals_gpus(inputs.jobs, inputs.times, step_s,
                                  inputs.fleet.gpus[servable])
    statics = inputs.fleet.statics
    # The longest a node placed with a job may take to start it: stop its mode, start AI.
    delay = float(np.max(statics.stop_s.max(axis=0) + statics.start_s[2])) if servable.any() \
        else 0.0
    window = window_demand_gpus(inputs.jobs, inputs.times, step_s,
                                inputs.fleet.gpus[servable], max_wait_s=max_wait * 3600.0,
                                start_delay_s=delay)
    every_gpu = np.full(inputs.times.shape[0], float(inputs.fleet.gpus[servable].sum()))
    others = [d for d in (occupied, np.maximum(served, arrived), every_gpu)
              if not np.array_equal(d, served)]
    oracle = hindsight_oracle(
        inputs.fleet,
        realized_unit_price=inputs.realized.usd_per_unit_day,
        realized_gpu_price=inputs.realized.gpu_usd_per_gpu_hour,
        realized_power=inputs.realized.power_usd_mwh,
        demand_gpus=served,
        arrived_gpus=queued,
        window_gpus=window,
        other_demands=others,
        contracts=contract_book(config),
        times_s=inputs.times,
        dt_s=step_s,
        offered_usd_per_gpu_hour=inputs.jobs.offered_usd_per_gpu_hour,
        max_iterations=config.backtest.oracle_max_iterations,
        tolerance=config.backtest.oracle_gap,
        progress=progress,
    )
    best: tuple[OracleResult, ScheduleFollower] | None = None
    for schedule in (oracle.class_modes, *oracle.alternatives):
        follower = ScheduleFollower(inputs.start_s, step_s, oracle.class_of_node, schedule)
        ledger = simulate(config, follower, unguarded(config.guards), fleet=inputs.fleet,
                          times=inputs.times, known=inputs.known, realized=inputs.realized,
                          jobs=inputs.jobs, history=None)
        if best is None or float(ledger.net.sum()) > best[0].feasible_usd:
            reached = replace(oracle.on_site(ledger.net, ledger.modes,
                                             float(ledger.ai_revenue.sum())),
                              class_modes=schedule)
            best = (reached, follower)
    assert best is not None
    return best[0], arrived, best[1]


def policy_specs(
    config: HashpivotConfig,
    policies: Sequence[str] | None,
    baselines: bool,
    params: Mapping[str, Mapping[str, object]] | None = None,
    ignore_programs: bool = False,
) -> list[PolicySpec]:
    """The configured (or named) policies, then the baselines under the same guards (and,
    with `backtest.unguarded_baselines`, each baseline again without dwell or budgets).
    `ignore_programs`: each named policy runs again with the power contract's programs
    invisible to its decisions but billed, labelled `LABEL (programs ignored)`.

    A run is `SPEC` or `LABEL=SPEC` (the same policy twice, with other parameters);
    `params` maps a run's label to its parameters (default: the config's `policy.params`
    for the configured policy). Two runs with one label are refused.
    """
    specs = []
    labels: dict[str, str] = {}
    params = params or {}
    for entry in policies or [config.policy.name]:
        label, eq, spec = entry.partition("=")
        if not eq:
            label, spec = "", entry
        label, spec = label.strip(), spec.strip()
        cls = resolve_policy_class(spec)
        label = label or cls.name or spec
        if label in labels:
            raise ConfigError(
                f"two runs are labelled {label!r} ({labels[label]} and {entry}): name each "
                "one as LABEL=POLICY, e.g. -p slow=hysteresis", field="--policy")
        labels[label] = entry
        run_params = params.get(label)
        if run_params is None and spec == config.policy.name:
            run_params = config.policy.params
        run_params = dict(run_params) if run_params is not None else None
        # Fail here, before any work, on bad parameters; name the run they belong to.
        load_policy(spec, run_params, source=f"params of {label}")
        specs.append(PolicySpec(label, spec, run_params, config.guards))
        if ignore_programs:
            specs.append(PolicySpec(ignored_label(label), spec, run_params, config.guards,
                                    programs=False))
    unknown = sorted(set(params) - set(labels))
    if unknown:
        raise ConfigError(f"parameters for {', '.join(unknown)}, which no run is labelled "
                          f"(runs: {', '.join(labels)})", field="--params")
    taken = {base.name for base in BASELINES} & set(labels) if baselines else set()
    if taken:
        raise ConfigError(f"{', '.join(sorted(taken))} names a baseline: label the run "
                          "another way (LABEL=POLICY)", field="--policy")
    if baselines:
        for base in BASELINES:
            path = f"{base.__module__}:{base.__name__}"
            specs.append(PolicySpec(base.name, path, None, config.guards, baseline=True))
            if config.backtest.unguarded_baselines:
                specs.append(PolicySpec(f"{base.name} (unguarded)", path, None,
                                        unguarded(config.guards), baseline=True,
                                        guards_label=UNGUARDED))
    return specs


IGNORED_SUFFIX = " (programs ignored)"


def ignored_label(label: str) -> str:
    """The label of a run that decides without the power contract's programs."""
    return label + IGNORED_SUFFIX


MapRuns = Callable[[BacktestInputs, list[PolicySpec], "Progress | None"], list[PolicyRun]]


def run_sequentially(
    inputs: BacktestInputs, specs: list[PolicySpec], progress: Progress | None
) -> list[PolicyRun]:
    runs = []
    total = int(inputs.times.shape[0])
    for spec in specs:

        def tick(k: int, label: str = spec.label) -> None:
            if progress is not None:
                progress(label, k, total)

        runs.append(run_policy(inputs, spec, tick))
    return runs


def run_backtest(
    config: HashpivotConfig,
    *,
    policies: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, object]] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    baselines: bool | None = None,
    progress: Progress | None = None,
    map_runs: MapRuns | None = None,
    ignore_programs: bool = False,
) -> BacktestResult:
    """Backtest the configured (or named) policies, the baselines and the oracle.

    `map_runs` runs the policy specs (default: one after another in this process; the
    runtime passes a Ray fan-out).
    """
    with_baselines = config.backtest.baselines if baselines is None else baselines
    specs = policy_specs(config, policies, with_baselines, params, ignore_programs)
    needs_history = config.scoring.nowcasts_power or any(
        resolve_policy_class(s.spec).uses_history for s in specs)
    inputs = prepare_backtest(config, start=start, end=end, needs_history=needs_history)
    runs = (map_runs or run_sequentially)(inputs, specs, progress)
    oracle = None
    demand = demand_gpus_per_step(inputs.jobs, inputs.times, config.backtest.step_s)
    if with_baselines:

        def oracle_tick(i: int) -> None:
            if progress is not None:
                progress("hindsight oracle", i, config.backtest.oracle_max_iterations)

        oracle, demand = run_oracle(inputs, oracle_tick)
    return BacktestResult(
        inputs.start_s,
        inputs.end_s,
        config.backtest.step_s,
        inputs.fleet,
        runs,
        oracle,
        inputs.known,
        inputs.realized,
        demand,
    )
