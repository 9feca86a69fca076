"""A journal replays: every saved cycle decided again gives the journaled plan."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from orchestrator.backtest.replay import redecide, replay_journal
from orchestrator.cli import app
from orchestrator.framework.registry import load_policy
from orchestrator.models.config import ControllerMode, load_config
from orchestrator.models.modes import MODE_LABELS
from orchestrator.runtime.controller import Controller, RunOptions
from orchestrator.runtime.journal import read_journal

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


def _journal(tmp_path: Path, cycles: int) -> Path:
    cfg = load_config(GOLDEN)
    controller = Controller(cfg, RunOptions(mode=ControllerMode.DRY_RUN,
                                            journal_dir=str(tmp_path)))
    controller.run(cycles)
    controller.close()
    return tmp_path


def test_saved_cycles_redecide_to_the_same_plan(tmp_path: Path) -> None:
    folder = _journal(tmp_path, 30)
    cfg = load_config(GOLDEN)
    records = list(read_journal(folder))
    policy = load_policy(cfg.policy.name, cfg.policy.params)
    report = replay_journal(records, cfg, policy)
    assert report.cycles == 30 and report.identical == 30 and not report.differing
    # One saved cycle with changes, decided again: node by node, the same targets.
    record = next(r for r in records if r.changes)
    plan = redecide(record, cfg, load_policy(cfg.policy.name, cfg.policy.params))
    replayed = {str(plan.node_names[i]): MODE_LABELS[int(plan.target[i])] for i in plan.changed}
    assert replayed == {c.node: c.target for c in record.changes}


def test_backtest_journal_option_compares_policies(tmp_path: Path) -> None:
    folder = _journal(tmp_path, 12)
    result = CliRunner().invoke(app, ["backtest", "-c", str(GOLDEN), "--journal", str(folder),
                                      "-p", "hysteresis", "-p", "greedy"])
    assert result.exit_code == 0, result.output
    assert "12 (100%)" in result.output  # hysteresis: the policy that ran
    assert "greedy" in result.output
