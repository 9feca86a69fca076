"""Loading recorded data: three years of hourly prices and a 1M-row job trace (≤ 1 s each).

Both files are written once into a temporary folder in the shapes a user brings:

- prices: a day-ahead style CSV, hourly for three years, with local wall-clock stamps
  (Europe/Berlin, so every clock change is crossed), a decimal comma, two areas
  interleaved and the newest row first; read with `sort`, `key`, `time_format` and an
  EUR → USD rate, as `RecordedMarketSource` reads a series;
- jobs: a cluster log with creation and deletion time stamps, CPU-only rows and GPU
  product names; read with `end_column`, `filter` and `gpu_models`.

Each figure is the fastest of `--repeat` loads (the first load also pays DuckDB's and
numpy's warm-up, printed apart), in wall time and in CPU time of all threads together;
on a shared machine the CPU time is the figure that does not depend on the neighbours.
Run from the repo root: `python -m bench.bench_data`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.summary import record
from orchestrator.backtest.jobs import read_trace
from orchestrator.backtest.recorded import read_series
from orchestrator.models.sources import JobTraceConfig, SeriesSource

TARGET_S = 1.0


def write_prices(path: Path, years: int) -> int:
    start = np.datetime64("2022-01-01T00:00")
    hours = np.arange(years * 8760, dtype=np.int64)
    utc = start + hours.astype("timedelta64[h]")
    # Wall-clock time in Berlin: +1 h in winter, +2 h from the last Sunday of March to
    # the last Sunday of October (01:00 UTC both), the rule since 1996.
    offsets = np.full(hours.shape, 1, dtype=np.int64)
    for year in range(2022, 2022 + years + 1):
        march = np.datetime64(f"{year}-03-31")
        october = np.datetime64(f"{year}-10-31")
        last_sun_mar = march - ((march.astype("datetime64[D]").view("int64") - 3) % 7)
        last_sun_oct = october - ((october.astype("datetime64[D]").view("int64") - 3) % 7)
        summer = (utc >= last_sun_mar + np.timedelta64(1, "h")) & (
            utc < last_sun_oct + np.timedelta64(1, "h")
        )
        offsets[summer] = 2
    local = utc + offsets.astype("timedelta64[h]")
    rng = np.random.default_rng(7)
    lines = ["Area;Start (local);Price [EUR/MWh]"]
    stamps = np.datetime_as_string(local, unit="m")
    for i in range(hours.shape[0] - 1, -1, -1):  # newest first
        day, clock = stamps[i].split("T")
        y, m, d = day.split("-")
        for area in ("DE-LU", "FR"):
            price = f"{60 + 40 * rng.random():.2f}".replace(".", ",")
            lines.append(f"{area};{d}.{m}.{y} {clock};{price}")
    path.write_text("\n".join(lines) + "\n")
    return int(hours.shape[0])


def write_jobs(path: Path, rows: int) -> int:
    rng = np.random.default_rng(11)
    created = np.datetime64("2024-01-01T00:00:00") + np.cumsum(
        rng.integers(1, 60, rows)
    ).astype("timedelta64[s]")
    deleted = created + rng.integers(60, 36_000, rows).astype("timedelta64[s]")
    gpus = rng.choice([0, 1, 2, 4, 8], rows)
    products = np.where(gpus == 0, "", "NVIDIA-H100-80GB-HBM3")
    c = np.datetime_as_string(created, unit="s")
    e = np.datetime_as_string(deleted, unit="s")
    with path.open("w") as handle:
        handle.write("job_id,created,deleted,gpu_request,gpu_product\n")
        for i in range(rows):
            handle.write(f"j{i},{c[i]}Z,{e[i]}Z,{gpus[i]},{products[i]}\n")
    return int(np.count_nonzero(gpus > 0))


def best_of(repeat: int, load: Callable[[], int]) -> tuple[float, float, float, int]:
    """First wall time, fastest wall time, CPU time of that fastest run (all threads), rows."""
    runs = []
    n = 0
    for _ in range(repeat + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        n = load()
        runs.append((time.perf_counter() - w0, time.process_time() - c0))
    best = min(runs[1:])
    return runs[0][0], best[0], best[1], n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hp-bench-data-") as folder:
        root = Path(folder)
        hours = write_prices(root / "dayahead.csv", args.years)
        kept = write_jobs(root / "jobs.csv", args.jobs)
        prices = SeriesSource(
            path="dayahead.csv", separator=";", decimal=",", time_column="Start (local)",
            time_format="%d.%m.%Y %H:%M", timezone="Europe/Berlin", sort=True,
            key_column="Area", key="DE-LU", value_column="Price [EUR/MWh]",
            unit="usd_per_mwh", currency="EUR", fx=1.08,
        )  # fmt: skip
        jobs = JobTraceConfig(
            path="jobs.csv", submit_column="created", end_column="deleted",
            gpus_column="gpu_request", interruptible_column=None, filter="gpu_request > 0",
            gpu_model_column="gpu_product",
            gpu_models={"NVIDIA-H100-80GB-HBM3": "H100_80GB_SXM5"},
        )  # fmt: skip

        def load_prices() -> int:
            series = read_series("power", prices, root)
            assert series.times_s.shape[0] == hours, (series.times_s.shape, hours)
            return int(series.times_s.shape[0])

        def load_jobs() -> int:
            submit, _, _, _ = read_trace(jobs, root)
            assert submit.shape[0] == kept
            return int(submit.shape[0])

        for label, load, size in (
            (f"{args.years} years of hourly prices ({hours:,} h, 2 areas)", load_prices, hours),
            (f"{args.jobs:,}-row job trace", load_jobs, args.jobs),
        ):
            first, best, cpu, n = best_of(args.repeat, load)
            met = best <= TARGET_S
            print(f"{label}: {best:.3f} s wall, {cpu:.3f} s CPU (fastest of {args.repeat}; "
                  f"first load {first:.3f} s), {n:,} rows kept of {size:,}; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
            record("bench_data", f"{label}: {best:.3f} s", f"<= {TARGET_S:.0f} s", met)


if __name__ == "__main__":
    main()
