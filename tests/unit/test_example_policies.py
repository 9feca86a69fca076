"""The worked examples of docs/policies.md: a strike-price curtailment and a weekday
reserve in site local time, checked through `hashpivot policies check` and a backtest, and
their rules against hand-worked sequences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from orchestrator.engine import build_context
from orchestrator.framework.registry import load_policy
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from orchestrator.models.config import GuardConfig
from tests.conftest import make_prices, profiles

EXAMPLES = Path(__file__).parents[2] / "examples"
STRIKE = str(EXAMPLES / "policies" / "strike_price.py")
RESERVE = str(EXAMPLES / "policies" / "weekday_reserve.py")
HASHPIVOT = str(Path(sys.executable).parent / "hashpivot")


def _hashpivot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HASHPIVOT, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "COLUMNS": "200"}, check=False)


@pytest.mark.parametrize("policy", [STRIKE, RESERVE], ids=["strike-price", "weekday-reserve"])
def test_examples_pass_policies_check(policy: str) -> None:
    done = _hashpivot("policies", "check", policy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "decides after a restart as without one" in done.stdout


def test_policies_check_fails_a_policy_that_forgets_across_restarts(tmp_path: Path) -> None:
    """The strike counter kept on the instance instead of in `state`: it works until the
    controller restarts, and the check says so."""
    forgetful = tmp_path / "forgetful.py"
    forgetful.write_text(Path(STRIKE).read_text().replace(
        "        state = ctx.policy_state\n",
        "        state = getattr(self, 'kept', {})\n",
    ).replace(
        "        return PolicyDecision(\n",
        "        self.kept = {'hours_above': above, 'hours_below': below, 'curtailed': curtailed}\n"
        "        return PolicyDecision(\n",
    ).replace(
        '            state={"hours_above": above, "hours_below": below, "curtailed": curtailed},\n',
        "",
    ))
    done = _hashpivot("policies", "check", str(forgetful), "--params", "strike_usd_mwh=40",
                      "--params", "curtail_after_h=2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL decides after a restart as without one" in done.stdout


def test_policies_check_names_a_bad_parameter() -> None:
    done = _hashpivot("policies", "check", STRIKE, "--params", "strike=90")
    assert done.returncode == 1
    assert "params.strike" in done.stdout and "strike_usd_mwh" in done.stdout


def _asic_site() -> FleetTable:
    return FleetTable.build(profiles("s21", "h100-sxm-8x"), [Site(name="hall")], [0, 0, 1],
                            modes=[Mode.MINE, Mode.MINE, Mode.IDLE])


def test_strike_price_counts_hours_across_cycles() -> None:
    """Strike 90, stop after 2 h above, start after 3 h below; one cycle an hour. Prices
    100, 100, 100, 50, 50, 50, 50: the ASICs stop at the second hot hour and start again
    at the third cool one. A missed cycle counts the hours it covered."""
    policy = load_policy(STRIKE, {"strike_usd_mwh": 90, "curtail_after_h": 2,
                                  "resume_after_h": 3})
    fleet = _asic_site()
    state: dict[str, np.ndarray] = {}
    expected = [Mode.MINE, Mode.IDLE, Mode.IDLE, Mode.IDLE, Mode.IDLE, Mode.MINE, Mode.MINE]
    got = []
    for k, price in enumerate([100, 100, 100, 50, 50, 50, 50]):
        ctx = build_context(now_s=1e6 + 3600 * k, prices=make_prices(
            fleet, power_usd_mwh=price, observed_s=1e6 + 3600 * k),
            demand=DemandSummary.empty(1), fleet=fleet, guards=GuardConfig(),
            policy_state=state, interval_s=3600.0)
        decision = policy.decide(ctx)
        state = dict(decision.state)
        got.append(Mode(int(decision.target[0])))
        assert decision.target[0] == decision.target[1]
    assert got == expected

    # One cycle two hours after the last (one skipped): both hours count above the strike.
    ctx = build_context(now_s=1e6 + 3600 * 8, prices=make_prices(
        fleet, power_usd_mwh=120, observed_s=1e6 + 3600 * 8),
        demand=DemandSummary.empty(1), fleet=fleet, guards=GuardConfig(),
        policy_state=state, interval_s=3600.0, skipped_cycles=1)
    assert policy.decide(ctx).target[0] == Mode.IDLE


def test_weekday_reserve_follows_each_sites_clock() -> None:
    """13:00–18:00 on weekdays, local time. Monday 2025-03-10 18:30 UTC is 13:30 in Chicago
    (CDT since the day before: UTC−5) and 19:30 in Berlin (CET: UTC+1). A week earlier the
    same UTC time is 12:30 in Chicago (CST: UTC−6): not reserved."""
    fleet = FleetTable.build(
        profiles("h100-sxm-8x"),
        [Site(name="texas", timezone="America/Chicago"), Site(name="berlin",
                                                              timezone="Europe/Berlin")],
        [0, 0], node_sites=[0, 1], modes=[Mode.MINE, Mode.MINE])
    policy = load_policy(RESERVE)

    def targets(iso: str) -> list[Mode]:
        now = datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()
        ctx = build_context(now_s=now, prices=make_prices(fleet, gpu_usd_per_gpu_hour=0.01,
                                                          observed_s=now),
                            demand=DemandSummary.empty(1), fleet=fleet, guards=GuardConfig())
        return [Mode(int(m)) for m in policy.decide(ctx).target]

    after_dst = targets("2025-03-10T18:30:00")
    assert after_dst[0] == Mode.AI
    assert after_dst[1] != Mode.AI
    before_dst = targets("2025-03-03T18:30:00")
    assert before_dst[0] != Mode.AI
    assert targets("2025-03-08T19:30:00")[0] != Mode.AI  # a Saturday


def test_strike_price_backtests_through_the_cli(tmp_path: Path) -> None:
    """On ERCOT West's 4 August 2023 evening spike (hours above 590 USD/MWh), the strike
    policy mines less than greedy, which stops only when mining loses money."""
    done = _hashpivot("backtest", "-c", str(EXAMPLES / "west-texas" / "site.yaml"),
                      "--from", "2023-08-04T00:00:00Z", "--to", "2023-08-06T00:00:00Z",
                      "--no-ray", "--report", str(tmp_path), "-p", STRIKE, "-p", "greedy")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((tmp_path / "summary.json").read_text())["policies"]
    assert rows["strike-price"]["mine_revenue_usd"] < rows["greedy"]["mine_revenue_usd"]
    assert rows["strike-price"]["power_cost_usd"] < rows["greedy"]["power_cost_usd"]


def test_a_policys_own_reasons_explain_its_switches() -> None:
    """The strike policy declares its reason codes; the plan's explanation uses its text,
    and a code it did not declare is refused like any unknown code."""
    from orchestrator.engine.plan import decide
    from orchestrator.errors import PolicyError
    from orchestrator.framework import Policy, PolicyDecision

    policy = load_policy(STRIKE, {"strike_usd_mwh": 90, "curtail_after_h": 0})
    fleet = _asic_site()
    ctx = build_context(now_s=1e6, prices=make_prices(fleet, power_usd_mwh=500,
                                                      observed_s=1e6),
                        demand=DemandSummary.empty(1), fleet=fleet,
                        guards=GuardConfig(min_dwell_s=0), interval_s=3600.0)
    plan = decide(ctx, policy, GuardConfig(min_dwell_s=0))
    texts = {e.node: e.text for e in plan.explanations()}
    assert plan.target[0] == Mode.IDLE
    assert "power above the strike price long enough" in texts[str(fleet.names[0])]

    class Undeclared(Policy):
        name = "undeclared"

        def decide(self, ctx):  # type: ignore[no-untyped-def]
            keep = PolicyDecision.keep(ctx)
            return PolicyDecision(keep.target, np.full(ctx.fleet.n, 150, dtype=np.int16))

    with pytest.raises(PolicyError, match="unknown reason codes"):
        decide(ctx, Undeclared(), GuardConfig())


_CLOCKED = """\
{imports}
import numpy as np

