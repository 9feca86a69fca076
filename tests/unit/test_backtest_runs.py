"""`hashpivot backtest` runs one policy several ways: labelled runs, each with its own
parameters, reported under their labels with what they ran; ambiguous runs are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SITE = str(Path(__file__).parents[2] / "examples" / "west-texas" / "site.yaml")
HASHPIVOT = str(Path(sys.executable).parent / "hashpivot")
PERIOD = ["--from", "2023-08-04T00:00:00Z", "--to", "2023-08-05T00:00:00Z", "--no-ray"]


def _backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HASHPIVOT, "backtest", "-c", SITE, *PERIOD, *args],
                          capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def test_one_policy_twice_with_its_own_parameters(tmp_path: Path) -> None:
    done = _backtest("--no-baselines", "--report", str(tmp_path),
                     "-p", "fast=hysteresis", "-p", "slow=hysteresis",
                     "--params", "slow.confirm_ticks=6", "--params", "fast.confirm_ticks=1")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((tmp_path / "summary.json").read_text())["policies"]
    assert list(rows) == ["fast", "slow"]
    assert rows["fast"]["params"] == {"confirm_ticks": 1}
    assert rows["slow"]["params"] == {"confirm_ticks": 6}
    assert rows["fast"]["policy"] == rows["slow"]["policy"] == "hysteresis"
    # Confirming a rise over six hours instead of one changes what the day earns.
    assert rows["fast"]["net_usd"] != rows["slow"]["net_usd"]


def test_two_runs_with_one_label_are_refused() -> None:
    done = _backtest("-p", "hysteresis", "-p", "hysteresis")
    assert done.returncode == 2
    assert "two runs are labelled 'hysteresis'" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_parameters_name_their_run_when_several_run() -> None:
    done = _backtest("-p", "hysteresis", "-p", "greedy", "--params", "confirm_ticks=3")
    assert done.returncode == 2
    assert "LABEL.confirm_ticks" in done.stderr + done.stdout
    bad = _backtest("-p", "hysteresis", "--params", "confirm_tick=3")
    assert bad.returncode == 2
    assert "confirm_tick" in bad.stderr + bad.stdout and "confirm_ticks" in bad.stderr + bad.stdout


def test_a_failing_policy_is_reported_with_time_file_and_line(tmp_path: Path) -> None:
    """A policy that raises on the third day of a backtest, run as a Ray task (the
    default): one line naming the simulated time, the policy, the error and its line."""
    policy = tmp_path / "late.py"
    policy.write_text(
        "from orchestrator.framework import Policy, PolicyDecision\n"
        "class Late(Policy):\n"
        "    name = 'late-failure'\n"
        "    def decide(self, ctx):\n"
        "        if ctx.now_s >= 1690848000:  # 2023-08-01T00:00Z\n"
        "            return {}['boom']\n"
        "        return PolicyDecision.keep(ctx)\n")
    done = subprocess.run(
        [HASHPIVOT, "backtest", "-c", SITE, "--from", "2023-07-30T00:00:00Z",
         "--to", "2023-08-02T00:00:00Z", "--no-baselines", "-p", str(policy)],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "ray::" not in done.stderr
    assert (f"at simulated time 2023-08-01T00:00:00Z: policy late-failure failed: "
            f"KeyError('boom') at {policy}:6") in done.stderr


def test_an_unknown_reason_code_is_refused_naming_the_node_that_carries_it(
        tmp_path: Path) -> None:
    """A policy file that gives the fourth node a reason code nobody declared: the
    backtest stops with one line naming the code and that node, as its author reads it."""
    from orchestrator.models.build import build_fleet
    from orchestrator.models.config import load_config

    policy = tmp_path / "undeclared.py"
    policy.write_text(
        "from orchestrator.framework import Policy, PolicyDecision\n"
        "class Undeclared(Policy):\n"
        "    name = 'undeclared'\n"
        "    def decide(self, ctx):\n"
        "        keep = PolicyDecision.keep(ctx)\n"
        "        keep.reason[3] = 777\n"
        "        return keep\n")
    done = _backtest("--no-baselines", "-p", str(policy))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    fourth = build_fleet(load_config(SITE)).names[3]
    assert (f"unknown reason codes ['777'] (the first on node {fourth}, code 777)"
            in done.stderr)


def test_a_policy_that_exits_is_a_failing_policy_not_the_end_of_the_run(
    tmp_path: Path,
) -> None:
    # `sys.exit()` or a stray GeneratorExit in a policy is its own failure: the backtest
    # says so (exit 2, one line), never ends quietly with exit 0 and no report.
    for raised in ("SystemExit(0)", "GeneratorExit()"):
        policy = tmp_path / "quits.py"
        policy.write_text(
            "from orchestrator.framework import Policy\n"
            "class Quits(Policy):\n"
            "    name = 'quits'\n"
            "    def decide(self, ctx):\n"
            f"        raise {raised}\n")
        done = _backtest("--no-baselines", "-p", str(policy), "--report", str(tmp_path / "r"))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert f"policy quits failed: {raised} at {policy}:5" in done.stderr


def test_a_policy_cannot_write_what_later_cycles_or_runs_read(tmp_path: Path) -> None:
    # Prices, demand, market history and its own last state reach a policy read-only:
    # a write would otherwise change the next cycle's inputs, or another run's.
    for target in ("ctx.prices.power_usd_mwh", "ctx.demand.pending_gpus",
                   "ctx.history.site_power_usd_mwh", "ctx.policy_state['seen']"):
        policy = tmp_path / "writes.py"
        policy.write_text(
            "import numpy as np\n"
            "from orchestrator.framework import Policy, PolicyDecision\n"
            "class Writes(Policy):\n"
            "    name = 'writes'\n"
            "    uses_history = True\n"
            "    def decide(self, ctx):\n"
            "        if 'seen' in ctx.policy_state:\n"
            f"            {target}[...] = -999.0\n"
            "        keep = PolicyDecision.keep(ctx)\n"
            "        return PolicyDecision(keep.target, keep.reason,\n"
            "                              state={'seen': np.zeros(3)})\n")
        done = _backtest("--no-baselines", "-p", str(policy), "--report", str(tmp_path / "r"))
        assert done.returncode == 2, target + done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert "assignment destination is read-only" in done.stderr, done.stderr
        assert f"at {policy}:8" in done.stderr
