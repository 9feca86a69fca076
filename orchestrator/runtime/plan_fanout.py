"""Conversion plans over Ray: one task per (size, scenario) cell.

Run inside `parallel.ray_session` (embedded Ray by default, an existing cluster by
address). The plan is put in the object store once; each task builds its sized site and
runs it through the backtest, so the cells scale with the cluster's CPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from orchestrator.planning.config import Plan
from orchestrator.planning.evaluate import Cell, CellProgress, CellResult, run_cell
from orchestrator.runtime.parallel import get_results


@ray.remote
def _cell_remote(plan: Plan, cell: Cell) -> CellResult:
    return run_cell(plan, cell)


def ray_map_cells(
    plan: Plan, cells: Sequence[Cell], progress: CellProgress | None = None
) -> list[CellResult]:
    """Every cell as a Ray task; results in the order of `cells`."""
    shared = ray.put(plan)
    refs: list[Any] = [_cell_remote.remote(shared, cell) for cell in cells]
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=1)
        if progress is not None:
            progress(len(refs) - len(pending), len(refs))
    results: list[CellResult] = get_results(refs)
    return results
