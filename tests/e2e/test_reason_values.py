"""Per-node numbers in a policy's own reason texts: the journal of `hashpivot run --mode
dry-run` and `hashpivot explain` show the text filled with the values the decision
returned. The two-site recorded market of the history test; the strike policy
(tests/e2e/policies/strike_probe.py) stops the second site during its price spike."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from orchestrator.runtime.journal import read_journal
from tests.e2e.test_history_columns import FAR_LAG_S, HOUR, PERIOD_START, SPIKE_AT, Data, _iso
from tests.e2e.test_history_columns import _config as site_config
from tests.e2e.test_one_decision_path import hashpivot

STEPS = 12
STRIKE = 500.0
PROBE = Path(__file__).parent / "policies" / "strike_probe.py"


def _far_price(data: Data, now: float) -> float:
    """The second site's price a decision at `now` uses: the newest row published."""
    return float(data.far[np.flatnonzero(data.far_published <= now)[-1]])


def test_journal_and_explain_show_the_policy_values(tmp_path: Path) -> None:
    data = Data()
    data.write(tmp_path)
    shutil.copy(PROBE, tmp_path / PROBE.name)
    config = site_config(tmp_path, PROBE.name, STEPS)
    journal = tmp_path / "journal"
    out = hashpivot("run", "-c", str(config), "--mode", "dry-run", "--no-ray",
                    "--metrics-port", "0", "--from", _iso(PERIOD_START),
                    "--to", _iso(PERIOD_START + STEPS * HOUR), "--journal", str(journal),
                    cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    stop, start = SPIKE_AT + FAR_LAG_S, SPIKE_AT + FAR_LAG_S + HOUR
    spike, after = _far_price(data, stop), _far_price(data, start)
    assert spike > STRIKE > after, "the spike is not seen as one: the test proves nothing"
    curtailed = f"power ${spike:.0f}/MWh above the ${STRIKE:.0f}/MWh strike: curtailed"
    resumed = f"power ${after:.2f}/MWh back under the strike: mining again"
    changes = [(r.now_s, c) for r in read_journal(journal) for c in r.changes]
    assert [(now, c.target, c.reason) for now, c in changes] == (
        [(stop, "idle", curtailed)] * 2 + [(start, "mine", resumed)] * 2)
    assert all(c.reason in c.text for _, c in changes)

    node = changes[0][1].node
    shown = hashpivot("explain", node, "--journal", str(journal), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = " ".join(shown.stdout.split())
    assert curtailed in text and resumed in text, shown.stdout


BAD_VALUES = '''
import numpy as np

from orchestrator.framework import DecisionContext, Policy, PolicyDecision


class Short(Policy):
    name = "short"
    reasons = {150: "at {price:.0f}"}

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        keep = PolicyDecision.keep(ctx)
        return PolicyDecision(keep.target, keep.reason, values={"price": np.zeros(1)})
'''

BAD_TEXT = '''
from orchestrator.framework import DecisionContext, Policy, PolicyDecision


class Braces(Policy):
    name = "braces"
    reasons = {150: "price {price.real} {"}

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        return PolicyDecision.keep(ctx)
'''


def test_bad_values_and_texts_are_clear_errors(tmp_path: Path) -> None:
    data = Data()
    data.write(tmp_path)
    for name, source, expected in (
        ("short.py", BAD_VALUES, "returned values 'price' as array of dtype float64 and "
                                 "shape (1,)"),
        ("braces.py", BAD_TEXT, "reason 150's text"),
    ):
        (tmp_path / name).write_text(source)
        config = site_config(tmp_path, name, 3)
        out = hashpivot("backtest", "-c", str(config), "--no-baselines", "--no-ray",
                        "--report", str(tmp_path / "report"), cwd=tmp_path)
        assert out.returncode != 0
        assert expected in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
