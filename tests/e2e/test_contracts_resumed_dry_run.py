"""A dry-run of the contract example stopped half way and started again from its journal
finishes its period: every step decided once, no cycle failing at the end (the contract
charges are booked on the rows the resumed run filled)."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.runtime.journal import read_journal
from tests.e2e.test_one_decision_path import EXAMPLES, hashpivot

STEPS = 12


def test_a_resumed_contract_dry_run_decides_every_step_once(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "contracts" / "site.yaml", tmp_path / "site.yaml")
    common = ["run", "-c", "site.yaml", "--mode", "dry-run", "--no-ray", "--metrics-port",
              "0", "--from", "2024-08-05T00:00:00Z", "--to", "2024-08-05T12:00:00Z",
              "--journal", "journal"]
    first = hashpivot(*common, "--cycles", str(STEPS // 2), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = hashpivot(*common, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "cycle failed" not in second.stderr, second.stderr[-3000:]
    records = list(read_journal(tmp_path / "journal"))
    times = [r.now_s for r in records]
    assert len(times) == STEPS
    # The simulated site took every plan, the last one (which books the charges) too.
    assert all(not (r.actuation or {}).get("errors") for r in records), [
        r.actuation for r in records if (r.actuation or {}).get("errors")]
    assert len(set(times)) == STEPS
    assert (tmp_path / "journal" / "ledger.csv").is_file()
