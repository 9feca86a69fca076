"""The fault table counts what the invariant checks observed: a check that fails shows as
injected but not survived, and a run that skips an invariant survives nothing."""

from __future__ import annotations

import pytest

from tests.faults.ledger import (
    HALF_SWITCHED,
    IN_MEMORY,
    INVARIANTS,
    JOURNAL,
    LEASES,
    POWER_CAP,
    REAL,
    FaultLedger,
    InvariantError,
)


def row(ledger: FaultLedger, text: str) -> list[str]:
    line = next(r for r in ledger.table().splitlines() if r.startswith(f"| {text} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_run_whose_checks_all_hold_survives_its_injections() -> None:
    ledger = FaultLedger()
    with ledger.run("conflict-409", REAL) as run:
        run.inject(3)
        for invariant in INVARIANTS:
            run.check(invariant, True)
    assert row(ledger, "409 Conflict on node writes") == [
        "409 Conflict on node writes", REAL, "3", "3", "4", "0"]


def test_a_failed_check_is_counted_and_nothing_in_its_run_survives() -> None:
    ledger = FaultLedger()
    with (pytest.raises(InvariantError, match="no protected lease cut"),
          ledger.run("feed-outage", IN_MEMORY) as run):
        run.inject(5)
        run.check(POWER_CAP, True)
        run.check(LEASES, False, "tenant t1 evicted")
    with ledger.run("feed-outage", IN_MEMORY) as run:
        run.inject(2)
        for invariant in INVARIANTS:
            run.check(invariant, True)
    # 7 injected over two runs; only the second run's 2 survived; 1 + 4 checks held.
    assert row(ledger, "market feeds down (5xx, bodies cut short)")[1:] == [
        IN_MEMORY, "7", "2", "5", "1"]
    assert not ledger.complete()


def test_a_run_that_skips_an_invariant_survives_nothing() -> None:
    ledger = FaultLedger()
    with (pytest.raises(InvariantError, match="without checking"),
          ledger.run("disk-full", REAL) as run):
        run.inject()
        run.check(POWER_CAP, True)
        run.check(LEASES, True)
        run.check(HALF_SWITCHED, True)
    assert row(ledger, "disk full while writing the journal")[2:4] == ["1", "0"]
    with ledger.run("disk-full", REAL) as run:
        run.inject()
        for invariant in (POWER_CAP, LEASES, HALF_SWITCHED, JOURNAL):
            run.check(invariant, True)
    assert row(ledger, "disk full while writing the journal")[2:4] == ["2", "1"]


def test_the_table_says_where_each_fault_ran() -> None:
    ledger = FaultLedger()
    with ledger.run("clock-jump", IN_MEMORY) as run:
        run.inject(4)
        for invariant in INVARIANTS:
            run.check(invariant, True)
    assert row(ledger, "faults on the in-memory Kubernetes API")[1:3] == ["", "4"]
    assert row(ledger, "faults on the real control plane")[1:3] == ["", "0"]
    assert row(ledger, "apiserver answers 500 mid-flip")[1] == "did not run"
    with (pytest.raises(ValueError, match="unknown cluster"),
          ledger.run("clock-jump", "a cluster of my own")):
        pass
