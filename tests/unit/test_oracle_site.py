"""The hindsight oracle's feasible value is what the simulated site earns for its schedule,
and its bound holds over what the site's job queue can serve.

- `hashpivot backtest` reports as feasible the net that the backtest machinery's ledger
  gives when the schedule, node by node, is replayed through it here by a policy of this
  test's own.
- No built-in policy or baseline beats the bound on the bundled example sites.
- Whatever GPUs a schedule offers, the GPU-hours the queue serves by the end of a step
  never exceed the running total of `queued_arrivals_gpus`, and those of each step never
  exceed `window_demand_gpus`: the bound's two AI limits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.backtest.jobbook import JobBook
from orchestrator.backtest.jobs import JobStream
from orchestrator.backtest.oracle import queued_arrivals_gpus, window_demand_gpus
from orchestrator.backtest.runner import prepare_backtest, run_oracle_on_site, simulate
from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason
from orchestrator.models.config import load_config
from tests.unit.test_cli import hashpivot
from tests.unit.test_oracle_cli import _capped_golden

ROOT = Path(__file__).parents[2]
BUILT_INS = ("greedy", "hysteresis", "power-capped", "lookahead", "receding-horizon")


class _Replay(Policy):
    """Returns, at each step, the node modes recorded for it."""

    name: ClassVar[str] = "replay"

    def __init__(self, start_s: float, step_s: float, targets: np.ndarray) -> None:
        super().__init__()
        self.start_s, self.step_s, self.targets = start_s, step_s, targets

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        k = round((ctx.now_s - self.start_s) / self.step_s)
        return PolicyDecision(self.targets[k].copy(),
                              np.full(ctx.fleet.n, Reason.HINDSIGHT_OPTIMUM, dtype=np.int16))


def test_reported_feasible_value_is_the_sites_ledger_for_the_schedule(tmp_path: Path) -> None:
    site = _capped_golden(tmp_path)
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(site), "--no-ray", "--policy", "greedy",
                     "--report", str(out))
    assert proc.returncode == 0, proc.stderr
    oracle = json.loads((out / "summary.json").read_text())["oracle"]
    assert oracle["on_site_ledger"] is True
    assert oracle["bound_demand"] == "arrivals, cumulative; job windows"

    config = load_config(site)
    inputs = prepare_backtest(config)
    _, _, follower = run_oracle_on_site(inputs)
    schedule = follower.issued
    assert schedule.shape == (inputs.times.shape[0], inputs.fleet.n)
    # The physical guards only (cap, leases, stale data), as the oracle plans.
    physical = config.guards.model_copy(update={
        "min_dwell_s": 0.0, "max_switches_per_node_per_day": 1e9,
        "max_fleet_switch_share_per_hour": 1.0})
    ledger = simulate(config, _Replay(inputs.start_s, config.backtest.step_s, schedule),
                      physical, fleet=inputs.fleet, times=inputs.times, known=inputs.known,
                      realized=inputs.realized, jobs=inputs.jobs, history=None)
    net = float(ledger.net.sum())
    assert oracle["feasible_usd"] == pytest.approx(net, rel=1e-12, abs=1e-9)
    assert oracle["net_usd"] == oracle["feasible_usd"]
    assert oracle["ai_revenue_usd"] == pytest.approx(float(ledger.ai_revenue.sum()), rel=1e-12)
    # The schedule uses AI and the cap binds: the check is not about an empty schedule.
    assert ledger.ai_revenue.sum() > 0 and np.any(schedule == 2)
    assert oracle["feasible_usd"] <= oracle["bound_usd"]


@pytest.mark.parametrize(("example", "start", "end"), [
    ("west-texas", "2024-08-05T00:00:00Z", "2024-08-09T00:00:00Z"),
    ("mixed-site", "2024-08-01T00:00:00Z", "2024-08-04T00:00:00Z"),
    ("gpu-only", "2025-10-21T00:00:00Z", "2025-10-25T00:00:00Z"),
])
def test_no_policy_or_baseline_beats_the_bound(tmp_path: Path, example: str, start: str,
                                               end: str) -> None:
    out = tmp_path / "report"
    config = ROOT / "examples" / example / "site.yaml"
    proc = hashpivot("backtest", "-c", str(config), "--no-ray", "--report", str(out),
                     "--from", start, "--to", end,
                     *(a for p in BUILT_INS for a in ("-p", p)))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    bound = summary["oracle"]["bound_usd"]
    policies = summary["policies"]
    assert set(BUILT_INS) <= set(policies)
    assert sum(1 for p in policies.values() if p["baseline"]) == 3
    for name, row in policies.items():
        assert row["net_usd"] <= bound, f"{name}: {row['net_usd']} above the bound {bound}"
    assert summary["oracle"]["feasible_usd"] <= bound


@st.composite
def _jobs_and_offers(draw: st.DrawFn) -> tuple[JobStream, np.ndarray, np.ndarray, float]:
    steps = draw(st.integers(1, 12))
    nodes = draw(st.integers(1, 4))
    step_s = 3600.0
    n_jobs = draw(st.integers(0, 12))
    submit = np.sort(np.array(draw(st.lists(st.floats(-1800, steps * step_s), min_size=n_jobs,
                                            max_size=n_jobs))))
    gpus = np.array(draw(st.lists(st.sampled_from([1.0, 2.0, 4.0, 8.0, 16.0]),
                                  min_size=n_jobs, max_size=n_jobs)))
    dur = np.array(draw(st.lists(st.floats(60, 5 * step_s), min_size=n_jobs,
                                 max_size=n_jobs)))
    offers = np.array(draw(st.lists(st.lists(st.booleans(), min_size=nodes, max_size=nodes),
                                    min_size=steps, max_size=steps)))
    ready = np.array(draw(st.lists(st.floats(0, 2 * step_s), min_size=nodes, max_size=nodes)))
    jobs = JobStream(submit, gpus, dur, np.zeros(n_jobs, dtype=bool), 2.0, None)
    return jobs, offers, ready, step_s


@settings(max_examples=200, deadline=None)
@given(_jobs_and_offers(), st.floats(0.5, 24))
def test_no_offering_serves_more_than_the_bounds_ai_limits(
    case: tuple[JobStream, np.ndarray, np.ndarray, float], max_wait_h: float
) -> None:
    jobs, offers, ready, step_s = case
    steps, nodes = offers.shape
    node_gpus = np.full(nodes, 8.0)
    t0 = 1_700_000_000.0
    times = t0 + step_s * np.arange(steps)
    shifted = JobStream(jobs.submit_s + t0, jobs.gpus, jobs.duration_s, jobs.interruptible,
                        2.0, None)
    book = JobBook(shifted, nodes, max_wait_h * 3600.0)
    served = np.zeros(steps)
    for k in range(steps):
        now = float(times[k])
        book.arrive(now)
        _, gpu_h = book.serve(offers[k], node_gpus, t0 + ready, now, now + step_s)
        served[k] = gpu_h.sum()
    limit = queued_arrivals_gpus(shifted, times, step_s, node_gpus) * step_s / 3600.0
    assert np.all(np.cumsum(served) <= np.cumsum(limit) + 1e-9)
    # Nodes here are ready at most 2 h after the first step: the longest start delay.
    window = window_demand_gpus(shifted, times, step_s, node_gpus,
                                max_wait_s=max_wait_h * 3600.0, start_delay_s=2 * step_s)
    assert np.all(served <= window * step_s / 3600.0 + 1e-9)
