"""The policy contract as a check: what `hashpivot policies check` runs, for policy authors.

A policy passes when, over many cycles of a small mixed site (three sites in three time
zones, weekdays and weekends, the spring and autumn clock changes, power-price spikes and
negative prices, AI demand coming and going, a stale market), it:

- loads with the given parameters;
- decides every cycle through the engine's own decision step, so its output passes the
  engine's checks (shape, dtypes, modes, reason codes, numeric state) and every guard;
- does no I/O and reads no wall clock (the network and `time.time` refuse while it runs);
- decides the same way twice on the same inputs;
- decides after a restart as it would have without one: its state goes through the
  journal's own representation and back, and the next decisions must not change;
- copes with an empty fleet.

In an author's own pytest suite::

    from orchestrator.testing import assert_policy_contract

    def test_contract() -> None:
        assert_policy_contract("strike_price.py", {"strike_usd_mwh": 90})
"""

from __future__ import annotations

import math
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.economics import hashprice_usd_per_th_day
from orchestrator.engine.step import DecisionStep, StepMemory
from orchestrator.errors import PolicyError
from orchestrator.framework.context import MarketHistory
from orchestrator.framework.policy import Policy
from orchestrator.framework.reasons import Reason
from orchestrator.framework.registry import load_policy
from orchestrator.models.config import GuardConfig, HashpivotConfig, ScoringConfig
from orchestrator.models.demand import DemandSummary, PendingJobs
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import builtin_catalog
from orchestrator.models.journal import StateArray
from orchestrator.models.market import MarketPrices, ObservedTimes
from orchestrator.models.modes import STEADY_STATE_OF_MODE, Mode
from orchestrator.models.site import Site

F64 = npt.NDArray[np.float64]

#: Hourly stretches the check walks through (UTC): the US spring clock change, the EU
#: autumn change and the US autumn change, each with weekdays and a weekend.
PERIODS: tuple[tuple[str, str], ...] = (
    ("2025-03-07T00:00:00", "2025-03-11T00:00:00"),
    ("2025-10-24T00:00:00", "2025-10-28T00:00:00"),
    ("2025-10-31T00:00:00", "2025-11-04T00:00:00"),
)
#: A restart is simulated at every this many cycles.
RESTART_EVERY = 17
_CYCLES_AFTER_RESTART = 6  # cycles compared after each simulated restart


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ContractReport:
    """What `check_policy` found, check by check."""

    policy: str
    params: dict[str, Any]
    cycles: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def lines(self) -> list[str]:
        out = []
        for f in self.findings:
            mark = "ok  " if f.ok else "FAIL"
            out.append(f"{mark} {f.check}" + (f": {f.detail}" if f.detail else ""))
        return out


class _ForbiddenError(RuntimeError):
    """A policy reached for the network or the wall clock."""


@contextmanager
def _pure(policy: Policy) -> Iterator[None]:
    """The network and the wall clock refuse while a policy decides: in their modules,
    and where the policy's module imported them by name (`from time import time`)."""

    def no_network(*_a: object, **_k: object) -> None:
        raise _ForbiddenError("policies must not use the network (use the context's inputs)")

    def no_clock(*_a: object, **_k: object) -> float:
        raise _ForbiddenError("policies must not read the wall clock (use ctx.now_s)")

    saved = (socket.socket, socket.create_connection, time.time, time.time_ns)
    clocks = {id(time.time), id(time.time_ns)}
    own = vars(sys.modules.get(type(policy).__module__, time))
    by_name = {k: v for k, v in own.items() if id(v) in clocks}
    socket.socket = no_network  # type: ignore[assignment,misc]
    socket.create_connection = no_network  # type: ignore[assignment]
    time.time = no_clock
    time.time_ns = no_clock  # type: ignore[assignment]
    own.update(dict.fromkeys(by_name, no_clock))
    try:
        yield
    finally:
        socket.socket, socket.create_connection, time.time, time.time_ns = saved  # type: ignore[misc]
        own.update(by_name)


