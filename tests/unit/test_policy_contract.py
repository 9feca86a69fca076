"""Every discovered policy (and every baseline) honours the policy contract."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from orchestrator.backtest.baselines import BASELINES
from orchestrator.engine import build_context
from orchestrator.framework import DecisionContext, MarketHistory, Policy, registered_policies
from orchestrator.framework.registry import resolve_policy_class
from orchestrator.models import DemandSummary, FleetTable, Site
from orchestrator.models.config import GuardConfig
from tests.conftest import make_prices, mixed_fleet, profiles

POLICY_CLASSES: list[type[Policy]] = [
    *(resolve_policy_class(name) for name in registered_policies()),
    *BASELINES,
]
NOW = 2_000_000.0


def _ctx(fleet: FleetTable, demand: DemandSummary | None = None) -> DecisionContext:
    hours = np.arange(NOW - 7 * 86400, NOW, 3600.0)
    history = MarketHistory(hours, np.full(hours.shape, 55.0), 30 + 20 * np.sin(hours / 7e3))
    return build_context(
        now_s=NOW,
        prices=make_prices(fleet, observed_s=NOW),
        demand=demand or DemandSummary.empty(len(fleet.gpu_models)),
        fleet=fleet,
        guards=GuardConfig(),
        history=history,
    )


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("policies must not touch the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_builtins_are_discovered() -> None:
    assert {"greedy", "hysteresis", "power-capped", "lookahead"} <= set(registered_policies())


@pytest.mark.parametrize("cls", POLICY_CLASSES, ids=lambda c: c.name or c.__name__)
def test_valid_output_and_deterministic(cls: type[Policy]) -> None:
    fleet = mixed_fleet(4, 4, 3, cap_kw=25.0, modes=[1] * 8 + [2] * 3)
    demand = DemandSummary(np.array([12.0]), np.array([np.nan]))
    ctx = _ctx(fleet, demand)
    before = fleet.mode.copy()
    first = cls().decide(ctx)
    second = cls().decide(ctx)
    assert first.target.shape == (fleet.n,)
    assert first.reason.shape == (fleet.n,)
    assert np.issubdtype(first.target.dtype, np.integer)
    assert set(np.unique(first.target)).issubset({0, 1, 2})
    np.testing.assert_array_equal(first.target, second.target)
    np.testing.assert_array_equal(first.reason, second.reason)
    np.testing.assert_array_equal(fleet.mode, before)  # inputs untouched


@pytest.mark.parametrize("cls", POLICY_CLASSES, ids=lambda c: c.name or c.__name__)
def test_empty_fleet(cls: type[Policy]) -> None:
    fleet = FleetTable.build(profiles("s21"), [Site()], np.zeros(0, dtype=np.int32))
    decision = cls().decide(_ctx(fleet))
    assert decision.target.shape == (0,)


@pytest.mark.parametrize("cls", POLICY_CLASSES, ids=lambda c: c.name or c.__name__)
def test_empty_demand_and_read_only_context(cls: type[Policy]) -> None:
    fleet = mixed_fleet(2, 2, 2, modes=[1, 1, 1, 1, 2, 2])
    ctx = _ctx(fleet)
    decision = cls().decide(ctx)
    assert decision.target.shape == (fleet.n,)
    with pytest.raises(ValueError):
        ctx.fleet.mode[0] = 0  # policies get read-only views
    with pytest.raises(ValueError):
        ctx.scores.value[0, 0] = 1.0


@pytest.mark.parametrize("name", sorted(registered_policies()))
def test_every_registered_policy_passes_policies_check(name: str) -> None:
    """The product's own contract check (`hashpivot policies check`) on every installed
    policy: many cycles across time zones, clock changes, spikes and restarts."""
    from orchestrator.testing import assert_policy_contract

    report = assert_policy_contract(name)
    assert report.cycles > 200
