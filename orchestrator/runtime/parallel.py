"""Backtest fan-out over Ray: one task per policy run (a sweep is backtests whose runs
are the grid's parameter sets).

Embedded by default (a local Ray started for the run); `address` joins an existing
cluster (e.g. KubeRay). Progress flows back through a small actor the driver polls, so
the terminal shows every run advancing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray

from orchestrator.backtest.runner import (
    BacktestInputs,
    PolicyRun,
    PolicySpec,
    Progress,
    run_policy,
)
from orchestrator.errors import ConfigError, HashpivotError
from orchestrator.framework.registry import load_policy, resolve_policy_class
from orchestrator.models.config import HashpivotConfig, read_yaml


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                log_to_driver: bool = False) -> Iterator[None]:
    """Start (or join) Ray for the duration of a command; quiet, no dashboard.
    `log_to_driver`: actors' output is printed by this process (the controller's log)."""
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(
                address=address,
                num_cpus=None if address else num_cpus,
                include_dashboard=False,
                log_to_driver=log_to_driver,
                configure_logging=False,
            )
        except ConnectionError as exc:  # a cluster that is not there (or refuses us)
            if not address:
                raise
            raise HashpivotError(f"cannot join the Ray cluster at {address}: "
                                 f"{str(exc).splitlines()[0]}") from None
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Latest step count per run label, written by tasks, read by the driver."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def update(self, label: str, steps: int) -> None:
        self.done[label] = steps

    def snapshot(self) -> dict[str, int]:
        return dict(self.done)


@ray.remote
def _run_remote(inputs: BacktestInputs, spec: PolicySpec, board: Any) -> PolicyRun:
    total = int(inputs.times.shape[0])
    every = max(total // 100, 1)

    def tick(k: int) -> None:
        if k % every == 0 or k == total:
            board.update.remote(spec.label, k)

    return run_policy(inputs, spec, tick)


def get_results(refs: list[Any]) -> list[Any]:
    """`ray.get`, except that a user error inside a task (bad data, a policy that fails)
    is raised as itself, in one line, not as Ray's account of the task."""
    try:
        return list(ray.get(refs))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, HashpivotError):
            raise exc.cause from None
        raise


def _drive(
    refs: list[Any],
    labels: list[str],
    totals: dict[str, int],
    board: Any,
    progress: Progress | None,
) -> list[Any]:
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.25)
        if progress is not None:
            for label, steps in ray.get(board.snapshot.remote()).items():
                progress(label, steps, totals[label])
    results = get_results(refs)
    if progress is not None:
        for label in labels:
            progress(label, totals[label], totals[label])
    return results


def ray_map_runs(
    inputs: BacktestInputs, specs: list[PolicySpec], progress: Progress | None
) -> list[PolicyRun]:
    """Run every spec as a Ray task (inside a `ray_session`)."""
    board = ProgressBoard.remote()  # type: ignore[attr-defined]
    shared = ray.put(inputs)
    refs = [_run_remote.remote(shared, spec, board) for spec in specs]
    total = int(inputs.times.shape[0])
    return _drive(refs, [s.label for s in specs], {s.label: total for s in specs}, board, progress)


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One policy with one set of parameters, as a labelled backtest run."""

    label: str
    spec: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sweep:
    """What a sweep file asks for: runs (policies × parameter grids) over periods."""

    runs: list[SweepRun]
    periods: list[tuple[datetime | None, datetime | None]]


def read_sweep(path: str, config: HashpivotConfig) -> Sweep:
    """Read a sweep file. Either one policy and its grid::

        policy: hysteresis
        grid: {confirm_ticks: [1, 3]}

    or several, each with its own grid (none: its defaults)::

        policies:
          - {policy: hysteresis, grid: {confirm_ticks: [1, 3]}}
          - {policy: greedy}
          - {policy: my_policy.py, grid: {strike: [60, 90]}}

    plus optional `periods` (`[{from: …, to: …}]`). A grid holds only the sweep's own
    values: the site file's `policy.params` belong to the site's policy, not to a sweep.
    Every parameter set is checked before anything runs; labels are short and unique.
    """
    data = read_yaml(Path(path))
    unknown = set(data) - {"policy", "grid", "policies", "periods"}
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)}; expected policy and grid, or policies; periods",
            source=path)
    if "policies" in data and ("policy" in data or "grid" in data):
        raise ConfigError("give either policy and grid, or a policies list", source=path)
    entries = data.get("policies")
    if entries is None:
        entries = [{"policy": data.get("policy", config.policy.name),
                    "grid": data.get("grid") or {}}]
    if not isinstance(entries, list) or not entries:
        raise ConfigError("policies must be a non-empty list", source=path, field="policies")
    runs: list[SweepRun] = []
    for i, entry in enumerate(entries):
        where = f"policies[{i}]" if "policies" in data else "grid"
        if not isinstance(entry, dict) or set(entry) - {"policy", "grid"} or "policy" not in entry:
            raise ConfigError("each entry is {policy: NAME, grid: {param: [values]}}",
                              source=path, field=where)
        runs += _grid_runs(path, where, str(entry["policy"]), entry.get("grid") or {},
                           {r.label for r in runs})
    periods_raw = data.get("periods") or [{}]
    periods: list[tuple[datetime | None, datetime | None]] = []
    for i, p in enumerate(periods_raw):
        try:
            start, end = _utc(p.get("from")), _utc(p.get("to"))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad period: {exc}", source=path, field=f"periods[{i}]") from None
        if start is not None and end is not None and end <= start:
            raise ConfigError(f"to ({end.isoformat()}) is not after from ({start.isoformat()})",
                              source=path, field=f"periods[{i}]")
        periods.append((start, end))
    return Sweep(runs, periods)


def _grid_runs(path: str, where: str, spec: str, grid: Any, taken: set[str]) -> list[SweepRun]:
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError("grid must map parameter names to non-empty lists", source=path,
                          field=where)
    cls = resolve_policy_class(spec)
    short = cls.name or Path(spec.partition(":")[0]).stem
    keys = list(grid)
    runs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        load_policy(spec, params, source=f"{path}: {where}")  # fail before launching anything
        tag = ",".join(f"{k}:{v}" for k, v in params.items())
        label = f"{short} {tag}" if tag else short
        if label in taken:
            raise ConfigError(f"{label!r} is in the sweep twice", source=path, field=where)
        taken.add(label)
        runs.append(SweepRun(label, spec, params))
    return runs


def _utc(value: Any) -> datetime | None:
    """A period bound from YAML (date, datetime or ISO text); naive means UTC."""
    if value is None:
        return None
    when = datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)
