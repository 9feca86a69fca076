"""Conversion plan at scale: 20 sizes × 5 scenarios × two years hourly for a 5,000-node
hall, fanned out as Ray tasks, and the speed-up from 1 worker to every core.

    python -m bench.bench_plan [--sizes 20] [--days 730] [--scaling-cells 4 --scaling-days 60]
    python -m bench.bench_plan --skip-full      # the speed-up measurement only

The plan is the shipped 20 MW West Texas example (examples/conversion) with 2,500 S19 XP
and 2,500 S21: one recorded two-year window from 2023-07-06 and the four stressed variants
of plan.yaml, each size and scenario a full run of the site with its policy.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import yaml

from bench.summary import record
from orchestrator.planning.config import Plan, load_plan
from orchestrator.planning.evaluate import Cell, CellProgress, CellResult, grid, run_cell
from orchestrator.planning.run import run_plan
from orchestrator.runtime.plan_fanout import ray_map_cells

EXAMPLE = Path(__file__).parents[1] / "examples" / "conversion"
TARGET_S = 600.0


def bench_plan(folder: Path, sizes: int, days: int, scenarios: int) -> Path:
    data: dict[str, Any] = yaml.safe_load((EXAMPLE / "plan.yaml").read_text())
    data["site"] = str(EXAMPLE / "site.yaml")
    data["site_overrides"] = {"fleet": [
        {"profile": "s19-xp", "count": 2500, "site": "west-texas-hall", "mode": "mine"},
        {"profile": "s21", "count": 2500, "site": "west-texas-hall", "mode": "mine"},
    ]}
    top = 20.0
    data["sizes"] = {"mw": [round(k * top / (sizes - 1), 4) for k in range(sizes)]}
    data["scenarios"]["starts"] = ["2023-07-06T06:00:00Z"]
    data["scenarios"]["window_days"] = days
    data["scenarios"]["stresses"] = data["scenarios"]["stresses"][: scenarios - 1]
    path = folder / f"bench-plan-{sizes}x{scenarios}-{days:g}d.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CPU_S: list[float] = []


@ray.remote
def _cell_cpu(plan: Plan, cell: Cell) -> tuple[CellResult, float]:
    t0 = time.process_time()
    out = run_cell(plan, cell)
    return out, time.process_time() - t0


def cpu_counted_cells(
    plan: Plan, cells: Sequence[Cell], progress: CellProgress | None = None
) -> list[CellResult]:
    """The same cells as `ray_map_cells`, also counting each task's CPU seconds: on a
    machine other work keeps busy, CPU seconds / workers is the time on idle cores."""
    shared = ray.put(plan)
    out = ray.get([_cell_cpu.remote(shared, c) for c in cells])
    CPU_S.extend(cpu for _, cpu in out)
    return [r for r, _ in out]


def timed(plan: Plan, cpus: int, warm: Plan | None = None) -> float:
    """Seconds for `plan` on `cpus` Ray workers; `warm` runs first, untimed, so each worker
    has imported hashpivot and loaded its compiled kernels (Ray reuses the workers)."""
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        if warm is not None:
            run_plan(warm, map_cells=ray_map_cells)
        # Other work on the machine shows in wall time: say how busy it was.
        print(f"  load average before a {cpus}-worker run: {os.getloadavg()[0]:.1f}", flush=True)
        CPU_S.clear()
        t0 = time.perf_counter()
        run_plan(plan, map_cells=cpu_counted_cells)
        return time.perf_counter() - t0
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=20)
    parser.add_argument("--scenarios", type=int, default=5)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--scaling-cells", type=int, default=4, help="Sizes in the speed-up run.")
    parser.add_argument("--scaling-days", type=int, default=60)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--folder", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cores = os.cpu_count() or 1

    small = load_plan(bench_plan(args.folder, args.scaling_cells, args.scaling_days, 1))
    warm = load_plan(bench_plan(args.folder, 2 * cores, 1, 1))
    one = timed(small, 1, warm)
    one_cpu = sum(CPU_S)
    many = timed(small, cores, warm)
    many_cpu = sum(CPU_S)
    print(f"  CPU s in the cells: {one_cpu:.1f} on 1 worker, {many_cpu:.1f} on {cores}")
    print(f"{'cells':>6} {'days':>5} {'1 worker s':>11} {f'{cores} workers s':>12} {'speedup':>8}")
    n_small = len(grid(small))
    print(f"{n_small:>6} {args.scaling_days:>5g} {one:>11.1f} {many:>12.1f} {one / many:>7.2f}x")
    ideal = min(cores, n_small)
    record(f"plan speed-up, {n_small} cells", f"{one / many:.2f}x on {cores} workers",
           f">= {0.8 * ideal:.1f}x", one / many >= 0.8 * ideal)
    if args.skip_full:
        return
    full = load_plan(bench_plan(args.folder, args.sizes, args.days, args.scenarios))
    cells = len(grid(full))
    t = timed(full, cores)
    steps = int(args.days * 24)
    cpu = sum(CPU_S)
    print(f"full plan: {args.sizes} sizes × {args.scenarios} scenarios = {cells} cells, "
          f"{steps:,} hourly steps each, 5,000 nodes at size 0: {t:.0f} s on {cores} workers "
          f"({t / cells:.1f} s per cell); the cells used {cpu:.0f} CPU s "
          f"({cpu / cells:.1f} per cell): {cpu / cores:.0f} s on {cores} idle cores")
    record(f"plan, {cells} cells, CPU s / {cores} cores", f"{cpu / cores:.0f} s",
           f"<= {TARGET_S:.0f} s", cpu / cores <= TARGET_S)
    record(f"plan, {cells} cells × {args.days:g} days, 5k nodes", f"{t:.0f} s on {cores} workers",
           f"<= {TARGET_S:.0f} s", t <= TARGET_S)


if __name__ == "__main__":
    main()
