"""The last journaled cycle is read from the end of the newest file: the same answer as
reading the whole journal, whatever its length, torn lines and rotation included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.engine.step import StepMemory
from orchestrator.models.demand import DemandSnapshot
from orchestrator.models.journal import CycleRecord
from orchestrator.runtime import journal as journal_module
from orchestrator.runtime.journal import JsonlJournal, StepMemoryStore, last_record, read_journal


def record(i: int) -> CycleRecord:
    return CycleRecord(decision_id=f"d-{i}", mode="live", policy="p", now_s=float(i),
                       market=None, demand=DemandSnapshot(), fleet_modes={"mine": i},
                       plan={"changes": i, "pad": "x" * (i % 50)}, changes=[])


def test_tail_equals_the_whole_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "_TAIL_CHUNK", 97)  # many chunk edges mid-line
    journal = JsonlJournal(tmp_path, max_bytes=20_000, keep=5)
    for i in range(300):
        journal.record(record(i))
        if i % 3:
            journal.record_result(f"d-{i}", {"writes": i})
    whole = list(read_journal(tmp_path))[-1]
    assert last_record(tmp_path) == whole and whole.decision_id == "d-299"
    # A process killed mid-write leaves half a line: the cycle before it is the last.
    with journal.path.open("a") as handle:
        handle.write('{"kind":"cycle","decision_id":"d-3')
    tail = last_record(tmp_path)
    assert tail is not None and tail.decision_id == "d-299"
    assert tail.actuation == {"writes": 299}


def test_memory_store_round_trip(tmp_path: Path) -> None:
    store = StepMemoryStore(tmp_path)
    assert store.load() is None
    memory = StepMemory(
        now_s=123.0,
        policy_state={"count": np.array([1, 2], dtype=np.int64),
                      "level": np.array([[0.5]], dtype=np.float32)},
        expected_gpus=7.5, switch_nodes=["a", "b"],
        switch_last_s=np.array([100.0, 110.0]), switch_load=np.array([1.0, 1.5]),
    )
    store.save("d-1", memory)
    back = store.load()
    assert back is not None and back.now_s == 123.0 and back.expected_gpus == 7.5
    assert back.switch_nodes == ["a", "b"]
    assert back.switch_last_s.tolist() == [100.0, 110.0]
    assert back.switch_load.tolist() == [1.0, 1.5]
    for key, value in memory.policy_state.items():
        assert back.policy_state[key].dtype == value.dtype
        assert np.array_equal(back.policy_state[key], value)
    # A damaged file is not fatal: the controller starts without it.
    store.path.write_bytes(b"not a zip")
    assert store.load() is None
