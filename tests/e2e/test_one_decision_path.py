"""One decision path for every mode, through the product's entry points.

`hashpivot run --mode dry-run` and `hashpivot backtest` are started as subprocesses on the
same config file and period; they must make the same plans and the same ledger, obey the
same guards, and a journal replay of the dry-run must decide every cycle the same way.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.runtime.journal import read_journal

EXAMPLES = Path(__file__).parents[2] / "examples"
DAY_S = 86_400.0


def hashpivot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed CLI, as an operator runs it (wide output so tables are not cut)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    exe = Path(sys.executable).parent / "hashpivot"
    return subprocess.run([str(exe), *args], cwd=cwd,
                          capture_output=True, text=True, env=env, check=False)


def site_file(tmp_path: Path, example: str, **overrides: Any) -> Path:
    """The example site with `overrides` merged in, written beside the test's files (bundled
    data paths are location-free, so the copy reads the same data)."""
    config = yaml.safe_load((EXAMPLES / example / "site.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / f"{example}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def dry_run(config: Path, tmp_path: Path, start: str, end: str) -> tuple[Path, str]:
    journal = tmp_path / "journal"
    out = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray",
                    "--metrics-port", "0", "--from", start, "--to", end, "--journal",
                    str(journal), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return journal, out.stdout


def backtest(config: Path, tmp_path: Path, start: str, end: str) -> dict[str, Any]:
    report = tmp_path / "report"
    out = hashpivot("backtest", "-c", str(config), "--no-baselines", "--no-ray",
                    "--from", start, "--to", end, "--report", str(report), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())
    return summary


def switch_times(journal: Path) -> dict[str, list[float]]:
    """When each node switched, from the journal's plans (every change of a small fleet)."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in read_journal(journal):
        assert len(record.changes) == int(record.plan.get("changes", 0))
        for change in record.changes:
            times[change.node].append(record.now_s)
    return times


def test_dry_run_keeps_the_per_node_switch_budget(tmp_path: Path) -> None:
    """With a budget of one switch per node per day, no node switches twice within 24 h:
    the budget is a decaying count, so a node that switched at t holds until its count
    has decayed below zero (never, at a budget of one) — stricter than "once a day"."""
    config = site_file(tmp_path, "gpu-only", policy={"name": "greedy", "params": {}},
                       guards={"max_switches_per_node_per_day": 1})
    journal, _ = dry_run(config, tmp_path, "2025-10-21T00:00:00Z", "2025-10-24T00:00:00Z")
    times = switch_times(journal)
    assert times, "the greedy policy switches nothing on this period: the test proves nothing"
    twice = {node: t for node, t in times.items()
             if any(b - a < DAY_S for a, b in itertools.pairwise(t))}
    assert not twice, f"nodes switched twice within 24 h: {twice}"
    held = sum(int(r.plan.get("guards", {}).get("GUARD_NODE_SWITCH_BUDGET", 0))
               for r in read_journal(journal))
    assert held > 0, "the greedy policy never ran into the budget: the test proves nothing"


def _run_table(stdout: str) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^\W*(simulated net USD|switches|SLA misses)\s*\W\s*([-\d,.$]+)", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("$", ""))


