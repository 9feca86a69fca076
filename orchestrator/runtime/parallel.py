"""Backtest fan-out over Ray: one task per policy run or sweep point.

Embedded by default (a local Ray started for the run); `address` joins an existing
cluster (e.g. KubeRay). Progress flows back through a small actor the driver polls, so
the terminal shows every run advancing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
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
    prepare_backtest,
    run_policy,
)
from orchestrator.errors import ConfigError
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
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            configure_logging=False,
        )
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
    results = ray.get(refs)
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
class SweepPoint:
    label: str
    params: dict[str, Any]
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class SweepResult:
    point: SweepPoint
    totals: dict[str, float]


def sweep_points(path: str, config: HashpivotConfig) -> tuple[str, list[SweepPoint]]:
    """Read a sweep file: `policy`, a `grid` of parameter lists, optional `periods`."""
    data = read_yaml(Path(path))
    unknown = set(data) - {"policy", "grid", "periods"}
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)}; expected policy, grid, periods", source=path
        )
    policy = str(data.get("policy", config.policy.name))
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(
            "grid must map parameter names to non-empty lists", source=path, field="grid"
        )
    periods_raw = data.get("periods") or [{}]
    periods: list[tuple[datetime | None, datetime | None]] = []
    for i, p in enumerate(periods_raw):
        try:
            periods.append((_utc(p.get("from")), _utc(p.get("to"))))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad period: {exc}", source=path, field=f"periods[{i}]") from None
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**config.policy.params, **dict(zip(keys, values, strict=True))}
        load_policy(policy, params, source=f"{path}: grid")  # fail before launching anything
        for start, end in periods:
            tag = ",".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "defaults"
            when = "" if start is None and end is None else f" [{start or ''}..{end or ''}]"
            points.append(SweepPoint(f"{policy} {tag}{when}", params, start, end))
    return policy, points


def _utc(value: Any) -> datetime | None:
    """A period bound from YAML (date, datetime or ISO text); naive means UTC."""
    if value is None:
        return None
    when = datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@ray.remote
def _sweep_remote(
    config: HashpivotConfig, policy: str, point: SweepPoint, board: Any
) -> SweepResult:
    needs_history = resolve_policy_class(policy).uses_history
    inputs = prepare_backtest(config, start=point.start, end=point.end, needs_history=needs_history)
    total = int(inputs.times.shape[0])
    every = max(total // 100, 1)

    def tick(k: int) -> None:
        if k % every == 0 or k == total:
            board.update.remote(point.label, k)

    spec = PolicySpec(point.label, policy, point.params, config.guards)
    run = run_policy(inputs, spec, tick)
    return SweepResult(point, run.ledger.totals())


def run_sweep(
    config: HashpivotConfig,
    policy: str,
    points: list[SweepPoint],
    progress: Progress | None,
    steps_per_point: Callable[[SweepPoint], int],
) -> list[SweepResult]:
    """Fan the sweep out as Ray tasks (inside a `ray_session`)."""
    board = ProgressBoard.remote()  # type: ignore[attr-defined]
    shared = ray.put(config)
    refs = [_sweep_remote.remote(shared, policy, p, board) for p in points]
    totals = {p.label: steps_per_point(p) for p in points}
    results: list[SweepResult] = _drive(refs, [p.label for p in points], totals, board, progress)
    return results
