"""The decision journal: every cycle's inputs, plan and result, append-only JSON lines.

Each cycle writes its plan before acting (so an interrupted switch is on record) and a
result line after. Files rotate at a size limit; a truncated last line (a crash or a
full disk mid-write) is skipped with a warning, never fatal. A write that fails raises
`JournalError`, and the controller does not act on a plan it could not record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from orchestrator.engine.step import StepMemory
from orchestrator.errors import HashpivotError
from orchestrator.models.journal import CycleRecord

log = logging.getLogger("hashpivot.journal")

CURRENT = "journal.jsonl"


class JournalError(HashpivotError):
    """The journal could not be written: act on nothing until it can."""


class JsonlJournal:
    """`Journal` port: durable JSON lines in a folder, rotated by size."""

    def __init__(self, folder: Path | str, *, max_bytes: int = 64 * 1024 * 1024, keep: int = 20):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.keep = keep
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create journal folder {self.folder}: {exc}") from None
        # The file may end in half a line (a process killed mid-write, a disk that filled
        # up): the next line must start on its own, or it would be lost with the fragment.
        self._check_tail = True

    @property
    def path(self) -> Path:
        return self.folder / CURRENT

    def _append(self, payload: dict[str, Any]) -> None:
        line = json.dumps(payload, separators=(",", ":"), default=str) + "\n"
        try:
            self._rotate_if_needed(len(line))
            if self._check_tail and _ends_mid_line(self.path):
                line = "\n" + line
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._check_tail = False
        except OSError as exc:
            self._check_tail = True
            raise JournalError(f"cannot write the journal {self.path}: {exc.strerror}") from None

    def _rotate_if_needed(self, incoming: int) -> None:
        if not self.path.exists() or self.path.stat().st_size + incoming <= self.max_bytes:
            return
        numbers = sorted(_rotated_numbers(self.folder))
        nxt = (numbers[-1] + 1) if numbers else 1
        self.path.rename(self.folder / f"journal-{nxt:06d}.jsonl")
        for old in numbers[: max(len(numbers) + 1 - self.keep, 0)]:
            (self.folder / f"journal-{old:06d}.jsonl").unlink(missing_ok=True)

    def record(self, record: CycleRecord) -> None:
        self._append({"kind": "cycle", **record.model_dump(mode="json")})

    def record_result(self, decision_id: str, actuation: dict[str, Any]) -> None:
        self._append({"kind": "result", "decision_id": decision_id, "actuation": actuation})


def _ends_mid_line(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _rotated_numbers(folder: Path) -> list[int]:
    out = []
    for p in folder.glob("journal-*.jsonl"):
        try:
            out.append(int(p.stem.split("-", 1)[1]))
        except ValueError:
            continue
    return out


def journal_files(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    files = [folder / f"journal-{n:06d}.jsonl" for n in sorted(_rotated_numbers(folder))]
    if (folder / CURRENT).exists():
        files.append(folder / CURRENT)
    return files


def read_journal(folder: Path | str) -> Iterator[CycleRecord]:
    """Every cycle in order, with its actuation result merged in when one was written."""
    pending: CycleRecord | None = None
    for path in journal_files(folder):
        # A write cut short may end inside a multi-byte character: that line is skipped
        # below like any torn line, instead of failing the whole file.
        with path.open(encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # nesting past the parser's depth
                where = "last line" if i == len(lines) else f"line {i}"
                log.warning("journal %s: %s is not complete JSON; skipped", path, where)
                continue
            if not isinstance(obj, dict):
                log.warning("journal %s line %d: not a record; skipped", path, i)
                continue
            kind = obj.pop("kind", "cycle")
            if kind == "result":
                if pending is not None and pending.decision_id == obj.get("decision_id"):
                    pending = pending.model_copy(update={"actuation": obj.get("actuation", {})})
                continue
            try:
                record = CycleRecord.model_validate(obj)
            except ValidationError as exc:
                log.warning("journal %s line %d: unreadable record (%s); skipped", path, i,
                            exc.errors()[0]["msg"])
                continue
            if pending is not None:
                yield pending
            pending = record
    if pending is not None:
        yield pending


def last_record(folder: Path | str) -> CycleRecord | None:
    """The last journaled cycle (with its result), read from the end of the newest file:
    the time it takes does not grow with the journal."""
    for path in reversed(journal_files(folder)):
        record = _last_in(path)
        if record is not None:
            return record
    return None


_TAIL_CHUNK = 1 << 20


def _last_in(path: Path) -> CycleRecord | None:
    """The last readable cycle of one file, reading backwards a chunk at a time."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            result: dict[str, Any] | None = None
            buffer = b""
            pos = end
            while pos > 0:
                read = min(_TAIL_CHUNK, pos)
                pos -= read
                handle.seek(pos)
                buffer = handle.read(read) + buffer
                lines = buffer.split(b"\n")
                # The first piece may be a line cut by the chunk edge: keep it for later.
                buffer = lines[0] if pos > 0 else b""
                complete = lines[1:] if pos > 0 else lines
                for raw in reversed(complete):
                    obj = _parse_line(raw)
                    if obj is None:
                        continue
                    kind = obj.pop("kind", "cycle")
                    if kind == "result":
                        if result is None:
                            result = obj
                        continue
                    try:
                        record = CycleRecord.model_validate(obj)
                    except ValidationError:
                        continue
                    if result is not None and result.get("decision_id") == record.decision_id:
                        record = record.model_copy(update={"actuation": result.get("actuation",
                                                                                     {})})
                    return record
    except FileNotFoundError:
        return None
    return None


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw.decode("utf-8", errors="replace"))
    except (json.JSONDecodeError, RecursionError):  # nesting past the parser's depth
        return None
    return obj if isinstance(obj, dict) else None


