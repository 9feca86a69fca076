"""Telemetry tick overhead for 1,000 simulated GPU nodes over a local Ray (issue 8).

Three ways to gather the same metrics from the same agents, timed per tick:

- one remote call per node per metric (what batching avoids),
- one remote call per node (one agent per node would make exactly these calls),
- one remote call per host agent: `TelemetryCollector`, every metric of every node it
  hosts in one call.

Plus the driver-side cost of folding a tick into the fleet table (`apply_telemetry`).
Agents run the fake NVML (8 GPUs per node), so the figures are Ray and Python overhead,
not NVML latency (a real nvmlDeviceGetPowerUsage takes tens of µs).

Run from the repo root: `python -m bench.bench_telemetry [--nodes 1000 --agents 10]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import ray

from bench.summary import record
from orchestrator.adapters.telemetry import apply_telemetry
from orchestrator.adapters.telemetry.agent import (
    AgentRef,
    TelemetryAgentImpl,
    TelemetryCollector,
)
from orchestrator.models import FleetTable, Mode, Site, builtin_catalog
from tests.doubles.nvml import FakeNodes

# The port methods a per-metric poller would call, one remote call each.
METRICS = (
    "power_usage_mw",
    "enforced_power_limit_mw",
    "power_limit_constraints_mw",
    "utilization_pct",
    "memory_bytes",
    "temperature_c",
    "clocks_mhz",
)


@ray.remote(num_cpus=0)
class MetricAgent(TelemetryAgentImpl):
    """A telemetry agent that also answers one metric of one node (the unbatched way)."""

    def metric(self, node: str, name: str) -> list[Any]:
        nvml = self.samplers[node].nvml
        read = getattr(nvml, name)
        return [read(nvml.handle(i)) for i in range(nvml.device_count())]


def timed(tick: Callable[[], object], ticks: int) -> float:
    """Median wall time of `ticks` ticks after one warm-up, s."""
    tick()
    times = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        tick()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=10, help="host agents (processes)")
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--skip-per-metric", action="store_true", help="skip the slowest strategy")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        run(args)
    finally:
        ray.shutdown()


def run(args: argparse.Namespace) -> None:
    names = [f"gpu-{i:05d}" for i in range(args.nodes)]
    per_agent = -(-args.nodes // args.agents)
    factory = FakeNodes()
    t0 = time.perf_counter()
    chunks = [names[i : i + per_agent] for i in range(0, len(names), per_agent)]
    actors = [MetricAgent.remote(c, factory) for c in chunks]
    ray.get([a.sample_all.remote() for a in actors])  # up, NVML sessions open
    spawn_s = time.perf_counter() - t0
    agents = [AgentRef(a, tuple(c)) for a, c in zip(actors, chunks, strict=True)]
    host_of = {n: a for a, c in zip(actors, chunks, strict=True) for n in c}
    collector = TelemetryCollector(agents, timeout_s=120.0)

    def per_node_per_metric() -> None:
        ray.get([host_of[n].metric.remote(n, m) for n in names for m in METRICS])

    def per_node() -> None:
        ray.get([host_of[n].sample.remote(n) for n in names])

    def per_agent_batched() -> None:
        tick = collector.collect()
        assert tick.unreachable == 0 and len(tick.samples) == args.nodes

    rows: list[tuple[str, int, float]] = []
    if not args.skip_per_metric:
        rows.append(
            (
                "one call per node per metric",
                args.nodes * len(METRICS),
                timed(per_node_per_metric, max(args.ticks // 2, 1)),
            )
        )
    rows.append(("one call per node", args.nodes, timed(per_node, args.ticks)))
    batched = timed(per_agent_batched, args.ticks)
    rows.append(("one call per host agent (batched)", len(agents), batched))

    # The sampling work itself, in one process: what any strategy pays before overhead.
    local = TelemetryAgentImpl(names, factory)
    in_process = timed(local.sample_all, args.ticks)

    samples = collector.collect().samples
    fleet = FleetTable.build(
        [builtin_catalog()["h100-sxm-8x"]],
        [Site()],
        [0] * args.nodes,
        names=names,
        modes=[Mode.MINE] * args.nodes,
    )
    apply_s = timed(lambda: apply_telemetry(fleet, samples), args.ticks)

    print(
        f"telemetry tick: {args.nodes:,} nodes × 8 GPUs × {len(METRICS)} metrics, "
        f"{len(agents)} host agents ({per_agent} nodes each), local Ray on {args.cpus} CPUs"
    )
    load = os.getloadavg()[0]
    print(
        f"agents up with NVML open in {spawn_s:.1f} s; median of {args.ticks} ticks; "
        f"load average {load:.1f}\n"
    )
    header = f"{'strategy':<36}{'calls/tick':>11}{'tick ms':>10}{'µs/node':>9}{'vs batched':>12}"
    print(header)
    print("-" * len(header))
    for label, calls, secs in rows:
        print(
            f"{label:<36}{calls:>11,}{secs * 1e3:>10.1f}{secs / args.nodes * 1e6:>9.0f}"
            f"{secs / batched:>11.1f}×"
        )
    print(
        f"{'sampling alone, one process, no Ray':<36}{0:>11}{in_process * 1e3:>10.1f}"
        f"{in_process / args.nodes * 1e6:>9.0f}{in_process / batched:>11.1f}×"
    )
    slowest = max(secs for _, _, secs in rows)
    record(f"telemetry tick, {args.nodes:,} nodes", f"{batched * 1e3:.0f} ms in {len(agents)} "
           f"calls ({slowest / batched:.1f}x faster than the slowest strategy)",
           "batched: fewer calls and faster", slowest > batched)
    print(
        f"{'apply_telemetry (driver, no Ray)':<36}{0:>11}{apply_s * 1e3:>10.1f}"
        f"{apply_s / args.nodes * 1e6:>9.1f}{'':>12}"
    )


if __name__ == "__main__":
    main()
