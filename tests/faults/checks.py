"""The four invariants, checked from what a run leaves behind: the journal, the cluster's
node and pod history (`NodeHistory`), and the eviction calls made."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator.models import builtin_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.journal import CycleRecord
from orchestrator.models.modes import STEADY_STATES, mode_of_state
from orchestrator.runtime.journal import journal_files, read_journal
from tests.faults.ledger import HALF_SWITCHED, JOURNAL, LEASES, POWER_CAP, FaultRun

STEADY = frozenset({"IDLE", "MINING", "AI", None})


@dataclass
class JournalReport:
    records: list[CycleRecord]
    cycle_lines: int
    result_lines: int
    torn: list[str]


def read_lines(folder: Path) -> JournalReport:
    """Every line of the journal, in order; incomplete ones named in `torn`."""
    cycles = results = 0
    torn: list[str] = []
    last_cycle: str | None = None
    orphans: list[str] = []
    for path in journal_files(folder):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                torn.append(f"{path.name}:{i}")
                continue
            if obj.get("kind") == "result":
                results += 1
                if obj.get("decision_id") != last_cycle:
                    orphans.append(str(obj.get("decision_id")))
            else:
                cycles += 1
                last_cycle = obj.get("decision_id")
    if orphans:
        raise AssertionError(f"results without their plan before them: {orphans[:5]}")
    return JournalReport(list(read_journal(folder)), cycles, results, torn)


def check_journal(
    run: FaultRun,
    folder: Path,
    *,
    cycles: int | None = None,
    torn_allowed: int = 0,
    decisions_on_nodes: Iterable[str] = (),
    known: frozenset[str] = frozenset({"reconcile", "frozen", "setup"}),
) -> JournalReport:
    """Readable, in order, nothing lost: every cycle that ran is there with its result
    (`torn_allowed`: cycles a fault interrupted, whose line is torn or whose result is
    missing), and every decision a node carries was journaled before it was acted on."""
    try:
        report = read_lines(folder)
    except AssertionError as exc:
        run.check(JOURNAL, False, str(exc))
        raise
    problems = []
    if len(report.torn) > torn_allowed:
        problems.append(f"incomplete lines {report.torn} (at most {torn_allowed} expected)")
    if len(report.records) != report.cycle_lines:
        problems.append(f"{report.cycle_lines} cycle lines, {len(report.records)} readable")
    if cycles is not None and report.cycle_lines < cycles:
        problems.append(f"{cycles} cycles ran, {report.cycle_lines} journaled")
    # The cycle a fault interrupted may lack its result (or its line may be torn), no other.
    without = [r.decision_id for r in report.records[:-1] if not r.actuation]
    if len(without) + len(report.torn) > torn_allowed:
        problems.append(f"cycles without a result line: {without[:5]}")
    ids = {r.decision_id for r in report.records}
    unjournaled = sorted(set(decisions_on_nodes) - ids - known)
    if unjournaled:
        problems.append(f"nodes carry decisions the journal lacks: {unjournaled}")
    run.check(JOURNAL, not problems, "; ".join(problems))
    return report


def planned_power_ok(records: Sequence[CycleRecord], cap_kw: float) -> tuple[bool, str]:
    worst = 0.0
    for r in records:
        for kw in r.plan.get("site_power_kw", []):
            worst = max(worst, float(kw))
    return worst <= cap_kw + 1e-6, f"planned {worst:.2f} kW, cap {cap_kw:.2f} kW"


@dataclass
class NodeHistory:
    """Samples of the nodes and pods of one site: draw per sample, and every stretch a node
    spent between steady states."""

    watts: Mapping[str, float]
    cap_w: float
    samples: int = 0
    max_draw_w: float = 0.0
    worst: str = ""
    #: node → (state, first seen in it) while not steady.
    open: dict[str, tuple[str, float]] = field(default_factory=dict)
    longest: dict[str, float] = field(default_factory=dict)
    both: list[str] = field(default_factory=list)

    def observe(
        self,
        t: float,
        states: Mapping[str, str | None],
        miner_on: set[str],
        ai_on: set[str],
    ) -> None:
        self.samples += 1
        draw = 0.0
        for node in states:
            if node in miner_on and node in ai_on:
                self.both.append(node)
            w = self.watts["idle"]
            if node in ai_on:
                w = self.watts["ai"] + (self.watts["mine"] if node in miner_on else 0.0)
            elif node in miner_on:
                w = self.watts["mine"]
            draw += w
        if draw > self.max_draw_w:
            self.max_draw_w = draw
            self.worst = f"t={t:.1f}: miners {sorted(miner_on)}, AI {sorted(ai_on)}"
        for node, state in states.items():
            if state in STEADY:
                began = self.open.pop(node, None)
                if began is not None:
                    self.longest[node] = max(self.longest.get(node, 0.0), t - began[1])
            elif node not in self.open or self.open[node][0] != state:
                # A new state on the way still belongs to the same switch.
                first = self.open[node][1] if node in self.open else t
                self.open[node] = (state, first)

    def power(self) -> tuple[bool, str]:
        """The draw never passed the cap; no node ran its miner and tenants at once."""
        ok = self.samples > 0 and self.max_draw_w <= self.cap_w + 1e-6 and not self.both
        return ok, (
            f"{self.samples} samples, max {self.max_draw_w / 1e3:.2f} kW of "
            f"{self.cap_w / 1e3:.2f} kW ({self.worst}); miner and AI at once on {self.both}"
        )

    def half_switched(self, now: float, timeout_s: float) -> tuple[bool, str]:
        """Every switch ended in a steady state within `timeout_s`, and none is open."""
        longest = dict(self.longest)
        for node, (_, began) in self.open.items():
            longest[node] = max(longest.get(node, 0.0), now - began)
        over = {n: round(s, 1) for n, s in longest.items() if s > timeout_s}
        ok = not over and not self.open
        return ok, f"past {timeout_s:.0f} s: {over}; still switching: {sorted(self.open)}"


def check_leases(run: FaultRun, protected: Iterable[str], evicted: Iterable[str]) -> None:
    cut = sorted(set(protected) & set(evicted))
    run.check(LEASES, not cut, f"protected pods evicted: {cut}")


def check_sim_journal(
    run: FaultRun,
    folder: Path,
    config: HashpivotConfig,
    *,
    applied: Iterable[str],
    cycles: int,
    torn_allowed: int = 0,
) -> None:
    """The four invariants from a dry-run's journal alone: each record carries the fleet as
    decided on (modes, states, leases), so consecutive records show what the site did."""
    records = list(read_journal(folder))
    catalog = builtin_catalog() | {h.name: h for h in config.hardware}
    caps = {s.name: s.power_cap_kw for s in config.sites}
    timeout = config.kubernetes.switch_timeout_s
    over: list[str] = []
    cut: list[str] = []
    spans: dict[str, float] = {}
    longest = 0.0
    for i, r in enumerate(records):
        cols = r.fleet_columns
        assert cols is not None, "dry-run records carry the fleet"
        for cap in caps.values():
            planned = r.plan.get("site_power_kw", [])
            if cap is not None and planned and max(planned) > cap + 1e-6:
                over.append(f"{r.decision_id}: planned {max(planned):.2f} kW")
        if i > 0:  # the site as the previous decisions left it (the first is the config's)
            draw: dict[str, float] = {}
            for prof, site, state in zip(cols.profile, cols.site, cols.state, strict=True):
                hw = catalog[prof]
                mode = int(mode_of_state(np.array([state], dtype=np.int8))[0])
                watts = (hw.watts_idle, hw.watts_mine, hw.watts_ai)[mode]
                draw[site] = draw.get(site, 0.0) + watts / 1e3
            for site, kw in draw.items():
                cap = caps.get(site)
                if cap is not None and kw > cap + 1e-6:
                    over.append(f"{r.decision_id}: {site} at {kw:.2f} kW")
            prev = records[i - 1].fleet_columns
            assert prev is not None
            for j, name in enumerate(cols.names):
                protected = (prev.mode[j] == 2 and prev.lease_until[j] > r.now_s
                             and not prev.ai_interruptible[j])
                if protected and cols.mode[j] != 2:
                    cut.append(f"{name} at {r.decision_id}")
        for j, name in enumerate(cols.names):
            if STEADY_STATES[cols.state[j]]:
                if name in spans:
                    longest = max(longest, r.now_s - spans.pop(name))
            else:
                spans.setdefault(name, r.now_s)
    cap_text = ", ".join(f"{k}: {v} kW" for k, v in caps.items())
    run.check(POWER_CAP, not over, f"caps {cap_text}; over: {over[:5]}")
    run.check(LEASES, not cut, f"protected AI left: {cut[:5]}")
    run.check(HALF_SWITCHED, longest <= timeout and not spans,
              f"longest switch {longest:.0f} s (timeout {timeout:.0f} s); open: {spans}")
    check_journal(run, folder, cycles=cycles, torn_allowed=torn_allowed,
                  decisions_on_nodes=applied, known=frozenset())