from orchestrator.framework import Policy, PolicyDecision, Reason, mode_argmax


class Clocked(Policy):
    name = "clocked"

    def decide(self, ctx):
        best = mode_argmax(ctx.scores.value)
        target = best if int({clock} // 3600) % 2 else ctx.current
        return PolicyDecision(target=np.asarray(target, dtype=np.int8),
                              reason=np.full(ctx.fleet.n, Reason.HIGHER_VALUE, np.int16))
"""


@pytest.mark.parametrize(("imports", "clock"), [
    ("import time", "time.time()"),
    ("from time import time", "time()"),  # bound by name when the module loads
])
def test_policies_check_refuses_the_wall_clock_at_the_policys_line(
    tmp_path: Path, imports: str, clock: str
) -> None:
    policy = tmp_path / "clocked.py"
    policy.write_text(_CLOCKED.format(imports=imports, clock=clock))
    done = _hashpivot("policies", "check", str(policy))
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(i for i, text in enumerate(_CLOCKED.splitlines(), 1) if "{clock}" in text)
    assert "must not read the wall clock" in done.stdout
    assert f"{policy}:{line}" in done.stdout.replace("\n", "")


def test_policies_check_keeps_nan_and_infinities_in_state_across_a_restart(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "nanstate.py"
    policy.write_text(
        "import numpy as np\n"
        "from orchestrator.framework import Policy, PolicyDecision, Reason, mode_argmax\n"
        "class NanState(Policy):\n"
        "    name = 'nanstate'\n"
        "    def decide(self, ctx):\n"
        "        seen = ctx.policy_state.get('t', np.array([np.inf, -np.inf, np.nan]))\n"
        "        assert np.isposinf(seen[0]) and np.isneginf(seen[1]) and np.isnan(seen[2])\n"
        "        return PolicyDecision(mode_argmax(ctx.scores.value),\n"
        "                              np.full(ctx.fleet.n, Reason.HIGHER_VALUE, np.int16),\n"
        "                              state={'t': np.array([np.inf, -np.inf, np.nan])})\n")
    done = _hashpivot("policies", "check", str(policy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   decides after a restart as without one" in done.stdout


def _shortest_policy() -> str:
    """The first code block of docs/policies.md, as a reader would copy it."""
    text = (Path(__file__).parents[2] / "docs" / "policies.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_shortest_policy_checks_and_backtests_by_file_and_module(
        tmp_path: Path) -> None:
    (tmp_path / "my_policy.py").write_text(_shortest_policy())
    checked = _hashpivot("policies", "check", str(tmp_path / "my_policy.py"),
                         "--params", "margin_usd_h=1.0")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    period = ("--from", "2023-08-04T00:00:00Z", "--to", "2023-08-05T00:00:00Z")
    by_file = _hashpivot("backtest", "-c", str(EXAMPLES / "west-texas" / "site.yaml"),
                         *period, "--no-ray", "--no-baselines", "--oracle-iterations", "1",
                         "--report", str(tmp_path / "file"), "-p",
                         str(tmp_path / "my_policy.py"))
    assert by_file.returncode == 0, by_file.stdout + by_file.stderr
    # By module path, from a folder on PYTHONPATH: the same policy, the same ledger.
    by_module = subprocess.run(
        [HASHPIVOT, "backtest", "-c", str(EXAMPLES / "west-texas" / "site.yaml"), *period,
         "--no-ray", "--no-baselines", "--oracle-iterations", "1", "--report",
         str(tmp_path / "module"), "-p", "my_policy:MyPolicy"],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"})
    assert by_module.returncode == 0, by_module.stdout + by_module.stderr
    rows = [json.loads((tmp_path / d / "summary.json").read_text())["policies"]
            for d in ("file", "module")]
    assert rows[0]["my-policy"]["net_usd"] == rows[1]["my-policy"]["net_usd"]


_NETWORKED = '''\
import socket

import numpy as np

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason


class Networked(Policy):
    name = "networked"

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        socket.create_connection(("prices.example.com", 443), timeout=1)
        n = ctx.fleet.n
        return PolicyDecision(ctx.current.copy(), np.full(n, Reason.UNCHANGED, np.int16))
'''


def test_policies_check_refuses_the_network(tmp_path: Path) -> None:
    policy = tmp_path / "networked.py"
    policy.write_text(_NETWORKED)
    done = _hashpivot("policies", "check", str(policy))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "must not use the network" in done.stdout
