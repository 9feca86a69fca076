"""Node events of each cycle: one per switch and per guard hold, de-duplicated per node and
reason, capped per cycle, and never able to fail a cycle."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.adapters.k8s.events import (
    REPORTING_CONTROLLER,
    NodeEvents,
    hold_reason,
    switch_reason,
)
from orchestrator.engine.plan import Plan
from orchestrator.framework.reasons import GUARD_REASONS, Reason
from orchestrator.models.config import ControllerMode, load_config
from orchestrator.models.modes import MODE_LABELS
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.cycle import CycleOutcome

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plans_of_a_dry_run(tmp_path: Path, cycles: int, config: Any = None) -> list[CycleOutcome]:
    outcomes: list[CycleOutcome] = []
    controller = Controller(config or load_config(GOLDEN),
                            RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(tmp_path)),
                            on_cycle=outcomes.append)
    try:
        controller.run(cycles)
    finally:
        controller.close()
    return outcomes


def expected_events(plan: Plan) -> set[tuple[str, str]]:
    """(node, reason) of every switch and guard hold, from the plan's own arrays."""
    out = set()
    for i in range(len(plan.node_names)):
        node = str(plan.node_names[i])
        if plan.target[i] != plan.current[i]:
            out.add((node, switch_reason(MODE_LABELS[int(plan.target[i])])))
        elif int(plan.reason[i]) in GUARD_REASONS:
            out.add((node, hold_reason(Reason(int(plan.reason[i])))))
    return out


def test_every_switch_and_hold_of_a_run_becomes_an_event(tmp_path: Path) -> None:
    outcomes = plans_of_a_dry_run(tmp_path, 24)
    sent: list[dict[str, Any]] = []
    events = NodeEvents(lambda ns, body: sent.append(body | {"ns": ns}), "pod-a", dedupe_s=0)
    wanted: set[tuple[str, str, str]] = set()
    for outcome in outcomes:
        assert outcome.plan is not None
        notes = {c.node: c.text for c in outcome.record.changes}
        events.publish(outcome.plan, notes)
        wanted |= {(outcome.plan.decision_id, n, r) for n, r in expected_events(outcome.plan)}
        for change in outcome.record.changes:  # the journaled reason is the event's note
            note = next(b["note"] for b in reversed(sent)
                        if b["regarding"]["name"] == change.node)
            assert change.text in note
    assert any(r.startswith("SwitchTo") for _, _, r in wanted)
    got = {(b["metadata"]["annotations"]["hashpivot.io/decision"], b["regarding"]["name"],
            b["reason"]) for b in sent}
    assert got == wanted
    for body in sent:
        assert body["ns"] == "default" and body["regarding"]["kind"] == "Node"
        assert body["reportingController"] == REPORTING_CONTROLLER
        assert body["reportingInstance"] == "pod-a"
        assert body["action"] == ("Switch" if body["reason"].startswith("Switch") else "Hold")


def test_holds_repeat_once_per_dedupe_window_and_each_cycle_is_capped(tmp_path: Path) -> None:
    # Every node held by a freeze, each cycle: the kind of hold that floods most.
    outcomes = plans_of_a_dry_run(tmp_path, 3)
    plans = []
    for outcome in outcomes:
        assert outcome.plan is not None
        held = np.full(len(outcome.plan.node_names), int(Reason.GUARD_FROZEN), np.int16)
        plans.append(dataclasses.replace(outcome.plan, reason=held,
                                         target=outcome.plan.current.copy()))
    plan = plans[0]
    n = len(plan.node_names)
    sent: list[dict[str, Any]] = []
    clock = Clock()
    events = NodeEvents(lambda ns, body: sent.append(body), "pod-a", dedupe_s=600,
                        max_per_cycle=n - 2, clock=clock)
    assert events.publish(plan) == n - 2  # capped
    assert all(b["type"] == "Warning" and b["reason"] == "HeldFrozen" for b in sent)
    assert all(b["note"].endswith("switching frozen by the operator") for b in sent)
    clock.t += 60
    assert events.publish(plans[1]) == 2  # only the two the cap held back
    clock.t += 60
    assert events.publish(plans[2]) == 0  # all inside their dedupe window
    clock.t += 600
    assert events.publish(plans[2]) == n - 2
    assert len({b["regarding"]["name"] for b in sent}) == n


def test_a_change_the_cap_reverted_names_what_it_gave_way_to(tmp_path: Path) -> None:
    # The golden site under a 22 kW cap: after the power spike the S19 XPs want to mine
    # again and the cap keeps the S21s instead; their Hold event says so.
    config = load_config(GOLDEN)
    config = config.model_copy(update={"sites": [
        config.sites[0].model_copy(update={"power_cap_kw": 22.0})]})
    outcomes = plans_of_a_dry_run(tmp_path, 30, config)
    sent: list[dict[str, Any]] = []
    events = NodeEvents(lambda ns, body: sent.append(body), "pod-a", dedupe_s=0)
    for outcome in outcomes:
        assert outcome.plan is not None
        events.publish(outcome.plan)
    reverted = [b["note"] for b in sent if b["reason"] == "HeldPowerCapReverted"]
    assert reverted, {b["reason"] for b in sent}
    assert all(" kept as it was so " in note and "/kW·h (site power cap)" in note
               for note in reverted), reverted


def test_a_failing_api_never_fails_the_cycle(tmp_path: Path) -> None:
    outcomes = plans_of_a_dry_run(tmp_path, 24)

    def refuse(ns: str, body: dict[str, Any]) -> None:
        raise RuntimeError("403 events is forbidden")

    events = NodeEvents(refuse, "pod-a", dedupe_s=0)
    assert sum(events.publish(o.plan) for o in outcomes) == 0
    # Nothing was recorded as sent, so the next working cycle writes them.
    assert not events._last


@pytest.mark.parametrize("reason", sorted(GUARD_REASONS))
def test_hold_reasons_are_api_valid(reason: Reason) -> None:
    # Event reasons are UpperCamelCase, at most 128 characters.
    name = hold_reason(reason)
    assert name.isalnum() and name[0].isupper() and len(name) <= 128
    assert np.all([c.isascii() for c in name])


def test_holds_are_scanned_in_a_rotating_window(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A fleet-wide hold costs a bounded scan per cycle; every node still gets its turn.
    from orchestrator.adapters.k8s import events as events_module

    monkeypatch.setattr(events_module, "HOLD_SCAN", 2)
    outcome = plans_of_a_dry_run(tmp_path, 1)[0]
    assert outcome.plan is not None
    n = len(outcome.plan.node_names)
    plan = dataclasses.replace(
        outcome.plan, reason=np.full(n, int(Reason.GUARD_MIN_DWELL), np.int16),
        target=outcome.plan.current.copy())
    sent: list[dict[str, Any]] = []
    events = NodeEvents(lambda ns, body: sent.append(body), "pod-a", dedupe_s=3600,
                        clock=Clock())
    per_cycle = [events.publish(plan) for _ in range(n // 2 + 1)]
    assert per_cycle == [2] * (n // 2) + [0]
    assert sorted(b["regarding"]["name"] for b in sent) == sorted(map(str, plan.node_names))
