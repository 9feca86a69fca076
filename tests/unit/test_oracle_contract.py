"""The hindsight oracle on a site with a power contract (examples/contracts/site.yaml: a
fixed-price block resold at spot, a demand charge, 4CP alerts and a demand-response
commitment), through `hashpivot backtest`, over a week holding a called event
(2024-08-20 18:00-20:00 UTC) and a peak alert (2024-08-23 20:00 UTC):

- no built-in policy nor baseline earns more than the bound;
- the feasible value is the ledger this test gets by replaying the schedule, node by node,
  through the backtest's simulated site with a policy of its own;
- the schedule plans with the contract: no miner runs in the alerted hour, and the site
  draws at most the event's max_draw_kw while the event is in force;
- on the same site buying at a time-of-use price with a curtailment credit, no run earns
  more than the bound either.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.backtest.runner import prepare_backtest, run_oracle_on_site, simulate
from orchestrator.models.config import load_config
from orchestrator.models.modes import Mode
from tests.unit.test_cli import hashpivot
from tests.unit.test_oracle_site import BUILT_INS, _Replay

ROOT = Path(__file__).parents[2]
SITE = ROOT / "examples" / "contracts" / "site.yaml"
START, END = "2024-08-19T00:00:00Z", "2024-08-25T00:00:00Z"
DATA = ROOT / "orchestrator" / "data" / "recorded"


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _alerted_hours() -> list[float]:
    """Start of each alerted hour in the period, read from the bundled alert file."""
    with (DATA / "ercot_4cp_alerts_illustrative.csv").open() as f:
        return [_stamp(r["time"]) for r in csv.DictReader(f)
                if float(r["alert"]) > 0 and _stamp(START) <= _stamp(r["time"]) < _stamp(END)]


def _event_hours() -> list[tuple[float, float]]:
    """Each event of the bundled calendar in the period, from its start to its end."""
    with (DATA / "ercot_dr_events_illustrative.csv").open() as f:
        return [(_stamp(r["start"]), _stamp(r["end"])) for r in csv.DictReader(f)
                if _stamp(START) <= _stamp(r["start"]) < _stamp(END)]


def test_the_oracle_bounds_every_run_and_its_schedule_plans_with_the_contract(
    tmp_path: Path,
) -> None:
    alerted, events = _alerted_hours(), _event_hours()
    assert alerted and events, "the period holds an alert and an event"
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(SITE), "--no-ray", "--report", str(out),
                     "--from", START, "--to", END, *(a for p in BUILT_INS for a in ("-p", p)))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    oracle, policies = summary["oracle"], summary["policies"]
    bound = oracle["bound_usd"]
    assert set(BUILT_INS) <= set(policies)
    assert sum(1 for p in policies.values() if p["baseline"]) == 3
    for name, row in policies.items():
        assert row["net_usd"] <= bound, f"{name}: {row['net_usd']} above the bound {bound}"
    assert oracle["on_site_ledger"] is True
    assert oracle["feasible_usd"] <= bound

    # The same schedule, replayed here through the simulated site.
    config = load_config(SITE)
    inputs = prepare_backtest(config, start=datetime.fromisoformat(START),
                              end=datetime.fromisoformat(END))
    _, _, follower = run_oracle_on_site(inputs)
    schedule = follower.issued
    physical = config.guards.model_copy(update={
        "min_dwell_s": 0.0, "max_switches_per_node_per_day": 1e9,
        "max_fleet_switch_share_per_hour": 1.0})
    step_s = config.backtest.step_s
    ledger = simulate(config, _Replay(inputs.start_s, step_s, schedule), physical,
                      fleet=inputs.fleet, times=inputs.times, known=inputs.known,
                      realized=inputs.realized, jobs=inputs.jobs, history=None)
    assert oracle["feasible_usd"] == pytest.approx(float(ledger.net.sum()), rel=1e-12,
                                                   abs=1e-9)
    # Every line of the contract is billed on that ledger.
    assert ledger.contracts and ledger.programs is not None
    assert ledger.resale_revenue.sum() > 0 and ledger.demand_charge.sum() > 0

    # No miner runs in an alerted hour: 60 USD/kW ÷ 4 intervals is far above what any
    # miner earns in an hour (a few USD per kW at most).
    for t in alerted:
        k = round((t - inputs.start_s) / step_s)
        assert np.all(schedule[k] != Mode.MINE), datetime.fromtimestamp(t, UTC)
    # While an event holds the site, it draws at most the commitment's max_draw_kw.
    dr = config.sites[0].contract.demand_response  # type: ignore[union-attr]
    assert dr is not None
    for start, end in events:
        inside = (inputs.times >= start) & (inputs.times < end)
        assert inside.any()
        assert np.all(ledger.programs.site_kw[inside, 0] <= dr.max_draw_kw + 1e-6)
    assert float(ledger.programs.shortfall.sum()) == 0.0


def test_the_bound_holds_with_a_time_of_use_price_and_a_curtailment_credit(
    tmp_path: Path,
) -> None:
    site = yaml.safe_load(SITE.read_text())
    contract = site["sites"][0]["contract"]
    contract["price"] = {
        "kind": "time_of_use", "default_usd_mwh": 35.0,
        "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start_hour": 14,
                     "end_hour": 19, "usd_mwh": 180.0}]}
    contract["curtailment_credit"] = {"usd_mwh": 60.0, "baseline_kw": 3000.0,
                                      "hours": [{"start_hour": 15, "end_hour": 18}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(path), "--no-ray", "--report", str(out),
                     "--from", START, "--to", "2024-08-22T00:00:00Z", "-p", "greedy",
                     "-p", "hysteresis")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    bound = summary["oracle"]["bound_usd"]
    policies = summary["policies"]
    assert policies["greedy"]["curtailment_credit_usd"] > 0
    for name, row in policies.items():
        assert row["net_usd"] <= bound, f"{name}: {row['net_usd']} above the bound {bound}"
    assert summary["oracle"]["feasible_usd"] <= bound
