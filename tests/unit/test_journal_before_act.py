"""Nothing acts before it is journaled: the real decision cycle and `KubeActuator` on the
in-memory Kubernetes API, with the journal read back from disk at the moment of the first
write."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters.k8s.objects import MODE_LABEL, labels_of
from orchestrator.runtime.journal import JournalError, read_journal
from tests.faults.fake_site import FakeSite


def modes(site: FakeSite) -> list[str | None]:
    return [labels_of(site.kube.nodes[n]).get(MODE_LABEL) for n in site.names]


def test_the_plan_is_on_disk_before_the_first_cluster_write(tmp_path: Path) -> None:
    site = FakeSite(tmp_path)
    seen: list[list[str]] = []

    def first_write(verb: str, key: str) -> None:
        seen.append([r.decision_id for r in read_journal(site.folder)])

    site.kube.before_write = first_write
    site.want(n0="ai", n1="ai")  # 2 × 7.1 + 2 × 5.08 kW: within the 25 kW cap
    outcome = site.cycle.run_once()
    assert outcome.plan is not None and outcome.plan.changed.tolist() == [0, 1]
    assert site.kube.writes > 0, "the flip wrote to the cluster"
    assert len(seen) == 1, "the first write went through the hook"
    assert outcome.record.decision_id in seen[0]


def test_a_plan_that_cannot_be_journaled_is_not_acted_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = FakeSite(tmp_path)
    before_writes, before_modes = site.kube.writes, modes(site)

    def disk_full(record: object) -> None:
        raise JournalError("No space left on device")

    monkeypatch.setattr(site.journal, "record", disk_full)
    site.want(n0="ai")
    with pytest.raises(JournalError):
        site.cycle.run_once()
    assert site.kube.writes == before_writes
    assert modes(site) == before_modes
    # Once the journal takes the plan again, the same flip goes ahead.
    monkeypatch.undo()
    outcome = site.cycle.run_once()
    assert outcome.plan is not None and site.kube.writes > before_writes
    assert [r.decision_id for r in read_journal(site.folder)] == [outcome.record.decision_id]
