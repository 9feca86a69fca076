"""ASIC fan-out: reading and curtailing 10,000 miners at the configured concurrency.

Two kinds of simulated miner:

- `sim`: the in-process `SimulatedDriver`, each call an asyncio sleep of `--latency-ms`
  (a miner's API round trip). Measures the adapter's own machinery: semaphore,
  timeouts, retries, verification, the ramp planner and the fleet rows.
- `pyasic`: real pyasic over real TCP sockets to a local LuxOS replay server (the
  contract-test fixture, in its own process), so parsing, connection setup and pyasic's
  own overhead count. Every miner is a distinct configured address served by one
  loopback listener.

Ramp limits are lifted for the curtail pass so the figure is the I/O, not the budget.
Figures depend on the machine (2 cores here); they are not asserted anywhere.

    python -m bench.bench_asic [--miners 10000] [--concurrency 256] [--latency-ms 50]
                               [--pyasic-miners 10000] [--skip-pyasic]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.summary import record
from orchestrator.adapters.asic.driver import PyasicDriver
from orchestrator.adapters.asic.fleet import asic_fleet
from orchestrator.adapters.asic.ramp import plan_ramp_step
from orchestrator.adapters.asic.site import AsicSite, MinerTarget
from orchestrator.models import Site, builtin_catalog
from orchestrator.models.asic_config import AsicConfig, AsicRange
from tests.doubles.asic import SimulatedDriver, sim_miner

FIXTURE = (Path(__file__).resolve().parent.parent / "tests" / "contract" / "fixtures"
           / "miners" / "luxos_s19xp.json")


def _addresses(n: int) -> list[str]:
    return [f"10.{64 + k // 65536}.{(k // 256) % 256}.{k % 256}" for k in range(n)]


def _config(addresses: list[str], concurrency: int, **range_extra: Any) -> AsicConfig:
    return AsicConfig.model_validate({
        "ranges": [{"addresses": addresses, "site": "site", **range_extra}],
        "io": {"concurrency": concurrency, "timeout_s": 30.0, "retries": 0},
        "ramp": {"max_kw_per_window": None, "max_miners_per_window": None},
    })


async def _passes(site: AsicSite) -> dict[str, float]:
    out: dict[str, float] = {}
    t = time.perf_counter()
    statuses = await site.refresh()  # first pass: discovery + read
    out["discover+read"] = time.perf_counter() - t
    t = time.perf_counter()
    statuses = await site.refresh()
    out["read"] = time.perf_counter() - t
    t = time.perf_counter()
    view = asic_fleet(statuses, [Site(name="site")], builtin_catalog())
    out["fleet rows"] = time.perf_counter() - t
    targets = {st.reading.address: MinerTarget(mine=False, priority=float(k), delta_w=3000.0)
               for k, st in enumerate(statuses)}
    site.set_targets(targets)
    t = time.perf_counter()
    report = await site.step()
    out["curtail"] = time.perf_counter() - t
    out["_curtailed"] = float(len(report.curtailed))
    out["_failed"] = float(len(report.failed))
    out["_rows"] = float(view.fleet.n)
    return out


def bench_sim(n: int, concurrency: int, latency_ms: float) -> dict[str, float]:
    addresses = _addresses(n)
    miners = [sim_miner(a, "s19-xp") for a in addresses]
    driver = SimulatedDriver(miners, latency_s=latency_ms / 1000.0)
    site = AsicSite(_config(addresses, concurrency), ["site"], driver)
    return asyncio.run(_passes(site))


class _BenchDriver(PyasicDriver):
    """pyasic LuxOS miners whose API lives at one local port (the replay server)."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    async def connect(self, address: str, spec: AsicRange) -> Any:
        local = spec.model_copy(update={"rpc_port": self.port})
        return await super().connect("127.0.0.1", local)


