"""The journal: durable, rotated, tolerant of a torn last line; a failed write stops action."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.journal import CycleRecord
from orchestrator.runtime.journal import JournalError, JsonlJournal, journal_files, read_journal


def record(i: int) -> CycleRecord:
    return CycleRecord(decision_id=f"d-{i}", mode="dry-run", policy="p", now_s=float(i),
                       market=None, demand=DemandSnapshot(), fleet_modes={"mine": i},
                       plan={"changes": i}, changes=[])


def test_round_trip_with_results(tmp_path: Path) -> None:
    journal = JsonlJournal(tmp_path)
    for i in range(3):
        journal.record(record(i))
        journal.record_result(f"d-{i}", {"writes": i})
    back = list(read_journal(tmp_path))
    assert [r.decision_id for r in back] == ["d-0", "d-1", "d-2"]
    assert [r.actuation["writes"] for r in back] == [0, 1, 2]


def test_rotation_keeps_order_and_bounds_files(tmp_path: Path) -> None:
    journal = JsonlJournal(tmp_path, max_bytes=4096, keep=3)
    for i in range(60):
        journal.record(record(i))
    files = journal_files(tmp_path)
    assert 2 <= len(files) <= 4
    ids = [int(r.decision_id.split("-")[1]) for r in read_journal(tmp_path)]
    assert ids == sorted(ids) and ids[-1] == 59  # oldest rotated away, order kept


def test_truncated_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = JsonlJournal(tmp_path)
    journal.record(record(1))
    journal.record(record(2))
    with journal.path.open("a") as handle:
        handle.write('{"kind": "cycle", "decision_id": "d-3", "mo')  # crash mid-write
    back = list(read_journal(tmp_path))
    assert [r.decision_id for r in back] == ["d-1", "d-2"]
    assert "not complete JSON" in caplog.text


def test_disk_full_raises_journal_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = JsonlJournal(tmp_path)
    journal.record(record(1))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(JournalError, match="No space left"):
        journal.record(record(2))
    monkeypatch.undo()
    # What was written before the fault is intact and readable.
    assert next(r.decision_id for r in read_journal(tmp_path)) == "d-1"