@pytest.mark.parametrize(
    ("example", "overrides", "start", "end"),
    [
        # Switch budgets bind: one switch per node per day, greedy wants more.
        ("gpu-only", {"policy": {"name": "greedy", "params": {}},
                      "guards": {"max_switches_per_node_per_day": 1}},
         "2025-10-21T00:00:00Z", "2025-10-24T00:00:00Z"),
        # The power cap binds: the hall's cap set below what the fleet draws mining, and
        # a policy that ignores it, so the cap guard curtails.
        ("mixed-site", {"policy": {"name": "greedy", "params": {}},
                        "sites": [{"name": "hall-a", "power_cap_kw": 3000,
                                   "tariff_adder_usd_mwh": 4.0, "pool_fee": 0.02,
                                   "ai_platform_fee": 0.10}]},
         "2024-08-01T00:00:00Z", "2024-08-03T00:00:00Z"),
    ],
    ids=["switch-budget", "power-cap"],
)
def test_dry_run_and_backtest_make_the_same_plans_and_ledger(
    tmp_path: Path, example: str, overrides: dict[str, Any], start: str, end: str
) -> None:
    config = site_file(tmp_path, example, **overrides)
    journal, stdout = dry_run(config, tmp_path, start, end)
    summary = backtest(config, tmp_path, start, end)
    (_name, totals), = summary["policies"].items()
    records = list(read_journal(journal))
    assert len(records) == summary["period"]["steps"]
    # The same plans: the dry-run journal's changes add up to the backtest's switches,
    # and its printed ledger equals the backtest's totals.
    journaled = sum(int(r.plan["changes"]) for r in records)
    assert journaled == totals["switches"]
    run = _run_table(stdout)
    assert _number(run["switches"]) == totals["switches"]
    assert _number(run["SLA misses"]) == totals["sla_misses"]
    assert _number(run["simulated net USD"]) == pytest.approx(totals["net_usd"], abs=1.0)
    guards = defaultdict(int)
    for r in records:
        for reason, count in r.plan.get("guards", {}).items():
            guards[reason] += int(count)
    binding = ("GUARD_NODE_SWITCH_BUDGET" if example == "gpu-only"
               else "GUARD_POWER_CAP_CURTAILED")
    assert guards[binding] > 0, f"{binding} never engaged: {dict(guards)}"
    caps = [s["power_cap_kw"] for s in yaml.safe_load(config.read_text())["sites"]]
    for r in records:
        assert all(p <= c + 1e-6 for p, c in zip(r.plan["site_power_kw"], caps, strict=True))

    # A journal replay of the dry-run decides every cycle as it was decided.
    out = hashpivot("backtest", "-c", str(config), "--journal", str(journal), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    n = len(records)
    assert f"{n:,} ({100}%)" in out.stdout, out.stdout


def _switched_twice_within_a_day(journal: Path) -> dict[str, list[float]]:
    return {node: t for node, t in switch_times(journal).items()
            if any(b - a < DAY_S for a, b in itertools.pairwise(t))}


def _cycles_in(journal: Path) -> int:
    path = journal / "journal.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"kind":"cycle"' in line)


@pytest.mark.parametrize("keep_memory", [True, False], ids=["restarted", "memory-lost"])
def test_a_restarted_controller_keeps_the_per_node_switch_budget(
    tmp_path: Path, keep_memory: bool
) -> None:
    """Stopped mid-day, then killed (SIGKILL) mid-run, then run to the end: across the
    three processes no node switches twice within 24 h at a budget of one a day. The
    dry-run without Ray starts its simulated site afresh each time (nodes back in their
    configured modes), so the policy wants the same switches again and only the budget,
    read back after each restart, holds them. With the memory file deleted before each
    restart the same runs switch nodes twice: the check can fail."""
    config = site_file(tmp_path, "gpu-only", policy={"name": "greedy", "params": {}},
                       guards={"max_switches_per_node_per_day": 1})
    journal = tmp_path / "journal"
    common = ["run", "-c", str(config), "--mode", "dry-run", "--no-ray", "--metrics-port", "0",
              "--journal",
              str(journal), "--from", "2025-10-21T00:00:00Z", "--to", "2025-10-24T00:00:00Z"]

    def forget() -> None:
        if not keep_memory:
            (journal / "step-memory.npz").unlink(missing_ok=True)

    first = hashpivot(*common, "--cycles", "30", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _cycles_in(journal) == 30
    forget()
    exe = Path(sys.executable).parent / "hashpivot"
    proc = subprocess.Popen([str(exe), *common], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and _cycles_in(journal) < 40:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    forget()
    last = hashpivot(*common, cwd=tmp_path)
    assert last.returncode == 0, last.stderr[-3000:]
    records = list(read_journal(journal))
    assert len(records) == 72 and len({r.now_s for r in records}) == 72
    twice = _switched_twice_within_a_day(journal)
    if keep_memory:
        assert not twice, f"nodes switched twice within 24 h across restarts: {twice}"
    else:
        assert twice, "without the memory the budget restarts: the runs should show it"