# --- the site and its market ------------------------------------------------------------
def check_fleet() -> FleetTable:
    """Three sites in three time zones: a capped ASIC hall, a Texas hall with GPU nodes, a
    European GPU room. Mixed modes, some nodes just switched."""
    catalog = builtin_catalog()
    names = ["s19-xp", "s21", "h100-sxm-8x"]
    sites = [
        Site(name="hall", power_cap_kw=20.0),
        Site(name="texas", timezone="America/Chicago", power_cap_kw=60.0),
        Site(name="europe", timezone="Europe/Berlin"),
    ]
    layout = [  # (profile, site, mode)
        *[(0, 0, Mode.MINE)] * 4, *[(1, 0, Mode.MINE)] * 3, (1, 0, Mode.IDLE),
        *[(1, 1, Mode.MINE)] * 2, (2, 1, Mode.AI), (2, 1, Mode.MINE), (2, 1, Mode.IDLE),
        (2, 2, Mode.AI), (2, 2, Mode.IDLE),
    ]
    return FleetTable.build(
        [catalog[n] for n in names], sites, [p for p, _, _ in layout],
        node_sites=[s for _, s, _ in layout], modes=[int(m) for _, _, m in layout],
        names=[f"check-{i:02d}" for i in range(len(layout))], since_s=0.0,
    )


def _times() -> F64:
    spans = []
    for start, end in PERIODS:
        lo = datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()
        hi = datetime.fromisoformat(end).replace(tzinfo=UTC).timestamp()
        spans.append(np.arange(lo, hi, 3600.0))
    return np.concatenate(spans)


