"""Policy state through the entry points: numeric arrays only (a clear error in every
runner), the cycle interval and skipped cycles in the context, and the last state
restored when `hashpivot run` restarts."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

from orchestrator.runtime.journal import read_journal
from tests.e2e.test_one_decision_path import hashpivot, site_file

PERIOD = ["--from", "2025-10-21T00:00:00Z", "--to", "2025-10-21T12:00:00Z"]

# A counter kept in the state; it records what the context said in a file beside it, so
# the test reads what the policy saw without the policy doing anything else.
COUNTER = textwrap.dedent("""
    import json
    from pathlib import Path

    import numpy as np

    from orchestrator.framework import DecisionContext, Policy, PolicyDecision

    SEEN = Path(__file__).with_name("seen.jsonl")


    class Counter(Policy):
        name = "counter"

        def decide(self, ctx: DecisionContext) -> PolicyDecision:
            count = ctx.policy_state.get("count", np.zeros(1, dtype=np.int64))
            with SEEN.open("a") as out:
                out.write(json.dumps({"now": ctx.now_s, "count": int(count[0]),
                                      "interval": ctx.interval_s,
                                      "skipped": ctx.skipped_cycles}) + "\\n")
            keep = PolicyDecision.keep(ctx)
            return PolicyDecision(keep.target, keep.reason, {"count": count + 1})
""")

WORDY = textwrap.dedent("""
    import numpy as np

    from orchestrator.framework import DecisionContext, Policy, PolicyDecision


    class Wordy(Policy):
        name = "wordy"

        def decide(self, ctx: DecisionContext) -> PolicyDecision:
            keep = PolicyDecision.keep(ctx)
            return PolicyDecision(keep.target, keep.reason, {"mood": np.array(["hot"])})
""")


def test_string_state_is_refused_in_backtest_and_dry_run(tmp_path: Path) -> None:
    policy = tmp_path / "wordy.py"
    policy.write_text(WORDY)
    config = site_file(tmp_path, "gpu-only", policy={"name": str(policy), "params": {}})
    out = hashpivot("backtest", "-c", str(config), "--no-baselines", "--no-ray", *PERIOD,
                    "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode != 0
    assert "state 'mood'" in out.stderr and "numpy arrays of integers" in out.stderr
    assert "Traceback" not in out.stderr
    # The controller holds every node and says why, cycle after cycle; it does not die.
    journal = tmp_path / "j"
    run = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray",
                    "--metrics-port", "0", *PERIOD,
                    "--journal", str(journal), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    records = list(read_journal(journal))
    assert len(records) == 12
    assert all("state 'mood'" in str(r.plan.get("held")) for r in records)


def test_state_interval_and_skipped_cycles_survive_a_restart(tmp_path: Path) -> None:
    policy = tmp_path / "counter.py"
    policy.write_text(COUNTER)
    config = site_file(tmp_path, "gpu-only", policy={"name": str(policy), "params": {}})
    journal = tmp_path / "j"
    base = ["run", "-c", str(config), "--mode", "dry-run", "--no-ray", "--metrics-port", "0",
            "--journal",
            str(journal)]
    first = hashpivot(*base, *PERIOD, "--cycles", "5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    # The restart skips three hours of the recording: three decisions missed.
    second = hashpivot(*base, "--from", "2025-10-21T08:00:00Z", "--to",
                       "2025-10-21T12:00:00Z", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    step = yaml_step(config)
    assert [s["count"] for s in seen] == list(range(len(seen)))  # never reset
    assert all(s["interval"] == step for s in seen)
    gaps = [round((b["now"] - a["now"]) / step) - 1 for a, b in itertools.pairwise(seen)]
    assert [s["skipped"] for s in seen[1:]] == gaps
    assert max(gaps) == 3


def yaml_step(config: Path) -> float:
    import yaml

    backtest = yaml.safe_load(config.read_text()).get("backtest", {})
    return float(backtest.get("step_s", 3600.0))
