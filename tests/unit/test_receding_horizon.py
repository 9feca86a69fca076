"""The receding-horizon policy: plans over the hours ahead (published prices first),
keeps the plan under the cap by value per watt, and commits the first step; reachable by
name from the CLI and a backtest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.engine import build_context
from orchestrator.framework import MarketHistory, Reason
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from orchestrator.models.config import GuardConfig
from policies.receding_horizon import RecedingHorizon
from tests.conftest import make_prices, profiles
from tests.unit.test_cli import hashpivot
from tests.unit.test_oracle_cli import _capped_golden

NOW = 1_750_003_200.0  # on the hour
GUARDS = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)


def _ctx(fleet: FleetTable, ahead: list[float]) -> object:
    past = np.arange(NOW - 48 * 3600, NOW + 1, 3600.0)
    times = np.concatenate([past, NOW + 3600.0 * np.arange(1, len(ahead) + 1)])
    power = np.concatenate([np.full(past.shape, 40.0), ahead])
    return build_context(now_s=NOW, prices=make_prices(fleet, observed_s=NOW, power_usd_mwh=40.0),
                         demand=DemandSummary.empty(0), fleet=fleet, guards=GUARDS,
                         history=MarketHistory(times, np.full(times.shape, 55.0), power))


def test_a_published_spike_idles_a_miner_when_it_outweighs_the_restart() -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], [0], modes=[Mode.MINE])
    ahead = [900.0] * 6
    ctx = _ctx(fleet, ahead)
    s = ctx.scores  # type: ignore[attr-defined]
    # Over this hour and the next 6 (all published): mining vs idling, by hand.
    mine = s.value[Mode.MINE, 0] + sum(s.revenue[Mode.MINE, 0] - 3500 / 1e6 * p for p in ahead)
    idle = (s.value[Mode.IDLE, 0] + sum(-15 / 1e6 * p for p in ahead)
            - s.switch_cost_usd[Mode.IDLE, 0])
    assert idle > mine
    d = RecedingHorizon({"horizon_h": 6}).decide(ctx)  # type: ignore[arg-type]
    assert (int(d.target[0]), int(d.reason[0])) == (Mode.IDLE, Reason.PAYS_BACK_IN_HORIZON)
    # One hour of the spike does not pay for stopping and restarting.
    one = s.value[Mode.MINE, 0] + s.revenue[Mode.MINE, 0] - 3500 / 1e6 * 900.0
    stop = s.value[Mode.IDLE, 0] - 15 / 1e6 * 900.0 - s.switch_cost_usd[Mode.IDLE, 0]
    if one >= stop:
        d1 = RecedingHorizon({"horizon_h": 1}).decide(ctx)  # type: ignore[arg-type]
        assert int(d1.target[0]) == Mode.MINE


def test_the_plan_keeps_the_cap_by_value_per_watt() -> None:
    # Two S19 XPs and two S21s mining; the cap fits three machines: an S19 XP (less value
    # per watt over the horizon) waits idle.
    fleet = FleetTable.build(profiles("s19-xp", "s21"),
                             [Site(name="s", power_cap_kw=3.01 + 3.5 + 3.5 + 0.5)],
                             [0, 0, 1, 1], modes=[1, 1, 1, 1])
    ctx = _ctx(fleet, [40.0] * 4)
    d = RecedingHorizon({"horizon_h": 4}).decide(ctx)  # type: ignore[arg-type]
    assert d.target.tolist() == [Mode.MINE, Mode.IDLE, Mode.MINE, Mode.MINE]
    assert int(d.reason[1]) == Reason.CAP_CURTAILED_BY_POLICY
    w = ctx.scores.watts  # type: ignore[attr-defined]
    assert w[d.target, np.arange(4)].sum() <= ctx.site_power_cap_w[0]  # type: ignore[attr-defined]


def test_listed_and_backtested_by_name(tmp_path: Path) -> None:
    listed = hashpivot("policies", "list")
    assert listed.returncode == 0 and "receding-horizon" in listed.stdout
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(_capped_golden(tmp_path)), "--no-ray",
                     "--policy", "receding-horizon", "--report", str(out),
                     "--oracle-iterations", "20")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    row = summary["policies"]["receding-horizon"]
    assert row["guards"] == "configured guards" and not row["baseline"]
    assert row["net_usd"] <= summary["oracle"]["bound_usd"]
