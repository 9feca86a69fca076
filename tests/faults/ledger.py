"""Counts of the fault suite: faults injected, survived, invariants checked, per kind.

A test opens a run for one kind of fault on one kind of cluster, counts each injection it
makes, and checks the four invariants (`INVARIANTS`) before closing. Every check is
recorded, held or failed, before a failed one fails the test. A run's injections count as
survived only when each of the four invariants was checked and every check of it held: the
table shows what the checks observed, so a failing run shows up in it as injected but not
survived. The table is rendered from counts only, so a full run renders the same table
every time (it is kept in docs/faults.md).
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

#: What a run's controller talks to, as the table names it.
REAL = "real control plane"
IN_MEMORY = "in-memory Kubernetes API"
SIMULATED = "simulated site (dry-run)"
CLUSTERS = (REAL, IN_MEMORY, SIMULATED)

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
    "feed-hostile": "market feeds send hostile bodies (nested past the decoder, huge numbers)",
    "feed-stuck-mirror": "a chain mirror stops advancing (its tip grows old)",
    "feed-cold-start": "at cold start, the only exchange quotes BTC in cents",
    "feed-cold-start-difficulty": "at cold start, a difficulty ×1000 whose hashrate endpoint "
    "does not answer",
    "feed-mempool-adjustment": "mempool's difficulty-adjustment sends hostile bodies",
    "feed-mempool-fees": "mempool's fees/recommended sends hostile bodies",
    "clock-jump": "wall clock jumps forward and back",
    "disk-full": "disk full while writing the journal",
}


class InvariantError(AssertionError):
    """An invariant did not hold after a fault."""


@dataclass
class KindStats:
    injected: int = 0
    survived: int = 0
    held: int = 0
    failed: int = 0
    runs: int = 0
    failed_runs: int = 0
    #: Injections per cluster the runs used.
    clusters: dict[str, int] = field(default_factory=dict)


@dataclass
class FaultRun:
    """One test's faults of one kind."""

    kind: str
    cluster: str = REAL
    injected: int = 0
    checked: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def inject(self, count: int = 1) -> None:
        """Count faults as they are injected (before the system under test meets them)."""
        self.injected += count

    def check(self, invariant: str, ok: bool, detail: str = "") -> None:
        if invariant not in INVARIANTS:
            raise ValueError(f"unknown invariant {invariant!r}")
        self.checked[invariant] = self.checked.get(invariant, 0) + 1
        if not ok:
            self.failed[invariant] = self.failed.get(invariant, 0) + 1
            raise InvariantError(f"{self.kind}: {invariant}: {detail}")

    def survived(self) -> int:
        """Injections survived: all of them when every invariant was checked and held."""
        held = all(self.checked.get(i, 0) > 0 and not self.failed.get(i) for i in INVARIANTS)
        return self.injected if held else 0


class FaultLedger:
    """The session's counts."""

    def __init__(self) -> None:
        self.stats: dict[str, KindStats] = {k: KindStats() for k in KINDS}

    @contextmanager
    def run(self, kind: str, cluster: str) -> Iterator[FaultRun]:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; add it to KINDS")
        if cluster not in CLUSTERS:
            raise ValueError(f"unknown cluster {cluster!r}; one of {CLUSTERS}")
        run = FaultRun(kind, cluster)
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
            stats.failed_runs += 1
            raise
        finally:
            stats.injected += run.injected
            stats.clusters[cluster] = stats.clusters.get(cluster, 0) + run.injected
            stats.survived += run.survived()
            stats.held += sum(run.checked.values()) - sum(run.failed.values())
            stats.failed += sum(run.failed.values())

    def complete(self) -> bool:
        """Every kind ran, injected something, and survived all of it."""
        return all(
            s.runs > 0 and s.injected > 0 and s.survived == s.injected and not s.failed_runs
            for s in self.stats.values()
        )

    def table(self) -> str:
        """The markdown table (counts only: deterministic for a full run)."""
        rows = [
            "| fault | runs on | injected | survived | invariant checks held | failed |",
            "|---|---|---:|---:|---:|---:|",
        ]
        total = KindStats()
        for kind, text in KINDS.items():
            s = self.stats[kind]
            where = ", ".join(c for c in CLUSTERS if c in s.clusters) or "did not run"
            rows.append(f"| {text} | {where} | {s.injected} | {s.survived} | {s.held} "
                        f"| {s.failed} |")
            total.injected += s.injected
            total.survived += s.survived
            total.held += s.held
            total.failed += s.failed
        rows.append(
            f"| **all faults** | | **{total.injected}** | **{total.survived}** "
            f"| **{total.held}** | **{total.failed}** |"
        )
        for cluster in CLUSTERS:
            n = sum(s.clusters.get(cluster, 0) for s in self.stats.values())
            rows.append(f"| faults on the {cluster} | | {n} | | | |")
        return "\n".join(rows) + "\n"