def _power_usd_mwh(t: float, site: int) -> float:
    """A daily shape, an evening spike on the second day, a negative hour on the third."""
    hour = (t / 3600.0 + 6 * site) % 24
    day = int(t // 86_400) % 4
    price = 35.0 + 15.0 * math.sin(2 * math.pi * (hour - 9) / 24)
    if day == 1 and 17 <= hour < 20:
        return 1_500.0
    if day == 2 and 3 <= hour < 4:
        return -20.0
    return price


def _prices(fleet: FleetTable, t: float, k: int) -> MarketPrices:
    btc = 97_000.0 * (1 + 0.05 * math.sin(k / 30.0))
    difficulty, fees, subsidy = 1.1e14, 0.1 + 0.4 * (k % 48 == 0), 3.125
    sha = float(hashprice_usd_per_th_day(difficulty, btc, subsidy, fees))
    unit = np.array([sha if a == "sha256" else 0.5 for a in fleet.algorithms])
    gpu = 2.0 + 0.5 * math.sin(k / 11.0)
    stale = k % 53 == 52  # now and then the market is days old: the guards hold
    # Values of different ages (within the stale-data limit unless stale): the difficulty
    # two hours old, each site's price older by site, a GPU price up to two hours old.
    sites = len(fleet.sites)
    fees_at = t - (3 * 86_400.0 if stale else 600.0)
    power_at = t - 600.0 - 1800.0 * np.arange(sites, dtype=np.float64)
    gpu_at = np.full(len(fleet.gpu_models), t - 3600.0 * (k % 3))
    sha_at = min(t - 300.0, t - 7200.0, fees_at)
    observed = ObservedTimes(
        btc_usd=t - 300.0, difficulty=t - 7200.0, fees_btc_per_block=fees_at, subsidy_btc=t,
        usd_per_unit_day=np.array([sha_at if a == "sha256" else t - 300.0
                                   for a in fleet.algorithms]),
        gpu_usd_per_gpu_hour=gpu_at, power_usd_mwh=power_at)
    oldest = min(sha_at, float(power_at.min(initial=t)), float(gpu_at.min(initial=t)))
    return MarketPrices(
        btc_usd=btc, difficulty=difficulty, fees_btc_per_block=fees, subsidy_btc=subsidy,
        usd_per_unit_day=unit,
        gpu_usd_per_gpu_hour=np.full(len(fleet.gpu_models), gpu),
        power_usd_mwh=np.array([_power_usd_mwh(t, s) for s in range(sites)]),
        oldest_observed_s=oldest,
        observed_source=observed,
    )


def _demand(fleet: FleetTable, k: int, t: float = 0.0) -> DemandSummary:
    waves = (0.0, 16.0, 40.0, 4.0, 0.0, 24.0)
    pending = np.full(len(fleet.gpu_models), waves[(k // 9) % len(waves)])
    offered = np.full(len(fleet.gpu_models), np.nan if k % 2 else 3.1)
    any_model = float(k % 3)
    return DemandSummary(pending, offered, pending_gpus_any_model=any_model,
                         job_list=_jobs(pending, offered, any_model, k, t))


def _jobs(pending: F64, offered: F64, any_model: float, k: int, t: float) -> PendingJobs:
    """The totals as jobs of up to 8 GPUs: waits of 0–5 h, durations of 1–12 h, a
    deadline on every other job, some of them already past, some submission times unknown."""
    gpus: list[float] = []
    model: list[int] = []
    for m, total in [*enumerate(pending.tolist()), (-1, any_model)]:
        parts = math.ceil(total / 8.0)
        gpus += [min(8.0, total - 8.0 * i) for i in range(parts)]
        model += [m] * parts
    j = np.arange(len(gpus))
    waited = 3600.0 * ((j + k) % 6)
    submitted = np.where((j + k) % 7 == 6, np.nan, t - waited)
    price = np.array([offered[m] if m >= 0 else np.nan for m in model])
    return PendingJobs.of(
        np.array(gpus, dtype=np.float64), np.array(model, dtype=np.int16), price,
        1.0 + ((j * 5 + k) % 12).astype(np.float64), submitted,
        np.where(j % 2 == 0, t - waited + 3600.0 * (2 + j % 5), np.nan),
        (j + k) % 3 == 0)


def _history(times: F64, fleet: FleetTable, k: int) -> MarketHistory:
    """Every cycle's prices up to cycle `k`, each published at its own time."""
    past = times[: k + 1]
    prices = [_prices(fleet, float(t), i) for i, t in enumerate(past)]
    power = np.array([p.power_usd_mwh for p in prices]).reshape(past.shape[0], -1)
    return MarketHistory(
        past,
        np.array([p.hashprice_usd_per_ph_day for p in prices]),
        power[:, 0].copy(),
        power,
        np.array([p.btc_usd for p in prices]),
        np.array([p.difficulty for p in prices]),
        past,
    )


# --- running the policy -------------------------------------------------------------------
def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass
class _Run:
    """One walk through every cycle: what was decided, on which fleet, and what the
    step remembered before each simulated restart."""

    targets: list[npt.NDArray[np.int8]] = field(default_factory=list)
    reasons: list[npt.NDArray[np.int16]] = field(default_factory=list)
    fleets: list[FleetTable] = field(default_factory=list)
    memories: dict[int, StepMemory] = field(default_factory=dict)
    #: Cycles whose raw output was not integer modes, or that the guards had to coerce.
    raw_not_integer: list[str] = field(default_factory=list)
    coerced: list[str] = field(default_factory=list)


def _journaled(memory: StepMemory) -> StepMemory:
    """The memory with the policy's state as the journal writes it and reads it back."""
    state = {
        k: StateArray.model_validate_json(StateArray.of(v).model_dump_json()).array()
        for k, v in memory.policy_state.items()
    }
    return replace(memory, policy_state=state)


def _step(policy: Policy, guards: GuardConfig, scoring: ScoringConfig | None) -> DecisionStep:
    return DecisionStep(policy=policy, guards=guards, scoring=scoring, interval_s=3600.0)


def _act(fleet: FleetTable, target: npt.NDArray[np.int8]) -> FleetTable:
    mode = np.asarray(target, dtype=np.int8)
    steady = np.array([STEADY_STATE_OF_MODE[m] for m in Mode], dtype=np.int8)
    return fleet.with_columns(mode=mode.copy(), state=steady[mode])


def _inputs(times: F64, fleet: FleetTable, k: int, history: bool) -> dict[str, Any]:
    t = float(times[k])
    return {"now_s": t, "prices": _prices(fleet, t, k), "demand": _demand(fleet, k, t),
            "history": _history(times, fleet, k) if history else None}


_COERCED = (int(Reason.GUARD_INVALID_TARGET), int(Reason.GUARD_UNSUPPORTED_MODE))


def _watched(policy: Policy, run: _Run | None = None) -> Policy:
    """The policy, deciding with the network and wall clock refused; its raw outputs'
    dtypes noted in `run`."""
    inner = policy.decide

    def decide(ctx: Any) -> Any:
        with _pure(policy):
            decision = inner(ctx)
        dtype = getattr(getattr(decision, "target", None), "dtype", None)
        if run is not None and dtype is not None and dtype.kind not in "iu":
            run.raw_not_integer.append(f"{_when(ctx.now_s)} ({dtype})")
        return decision

    setattr(policy, "decide", decide)  # noqa: B010  (an instance attribute, on purpose)
    return policy


def _walk(make: Callable[[], Policy], fleet: FleetTable, guards: GuardConfig,
          scoring: ScoringConfig | None) -> _Run:
    """Decide every cycle through the decision step, acting on each plan."""
    times = _times()
    run = _Run()
    policy = _watched(make(), run)
    step = _step(policy, guards, scoring)
    for k in range(times.shape[0]):
        if k and k % RESTART_EVERY == 0:
            run.memories[k] = _journaled(step.memory())
        run.fleets.append(fleet)
        try:
            plan = step.decide(fleet=fleet, **_inputs(times, fleet, k, policy.uses_history))
        except PolicyError as exc:
            raise PolicyError(f"at simulated time {_when(float(times[k]))} (cycle {k}): "
                              f"{exc}") from exc
        step.commit(plan)
        if np.isin(plan.reason, _COERCED).any():
            run.coerced.append(_when(float(times[k])))
        run.targets.append(np.array(plan.target))
        run.reasons.append(np.array(plan.reason))
        fleet = _act(fleet, plan.target)
    return run


def _restart_differences(run: _Run, make: Callable[[], Policy], guards: GuardConfig,
                         scoring: ScoringConfig | None) -> list[str]:
    """From each remembered point, a fresh policy restored from the journal's copy of the
    memory decides the next cycles on the same fleets: it must decide as the run did."""
    times = _times()
    differing = []
    for k, memory in run.memories.items():
        twin = _step(_watched(make()), guards, scoring)
        twin.restore(memory)
        for j in range(k, min(k + _CYCLES_AFTER_RESTART, len(run.fleets))):
            fleet = run.fleets[j]
            plan = twin.decide(fleet=fleet, **_inputs(times, fleet, j, twin.policy.uses_history))
            if not (np.array_equal(plan.target, run.targets[j])
                    and np.array_equal(plan.reason, run.reasons[j])):
                differing.append(f"{_when(float(times[j]))} (restart before {_when(times[k])})")
                break
            twin.commit(plan)
    return differing


def check_policy(
    spec: str,
    params: Mapping[str, Any] | None = None,
    *,
    config: HashpivotConfig | None = None,
) -> ContractReport:
    """Run the contract on the policy `spec` names (registry name, `module:Class` or a
    file) with `params`. With `config`, its guards and scoring are used (the check's own
    site stands in for the fleet, so every policy sees the same cases)."""
    params = dict(params or {})
    guards = config.guards if config is not None else GuardConfig()
    scoring = config.scoring if config is not None else None
    findings: list[Finding] = []
    report = ContractReport(spec, params, int(_times().shape[0]), findings)
    try:
        load_policy(spec, params, source="params")
    except PolicyError as exc:
        findings.append(Finding("loads with its parameters", False, str(exc)))
        return report
    findings.append(Finding("loads with its parameters", True))

    def make() -> Policy:
        return load_policy(spec, params)

    fleet = check_fleet()
    rules = "decides every cycle within the engine's rules"
    try:
        first = _walk(make, fleet, guards, scoring)
        second = _walk(make, fleet, guards, scoring)
        differing = _restart_differences(first, make, guards, scoring)
    except PolicyError as exc:
        findings.append(Finding(rules, False, str(exc)))
        return report
    findings.append(Finding(rules, True, f"{report.cycles} cycles, 3 sites, "
                            "3 clock changes, spikes, a stale market"))
    findings.append(Finding(
        "returns integer modes the hardware can run",
        not first.raw_not_integer and not first.coerced,
        "; ".join(filter(None, [
            _first_few("not integers at", first.raw_not_integer),
            _first_few("coerced by the guards at", first.coerced)])),
    ))
    same = all(np.array_equal(a, b) for a, b in zip(first.targets, second.targets,
                                                     strict=True))
    same = same and all(np.array_equal(a, b) for a, b in zip(first.reasons, second.reasons,
                                                             strict=True))
    findings.append(Finding("decides the same way on the same inputs", same,
                            "" if same else "two runs of the same cycles differ"))
    findings.append(Finding(
        "decides after a restart as without one (state through the journal)",
        not differing, _first_few("differs at", differing)))
    empty = FleetTable.build(fleet.profiles, fleet.sites, np.zeros(0, dtype=np.int32))
    t0 = float(_times()[0])
    try:
        plan = _step(_watched(make()), guards, scoring).decide(
            now_s=t0, prices=_prices(empty, t0, 0), demand=_demand(empty, 0), fleet=empty)
        ok, detail = plan.target.shape == (0,), ""
    except PolicyError as exc:
        ok, detail = False, str(exc)
    findings.append(Finding("copes with an empty fleet", ok, detail))
    modes = Counter(first.targets[-1].tolist())
    findings.append(Finding("modes after the last cycle", True, ", ".join(
        f"{Mode(m).name.lower()} {c}" for m, c in sorted(modes.items()))))
    return report


def _first_few(what: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return f"{what} {', '.join(items[:3])}{more}"


def assert_policy_contract(
    spec: str, params: Mapping[str, Any] | None = None, *, config: HashpivotConfig | None = None
) -> ContractReport:
    """`check_policy`, raising AssertionError with every failed check (for pytest)."""
    report = check_policy(spec, params, config=config)
    if not report.ok:
        raise AssertionError(f"policy {spec} breaks the policy contract:\n"
                             + "\n".join(report.lines()))
    return report

