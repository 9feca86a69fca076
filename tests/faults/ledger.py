"""Counts of the fault suite: faults injected, survived, invariants checked, per kind.

A test opens a run for one kind of fault, counts each injection it makes, and checks the
four invariants the issue names (`INVARIANTS`) before closing. A run that closes without
an exception survived all its injections; one that checked fewer than the four invariants
fails. The table is rendered from counts only, so a passing full run renders the same
table every time (it is kept in docs/faults.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

POWER_CAP = "site power cap never exceeded"
LEASES = "no protected lease cut"
HALF_SWITCHED = "no node half-switched past the timeout"
JOURNAL = "journal readable and complete up to the fault"
INVARIANTS = (POWER_CAP, LEASES, HALF_SWITCHED, JOURNAL)

#: Every fault kind the suite covers, in table order, with the text of its row.
KINDS: dict[str, str] = {
    "apiserver-500": "apiserver answers 500 mid-flip",
    "apiserver-restart": "kube-apiserver killed and restarted mid-flip",
    "connection-drop": "every API connection dropped mid-flip (watches too)",
    "conflict-409": "409 Conflict on node writes",
    "eviction-429": "429 on eviction (disruption budget)",
    "watch-410": "watch expired: 410 Gone",
    "controller-kill9": "controller kill -9 after each step of a flip",
    "ray-actor-death": "Ray controller actor killed",
    "feed-timeout": "market feeds time out",
    "feed-outage": "market feeds down (5xx, bodies cut short)",
    "feed-poisoned": "market feeds return poisoned values",
    "clock-jump": "wall clock jumps forward and back",
    "disk-full": "disk full while writing the journal",
}


class InvariantError(AssertionError):
    """An invariant did not hold after a fault."""


@dataclass
class KindStats:
    injected: int = 0
    survived: int = 0
    checks: int = 0
    runs: int = 0
    failed_runs: int = 0


@dataclass
class FaultRun:
    """One test's faults of one kind."""

    kind: str
    injected: int = 0
    checked: dict[str, int] = field(default_factory=dict)

    def inject(self, count: int = 1) -> None:
        """Count faults as they are injected (before the system under test meets them)."""
        self.injected += count

    def check(self, invariant: str, ok: bool, detail: str = "") -> None:
        if invariant not in INVARIANTS:
            raise ValueError(f"unknown invariant {invariant!r}")
        if not ok:
            raise InvariantError(f"{self.kind}: {invariant}: {detail}")
        self.checked[invariant] = self.checked.get(invariant, 0) + 1


class FaultLedger:
    """The session's counts."""

    def __init__(self) -> None:
        self.stats: dict[str, KindStats] = {k: KindStats() for k in KINDS}

    @contextmanager
    def run(self, kind: str) -> Iterator[FaultRun]:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; add it to KINDS")
        run = FaultRun(kind)
        stats = self.stats[kind]
        stats.runs += 1
        try:
            yield run
            missing = [i for i in INVARIANTS if i not in run.checked]
            if missing:
                raise InvariantError(f"{kind}: run ended without checking {missing}")
            if run.injected == 0:
                raise InvariantError(f"{kind}: run injected no fault")
        except BaseException:
            stats.injected += run.injected
            stats.checks += sum(run.checked.values())
            stats.failed_runs += 1
            raise
        stats.injected += run.injected
        stats.survived += run.injected
        stats.checks += sum(run.checked.values())

    def complete(self) -> bool:
        """Every kind ran, injected something, and survived all of it."""
        return all(
            s.runs > 0 and s.injected > 0 and s.survived == s.injected and not s.failed_runs
            for s in self.stats.values()
        )

    def table(self) -> str:
        """The markdown table (counts only: deterministic for a full passing run)."""
        rows = [
            "| fault | injected | survived | invariants checked |",
            "|---|---:|---:|---:|",
        ]
        total = KindStats()
        for kind, text in KINDS.items():
            s = self.stats[kind]
            rows.append(f"| {text} | {s.injected} | {s.survived} | {s.checks} |")
            total.injected += s.injected
            total.survived += s.survived
            total.checks += s.checks
        rows.append(
            f"| **all faults** | **{total.injected}** | **{total.survived}** "
            f"| **{total.checks}** |"
        )
        return "\n".join(rows) + "\n"
