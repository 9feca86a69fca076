"""A mining hall without Kubernetes, run as an operator runs it: `hashpivot run` as a
subprocess against emulated miners on loopback (stock Antminer, LuxOS, VNish) answering
unmodified pyasic, with live feeds from a local server whose power price spikes.

- live: the miners are curtailed when power costs $150/MWh and resumed when it falls;
  every miner appears in the journal's fleet;
- shadow: the same site reads and plans the curtailment, and not one command reaches a
  miner (counted at the emulators).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.runtime.journal import StepMemoryStore, read_journal
from tests.contract.feedserver import FeedServer, Reply
from tests.contract.fixtures.miners.emulator import EmulatedMiner, MinerLab
from tests.contract.test_asic_pyasic import _can_bind_port_80

pytestmark = pytest.mark.skipif(
    not _can_bind_port_80(),
    reason="needs loopback addresses beyond 127.0.0.1 and port 80 (root on Linux)",
)

FAMILIES = ("antminer", "luxos", "vnish")
CALM_USD_MWH = 20.0
SPIKE_USD_MWH = 150.0


def is_command(seen: str) -> bool:
    """A request that changes a miner (not a read): what shadow must never send."""
    return any(word in seen for word in (
        "rpc curtail", "rpc profileset", "set_miner_conf", "/mining/", "rpc ascset",
        "rpc pause", "rpc resume", "rpc restart", "rpc reboot",
    ))


def set_power(server: FeedServer, usd_mwh: float) -> None:
    server.route("/power", Reply(body=json.dumps({"price": usd_mwh}).encode()))


def live_market_config(feeds: FeedServer) -> dict[str, Any]:
    """The `live_market` section reading chain, price and power from the feed server."""
    return {
        "http": {"timeout_s": 2.0, "retries": 0, "allow_loopback_http": True},
        "chain_sources": [{"kind": "blockchain_info", "base_url": f"{feeds.base}/bci"}],
        "price_sources": [{"kind": "coinbase", "base_url": f"{feeds.base}/coinbase"}],
        "power_sources": {"default": {"kind": "http_json", "url": f"{feeds.base}/power",
                                      "value_path": "price"}},
        "poll_interval_s": 0.0,
    }


def site_config(tmp_path: Path, miners: list[EmulatedMiner], feeds: FeedServer,
                mode: str) -> Path:
    config: dict[str, Any] = {
        "sites": [{"name": "hall", "pool_fee": 0.02}],
        "asic": {
            "ranges": [{"addresses": [m.ip for m in miners], "site": "hall"}],
            "io": {"timeout_s": 2.0, "retries": 1, "read_timeout_s": 20},
            # Two miners per 2 s window: the hall ramps in steps, never all at once.
            "ramp": {"max_miners_per_window": 2, "window_s": 2, "step_s": 0.5},
            "verify_after_s": 30,
            "use_ray": False,
        },
        "live_market": live_market_config(feeds),
        "policy": {"name": "greedy"},
        # Every miner curtails and resumes within the hour: twice the fleet per hour.
        "guards": {"min_dwell_s": 0, "max_fleet_switch_share_per_hour": 2.0,
                   "max_switches_per_node_per_day": 24},
        "controller": {"mode": mode, "interval_s": 1.0},
    }
    path = tmp_path / f"hall-{mode}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class Controller:
    """`hashpivot run` in its own process; the journal is how the test follows it."""

    def __init__(self, config: Path, journal: Path, mode: str, cwd: Path,
                 kubeconfig: str | None = None, metrics_port: int = 0) -> None:
        exe = Path(sys.executable).parent / "hashpivot"
        extra = [] if kubeconfig is None else ["--kubeconfig", kubeconfig]
        self.journal = journal
        self.log = (cwd / f"run-{mode}.log").open("w")
        env = {**os.environ, "COLUMNS": "200"}
        self.proc = subprocess.Popen(
            [str(exe), "run", "-c", str(config), "--mode", mode, "--no-ray",
             "--journal", str(journal), "--metrics-port", str(metrics_port), *extra],
            cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def cycles(self) -> int:
        path = self.journal / "journal.jsonl"
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text().splitlines() if '"kind":"cycle"' in line)

    def wait_cycles(self, more: int, until: Callable[[], bool] = lambda: False) -> int:
        """Let `more` cycles pass (or stop early once `until` holds); returns cycles seen.
        Bounded by decisions, not by time: a controller that stopped fails the test."""
        target = self.cycles() + more
        while self.cycles() < target and not until():
            assert self.proc.poll() is None, self.output()
            time.sleep(0.05)
        return self.cycles()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def test_asic_only_site_curtails_on_a_price_spike_and_resumes(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    miners = [lab.add(f) for f in FAMILIES for _ in range(2)]
    config = site_config(tmp_path, miners, feeds, "live")
    run = Controller(config, tmp_path / "journal", "live", tmp_path)
    try:
        run.wait_cycles(3)
        assert all(m.mining for m in miners), "calm power: every miner keeps hashing"
        set_power(feeds, SPIKE_USD_MWH)
        run.wait_cycles(30, until=lambda: not any(m.mining for m in miners))
        assert not any(m.mining for m in miners), run.output()
        spike_records = list(read_journal(tmp_path / "journal"))
        set_power(feeds, CALM_USD_MWH)
        run.wait_cycles(30, until=lambda: all(m.mining for m in miners))
        assert all(m.mining for m in miners), run.output()
        run.wait_cycles(2)  # the cycle after the last resume hears of it
    finally:
        run.stop()
    records = list(read_journal(tmp_path / "journal"))
    # Every miner is a row of the fleet the controller decided on.
    decided = [r for r in records if r.fleet_columns is not None]
    assert decided and set(decided[-1].fleet_columns.names) == {m.ip for m in miners}
    # The curtailment was decided on the spike and says so; the resume on the calm.
    idled = {c.node for r in spike_records for c in r.changes if c.target == "idle"}
    assert idled == {m.ip for m in miners}
    resumed = {c.node for r in records[len(spike_records):] for c in r.changes
               if c.target == "mine"}
    assert resumed == {m.ip for m in miners}
    for miner in miners:  # each firmware got its own kind of command
        assert any(is_command(s) for s in miner.seen), (miner.family, miner.seen[-10:])
    # Two miners per window: some began switching on the site's own ramp between cycles.
    # Each curtailment and each resume still counts against the miner's switch budget (a
    # command sent again counts again: a budget spent twice, never a switch uncounted).
    memory = StepMemoryStore(tmp_path / "journal").load()
    assert memory is not None
    load = dict(zip(memory.switch_nodes, memory.switch_load.tolist(), strict=True))
    uncounted = {m.ip: load.get(m.ip, 0.0) for m in miners if load.get(m.ip, 0.0) < 1.99}
    assert not uncounted, uncounted
    later = {n for r in records if r.actuation for n in r.actuation.get("began_earlier", {})}
    assert later, "the ramp began no switch between cycles: the test proves nothing"


def test_shadow_reads_and_plans_but_commands_no_miner(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    miners = [lab.add(f) for f in FAMILIES for _ in range(2)]
    set_power(feeds, SPIKE_USD_MWH)
    config = site_config(tmp_path, miners, feeds, "shadow")
    run = Controller(config, tmp_path / "journal", "shadow", tmp_path)
    try:
        run.wait_cycles(6)
    finally:
        run.stop()
    records = list(read_journal(tmp_path / "journal"))
    planned = {c.node for r in records for c in r.changes if c.target == "idle"}
    assert planned == {m.ip for m in miners}, "shadow plans the curtailment it would make"
    shadow_notes = {k: v for r in records for k, v in r.actuation.get("deferred", {}).items()}
    assert set(shadow_notes) == {m.ip for m in miners}
    assert all(v == "shadow: would curtail" for v in shadow_notes.values())
    commands = {m.ip: [s for s in m.seen if is_command(s)] for m in miners}
    assert all(not c for c in commands.values()), commands
    assert all(m.mining for m in miners)
    assert all(m.seen for m in miners), "every miner was read"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreadable_miner_stays_counted_is_not_commanded_and_is_reported(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    """A miner that starts answering garbage mid-run stays a row of the fleet (its draw
    still counts against the cap), gets no command it could not receive, and is named in
    the journal and counted in the metrics; its neighbour is curtailed as usual."""
    import urllib.request

    good, bad = lab.add("antminer"), lab.add("luxos")
    config = site_config(tmp_path, [good, bad], feeds, "live")
    port = _free_port()
    run = Controller(config, tmp_path / "journal", "live", tmp_path, metrics_port=port)
    try:
        run.wait_cycles(3)
        bad.garbage = True
        seen_before = len(bad.seen)
        set_power(feeds, SPIKE_USD_MWH)
        run.wait_cycles(30, until=lambda: not good.mining)
        run.wait_cycles(3)
        assert not good.mining, run.output()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        run.stop()
    assert 'hashpivot_asic_miners{state="unreadable"} 1.0' in metrics
    assert 'hashpivot_asic_miners{state="curtailed"} 1.0' in metrics
    records = list(read_journal(tmp_path / "journal"))
    last = [r for r in records if r.fleet_columns is not None][-1]
    assert bad.ip in last.fleet_columns.names, "the unreadable miner is still in the fleet"
    notes = {k: v for r in records for k, v in r.actuation.get("notes", {}).items()}
    assert bad.ip in notes and notes[bad.ip].startswith("unreadable")
    assert not any(is_command(s) for s in bad.seen[seen_before:]), bad.seen[seen_before:]
    assert "miner(s) unreadable" in (tmp_path / "run-live.log").read_text()


def test_a_miners_only_hall_run_without_ray_never_imports_ray(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    """`hashpivot run --no-ray` on a hall of miners (in-process site loop): Ray is never
    loaded, not even by the ASIC adapter (its Ray actor lives in a module of its own)."""
    miners = [lab.add("antminer")]
    config = yaml.safe_load(site_config(tmp_path, miners, feeds, "shadow").read_text())
    config["asic"]["use_ray"] = False
    path = tmp_path / "hall-no-ray.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    exe = Path(sys.executable).parent / "hashpivot"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(exe), "run", "-c", str(path), "--mode",
         "shadow", "--no-ray", "--cycles", "2", "--journal", str(tmp_path / "journal"),
         "--metrics-port", "0"],
        capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = {m.group(1) for m in re.finditer(
        r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", proc.stderr, re.MULTILINE)}
    # The listing is read right: the miners were read through the ASIC adapter.
    assert "orchestrator.adapters.asic.service" in modules
    decided = [r for r in read_journal(tmp_path / "journal") if r.fleet_columns is not None]
    assert decided and miners[0].ip in decided[-1].fleet_columns.names
    assert not any(m == "ray" or m.startswith("ray.") for m in modules)


def test_protected_and_opted_out_miners_keep_hashing_through_a_spike(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    """docs/asic.md: opt-out miners are never commanded, protected miners are never
    curtailed while they hash; both are held by the opt-out guard. On a price spike the
    other miners are curtailed, these two keep hashing and receive no command."""
    protected, opted_out, *others = [lab.add(f) for f in ("antminer", "luxos", "vnish",
                                                           "antminer")]
    config = site_config(tmp_path, [protected, opted_out, *others], feeds, "live")
    site = yaml.safe_load(config.read_text())
    site["asic"]["protected"] = [protected.ip]
    site["asic"]["opt_out"] = [opted_out.ip]
    config.write_text(yaml.safe_dump(site), encoding="utf-8")
    run = Controller(config, tmp_path / "journal", "live", tmp_path)
    try:
        run.wait_cycles(3)
        set_power(feeds, SPIKE_USD_MWH)
        run.wait_cycles(30, until=lambda: not any(m.mining for m in others))
        run.wait_cycles(3)
    finally:
        run.stop()
    assert not any(m.mining for m in others), run.output()
    assert protected.mining and opted_out.mining
    for miner in (protected, opted_out):
        assert not any(is_command(s) for s in miner.seen), (miner.family, miner.seen[-10:])
    records = list(read_journal(tmp_path / "journal"))
    changed = {c.node for r in records for c in r.changes}
    assert changed == {m.ip for m in others}
    # Greedy would curtail all four on the spike: the guard held the two it may not.
    assert records[-1].plan["guards"].get("GUARD_OPT_OUT") == 2
