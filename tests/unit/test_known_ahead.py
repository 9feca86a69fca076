"""Values published ahead (day-ahead prices) reach a policy as the known future, and
nothing later: a backtest on a series published 12 h before each hour, with a policy that
records what it was shown."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from orchestrator.backtest.runner import run_backtest
from orchestrator.framework import DecisionContext, MarketHistory, Policy, PolicyDecision
from orchestrator.models.config import load_config
from policies.lookahead import LookaheadParams, forecast_power
from tests.unit.test_cli import GOLDEN

AHEAD_S = 12 * 3600.0


class ShownFuture(Policy):
    """Keeps every mode; remembers the known future it was shown at each decision."""

    name: ClassVar[str] = "shown-future"
    uses_history: ClassVar[bool] = True
    seen: ClassVar[list[tuple[float, np.ndarray, np.ndarray]]] = []

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        future = ctx.known_future
        ShownFuture.seen.append((ctx.now_s, future.times_s.copy(), future.power_usd_mwh.copy()))
        return PolicyDecision.keep(ctx)


def _published_ahead(tmp_path: Path) -> Path:
    text = GOLDEN.read_text()
    text = text.replace("observed_lag_s: 3600", f"observed_lag_s: {-AHEAD_S:.0f}")
    text = text.replace("path: power.csv", f"path: {GOLDEN.parent / 'power.csv'}")
    text = text.replace("path: jobs.csv", f"path: {GOLDEN.parent / 'jobs.csv'}")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_a_policy_sees_published_prices_and_nothing_later(tmp_path: Path) -> None:
    rows = (GOLDEN.parent / "power.csv").read_text().splitlines()[1:]
    stamps = np.array([datetime.fromisoformat(r.split(",")[0]).timestamp() for r in rows])
    prices = np.array([float(r.split(",")[1]) for r in rows])
    ShownFuture.seen.clear()
    run_backtest(load_config(_published_ahead(tmp_path)),
                 policies=[f"{__name__}:ShownFuture"], baselines=False)
    assert len(ShownFuture.seen) > 20
    for now, times, power in ShownFuture.seen:
        # Exactly the rows for later hours whose publication (12 h before) is not after now.
        want = (stamps > now) & (stamps - AHEAD_S <= now)
        assert times.tolist() == stamps[want].tolist(), now
        assert power.tolist() == prices[want].tolist(), now
    # Early in the period a full 12 hours ahead is visible (until the file ends).
    assert max(len(t) for _, t, _ in ShownFuture.seen) == 12


def test_lookahead_plans_on_published_prices() -> None:
    now = 1_750_000_000.0 - 1_750_000_000.0 % 3600
    past = np.arange(now - 48 * 3600, now + 1, 3600.0)
    ahead = np.arange(now + 3600, now + 7 * 3600, 3600.0)
    times = np.concatenate([past, ahead])
    power = np.concatenate([np.full(past.shape, 30.0), [500.0, 480.0, 20.0, 25.0, 30.0, 35.0]])
    history = MarketHistory(times, np.full(times.shape, 55.0), power)
    params = LookaheadParams(horizon_h=8)
    path = forecast_power(history, now, 30.0, params)
    # Hours 1..6 are the published values; 7 and 8 come from the past (30 every hour).
    assert path[:6].tolist() == [500.0, 480.0, 20.0, 25.0, 30.0, 35.0]
    assert path[6:] == pytest.approx([30.0, 30.0])
    # The past alone (the same history cut at now) forecasts none of the spike.
    cut = MarketHistory(past, np.full(past.shape, 55.0), np.full(past.shape, 30.0))
    assert forecast_power(cut, now, 30.0, params) == pytest.approx([30.0] * 8)