MEMORY_FILE = "step-memory.npz"


class StepMemoryStore:
    """The decision step's memory (policy state, demand level, switch history), kept
    beside the journal: one file replaced atomically after every cycle, so a restarted
    controller reads it whole, whatever the journal's length or the fleet's size."""

    def __init__(self, folder: Path | str):
        self.path = Path(folder) / MEMORY_FILE

    def save(self, decision_id: str, memory: StepMemory) -> None:
        """Write `memory`; a failure is logged (the journal already holds the cycle)."""
        arrays: dict[str, Any] = {
            "switch_nodes": np.array(memory.switch_nodes, dtype=str),
            "switch_last_s": memory.switch_last_s,
            "switch_load": memory.switch_load,
        }
        for i, value in enumerate(memory.policy_state.values()):
            arrays[f"state_{i}"] = np.asarray(value)
        meta = {"decision_id": decision_id, "now_s": memory.now_s,
                "expected_gpus": memory.expected_gpus,
                "state_keys": list(memory.policy_state),
                "contract_peak_kw": list(memory.contract_peak_kw)}
        arrays["meta"] = np.array(json.dumps(meta))
        tmp = self.path.with_suffix(".tmp.npz")
        try:
            with tmp.open("wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("decision memory not saved to %s: %s", self.path, exc.strerror)

    def load(self) -> StepMemory | None:
        """The memory last saved, or None (none yet, or unreadable: logged)."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                state = {str(k): np.array(data[f"state_{i}"])
                         for i, k in enumerate(meta["state_keys"])}
                memory = StepMemory(
                    now_s=None if meta["now_s"] is None else float(meta["now_s"]),
                    policy_state=state,
                    expected_gpus=(None if meta["expected_gpus"] is None
                                   else float(meta["expected_gpus"])),
                    switch_nodes=[str(x) for x in data["switch_nodes"].tolist()],
                    switch_last_s=np.array(data["switch_last_s"], dtype=np.float64),
                    switch_load=np.array(data["switch_load"], dtype=np.float64),
                    contract_peak_kw=tuple(float(x) for x in meta.get("contract_peak_kw", [])),
                )
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            log.warning("decision memory %s unreadable, starting without it: %s", self.path, exc)
            return None
        log.info("decision memory restored from %s (decision %s, %d nodes with switch "
                 "history)", self.path, meta["decision_id"], len(memory.switch_nodes))
        return memory
