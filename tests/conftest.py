"""Shared test helpers: small fleets and market prices built in code, not recorded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _pytest.reports import TestReport
from hypothesis import HealthCheck, settings

from orchestrator.models import FleetTable, HardwareProfile, MarketPrices, Site, builtin_catalog

# One control plane per session for every suite that needs one (tier 2, the fault suite).
from tests.tier2.fixtures import k8s_namespace, kwok_cluster, tier2_required  # noqa: F401

# Every Ray runtime a test starts (in this process or in a `hashpivot` subprocess) is its
# own: with no address, ray.init() would join whatever cluster Ray's current-cluster file
# names, and hang on a dead one. HASHPIVOT_TEST_RAY_ADDRESS points the tests at a cluster
# on purpose (docs/testing.md).
os.environ["RAY_ADDRESS"] = os.environ.get("HASHPIVOT_TEST_RAY_ADDRESS", "local")

#: Suites that need the tier-2 tools (control plane, helm) without carrying the marker.
_TOOL_SUITES = (Path(__file__).parent / "chart",)

# Hypothesis profiles. "ci" (the default) is derandomized: every run tries the same
# examples, so a red build always means changed code, never an unlucky draw. "explore"
# draws fresh examples, many more of them: `make explore` (docs/testing.md). Failures it
# finds are kept as @example on the test, so "ci" tries them from then on.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=200, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", derandomize=False, deadline=None, max_examples=5_000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# Mutation testing (scripts/mutation.py) runs the tests once per mutant: fewer examples,
# still derandomized, so a mutant's verdict does not depend on the draw.
settings.register_profile(
    "mutation", derandomize=True, deadline=None, max_examples=40, print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _needs_tier2(item: pytest.Item) -> bool:
    path = Path(str(item.path)).resolve()
    return item.get_closest_marker("tier2") is not None or any(
        suite in path.parents for suite in _TOOL_SUITES
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Where tier 2 is required (CI, `make test`), a tier-2 or chart test that skips, for
    whatever reason and from whichever fixture, fails instead: a green run has run it."""
    outcome = yield
    report: TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and tier2_required() \
            and _needs_tier2(item):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"tier 2 is required here (CI or HASHPIVOT_REQUIRE_TIER2), but "
                           f"this test skipped: {reason}")


def hashprice_by_hand(difficulty: float, btc_usd: float, subsidy: float, fees: float) -> float:
    """USD per TH/s per day, worked out here rather than with the economics module the
    tests check: one TH/s's share of the network's hashrate (difficulty × 2^32 / 600 s
    per block) times the 144 blocks a day pay. At the design's check point (D = 1.1e14,
    97,000 USD, 3.125 + 0.1 BTC) that is 57.21 USD/PH/day."""
    return 1e12 / (difficulty * 2**32 / 600.0) * 144 * (subsidy + fees) * btc_usd


def make_prices(
    fleet: FleetTable,
    *,
    btc_usd: float = 97_000.0,
    difficulty: float = 1.1e14,
    fees: float = 0.1,
    subsidy: float = 3.125,
    power_usd_mwh: float = 40.0,
    gpu_usd_per_gpu_hour: float = 2.0,
    gpu_hashpower_usd_per_unit_day: float = 0.5,
    observed_s: float = 0.0,
) -> MarketPrices:
    hp_th = hashprice_by_hand(difficulty, btc_usd, subsidy, fees)
    unit = np.array([hp_th if a == "sha256" else gpu_hashpower_usd_per_unit_day
                     for a in fleet.algorithms])
    return MarketPrices(
        btc_usd=btc_usd,
        difficulty=difficulty,
        fees_btc_per_block=fees,
        subsidy_btc=subsidy,
        usd_per_unit_day=unit,
        gpu_usd_per_gpu_hour=np.full(len(fleet.gpu_models), gpu_usd_per_gpu_hour),
        power_usd_mwh=np.full(len(fleet.sites), power_usd_mwh),
        oldest_observed_s=observed_s,
    )


def profiles(*names: str) -> list[HardwareProfile]:
    catalog = builtin_catalog()
    return [catalog[n] for n in names]


def mixed_fleet(
    n_asic_old: int = 3,
    n_asic_new: int = 3,
    n_gpu: int = 2,
    *,
    cap_kw: float | None = None,
    modes: list[int] | None = None,
    since_s: float = -1e6,
) -> FleetTable:
    """S19 XP, S21 and H100 nodes at one site."""
    prof = [0] * n_asic_old + [1] * n_asic_new + [2] * n_gpu
    return FleetTable.build(
        profiles("s19-xp", "s21", "h100-sxm-8x"),
        [Site(name="site", power_cap_kw=cap_kw)],
        prof,
        modes=modes,
        since_s=since_s,
    )


@pytest.fixture
def fleet() -> FleetTable:
    return mixed_fleet()