async def _replay_server(port_out: Any) -> None:
    """A LuxOS cgminer-API replay on 127.0.0.1 (answers every miner alike)."""
    rpc: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))["rpc"]
    state = {"sleeping": False}

    def one(cmd: str, parameter: str) -> Any:
        if cmd == "curtail":
            state["sleeping"] = parameter.endswith("sleep")
        key = f"{cmd}@sleeping" if state["sleeping"] and f"{cmd}@sleeping" in rpc else cmd
        return rpc.get(key, {"STATUS": [{"STATUS": "E", "Msg": "Invalid command"}]})

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(4096):
                buf += chunk
                try:
                    req = json.loads(buf)
                    break
                except ValueError:
                    continue
            else:
                writer.close()
                return
            cmds = str(req.get("command", "")).split("+")
            param = str(req.get("parameter", ""))
            if len(cmds) == 1:
                body: Any = one(cmds[0], param)
            else:
                body = {c: [one(c, param)] for c in cmds}
            writer.write(json.dumps(body).encode() + b"\x00")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port_out.put(int(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


def _serve(port_out: Any) -> None:
    asyncio.run(_replay_server(port_out))


def bench_pyasic(n: int, concurrency: int) -> dict[str, float]:
    # The replay runs in its own process: miners do not share the controller's CPU.
    ctx = multiprocessing.get_context("spawn")
    port_out = ctx.Queue()
    server = ctx.Process(target=_serve, args=(port_out,), daemon=True)
    server.start()
    try:
        port = int(port_out.get(timeout=60))
        addresses = _addresses(n)
        config = _config(addresses, concurrency, firmware="luxos", model="Antminer S19 XP")
        site = AsicSite(config, ["site"], _BenchDriver(port))
        return asyncio.run(_passes(site))
    finally:
        server.terminate()
        server.join(timeout=30)


def bench_planner(n: int) -> float:
    rng = np.random.default_rng(3)
    args = {
        "mining": rng.random(n) < 0.7, "want_mining": rng.random(n) < 0.5,
        "movable": np.ones(n, dtype=bool), "delta_w": rng.uniform(1000, 3500, n),
        "priority": rng.normal(size=n), "site": rng.integers(0, 4, n).astype(np.int32),
        "budget_w": np.full(4, 500e3), "budget_miners": np.full(4, 200.0),
        "headroom_w": np.full(4, 1e6),
    }
    times = []
    for _ in range(7):
        t = time.perf_counter()
        plan_ramp_step(**args)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=AsicConfig().io.concurrency)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--pyasic-miners", type=int, default=10_000)
    parser.add_argument("--skip-pyasic", action="store_true")
    args = parser.parse_args()

    rows = [("sim", args.miners, bench_sim(args.miners, args.concurrency, args.latency_ms))]
    if not args.skip_pyasic:
        rows.append(("pyasic/TCP", args.pyasic_miners,
                     bench_pyasic(args.pyasic_miners, args.concurrency)))
    print(f"concurrency {args.concurrency} per site actor; sim latency {args.latency_ms:g} ms "
          f"per call; ramp limits lifted for the curtail pass")
    header = (f"{'driver':<11}{'miners':>8}{'discover+read s':>17}{'read s':>9}"
              f"{'fleet rows s':>14}{'curtail s':>11}{'curtailed':>11}{'failed':>8}")
    print(header)
    print("-" * len(header))
    for name, n, r in rows:
        print(f"{name:<11}{n:>8}{r['discover+read']:>17.2f}{r['read']:>9.2f}"
              f"{r['fleet rows']:>14.3f}{r['curtail']:>11.2f}{int(r['_curtailed']):>11}"
              f"{int(r['_failed']):>8}")
    for name, n, r in rows:
        record(f"ASIC {name}, {n:,} miners",
               f"read {r['read']:.1f} s, curtail {r['curtail']:.1f} s")
    print(f"ramp planner, {args.miners} miners: {bench_planner(args.miners) * 1e3:.2f} ms "
          f"per step (median of 7)")


if __name__ == "__main__":
    main()
