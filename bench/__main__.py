"""Run every hashpivot benchmark and print its figures: `python -m bench`.

Each benchmark prints its own table, then a summary lists every figure against its
target (issue 8).
"""

from __future__ import annotations

import importlib
import sys

from bench.summary import print_table

BENCHES = ["bench_decision", "bench_backtest", "bench_sweep", "bench_telemetry", "bench_asic",
           "bench_k8s", "bench_data", "bench_kueue", "bench_operator", "bench_startup",
           "bench_contracts", "bench_grid", "bench_oracle_contract"]


def main() -> None:
    for name in BENCHES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"\n== {name}: not available ({exc})")
            continue
        print(f"\n== {name}: {(module.__doc__ or '').splitlines()[0]}", flush=True)
        sys.argv = [name]
        try:
            module.main()
        except SystemExit as exc:  # a benchmark that cannot run here says why and exits
            print(f"== {name}: stopped ({exc.code})")
    print_table()


if __name__ == "__main__":
    main()
