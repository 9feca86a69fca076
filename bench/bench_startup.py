"""Controller start-up: time to the first decision of a fresh process with an empty
compiled-kernel cache (a restarted pod without one) and with the cache `hashpivot
warm-cache` fills (the image's, or a cache volume's); the copy a read-only image cache
costs; and the import time `hashpivot run --no-ray` saves by not loading Ray.

Each start is a new `hashpivot run --no-ray --mode dry-run --cycles 1` process on the
West Texas example (bundled data, 1,024 nodes, one day), timed from its launch to its
first decision's log line.

    python -m bench.bench_startup [--config examples/west-texas/site.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.summary import record

REPO = Path(__file__).resolve().parents[1]
#: "A restarted controller decides within a few seconds" (issue 18), taken as 5 s.
TARGET_S = 5.0


def hashpivot() -> str:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("the hashpivot console script is not installed (pip install -e .)")
    return exe


def first_decision_s(config: Path, cache: Path, journal: Path) -> float:
    """Seconds from launching the controller to its first decision's log line."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    began = time.perf_counter()
    proc = subprocess.Popen(
        [hashpivot(), "run", "-c", str(config), "--mode", "dry-run", "--no-ray",
         "--cycles", "1", "--from", "2024-05-01T00:00:00Z", "--to", "2024-05-02T00:00:00Z",
         "--journal", str(journal)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen = None
    for line in proc.stderr:
        if seen is None and "hashpivot.controller: cycle" in line:
            seen = time.perf_counter() - began
    if proc.wait() != 0 or seen is None:
        raise SystemExit(f"the controller did not decide (exit {proc.returncode})")
    return seen


def import_s(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples/west-texas/site.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hashpivot-bench-startup-") as tmp:
        folder = Path(tmp)
        cold = [first_decision_s(args.config, folder / f"cold-{i}", folder / f"j-cold-{i}")
                for i in range(args.repeats)]
        warm_dir = folder / "warm"
        began = time.perf_counter()
        subprocess.run([hashpivot(), "warm-cache", "--cache-dir", str(warm_dir)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        warm_cache_s = time.perf_counter() - began
        warm = [first_decision_s(args.config, warm_dir, folder / f"j-warm-{i}")
                for i in range(args.repeats)]
        # What a pod with a read-only image cache adds: the copy to its own folder.
        from orchestrator.framework.jit import _copy_cache

        files = [p for p in warm_dir.rglob("*") if p.is_file()]
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        copies = []
        for i in range(args.repeats):
            began = time.perf_counter()
            _copy_cache(warm_dir, folder / f"copy-{i}")
            copies.append(time.perf_counter() - began)
    controller = "import orchestrator.runtime.controller"
    no_ray = import_s(controller, args.repeats)
    with_ray = import_s(f"import ray; {controller}", args.repeats)
    cold_s, warm_s, copy_s = (statistics.median(x) for x in (cold, warm, copies))
    rows = [
        ("first decision, empty kernel cache", f"{cold_s:.1f} s"),
        ("first decision, after warm-cache", f"{warm_s:.1f} s"),
        ("hashpivot warm-cache into an empty folder", f"{warm_cache_s:.1f} s"),
        (f"copy of a read-only cache ({len(files)} files, {size_mb:.1f} MB)",
         f"{copy_s * 1000:.0f} ms"),
        ("import of the controller, --no-ray", f"{no_ray:.2f} s"),
        ("import of the controller with Ray loaded", f"{with_ray:.2f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'start-up (median of ' + str(args.repeats) + ')':<{width}}  time")
    for what, figure in rows:
        print(f"{what:<{width}}  {figure}")
    record("startup", f"first decision {warm_s:.1f} s warm vs {cold_s:.1f} s cold",
           f"<= {TARGET_S:.0f} s warm", warm_s <= TARGET_S)
    record("startup", f"--no-ray import {no_ray:.2f} s vs {with_ray:.2f} s with Ray")


if __name__ == "__main__":
    main()
