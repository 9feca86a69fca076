"""Policy outputs, fuzzed: whatever a policy returns (wrong shapes, NaN, unknown modes,
strings, a crash), the cycle ends in a plan the guards made safe or holds every node with
the policy's error journaled — never a crash of the controller, never an invalid target."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from orchestrator.engine import build_context, decide
from orchestrator.errors import PolicyError
from orchestrator.framework import DecisionContext, Policy, PolicyDecision
from orchestrator.framework.reasons import Reason
from orchestrator.models import DemandSummary, Mode
from orchestrator.models.config import GuardConfig
from orchestrator.runtime.metrics import ControllerMetrics
from tests.conftest import make_prices, mixed_fleet, profiles

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
N = 8  # mixed_fleet(): 6 ASICs, then 2 GPU nodes

dtypes = st.sampled_from([np.int8, np.int16, np.int64, np.uint8, np.float32, np.float64,
                          np.complex128, np.bool_])


@st.composite
def outputs(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.one_of(st.none(), st.text(max_size=4), st.integers(), st.floats(),
                              st.lists(st.integers(-3, 5), max_size=10)))
    if kind == 1:
        shape = draw(st.sampled_from([(N,), (N - 1,), (N + 1,), (0,), (N, 1), (2, N), ()]))
        return draw(hnp.arrays(draw(dtypes), shape))
    if kind == 2:
        return np.array(draw(st.lists(st.sampled_from(["ai", "mine", "idle", "gpu", ""]),
                                      min_size=N, max_size=N)))
    values = st.one_of(st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([0, 1, 2, 0.5, 1.999, -0.0, np.nan, np.inf]))
    arr = np.array(draw(st.lists(values, min_size=N, max_size=N)), dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN cast to int: garbage in, on purpose
        return arr.astype(draw(st.sampled_from([np.float64, np.int64, np.int8])))


class Returns(Policy):
    name: ClassVar[str] = "returns"

    def __init__(self, target: Any, reason: Any, crash: bool = False) -> None:
        super().__init__()
        self.target, self.reason, self.crash = target, reason, crash

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        if self.crash:
            raise ZeroDivisionError("a bug in the policy")
        return PolicyDecision(target=self.target, reason=self.reason)


def context() -> DecisionContext:
    fleet = mixed_fleet(cap_kw=CAP_W / 1000.0)
    return build_context(now_s=1e6, prices=make_prices(fleet),
                         demand=DemandSummary.empty(len(fleet.gpu_models)), fleet=fleet,
                         guards=GuardConfig(min_dwell_s=0))


def refusal_expected(target: Any, reason: Any, crash: bool) -> bool:
    """Whether the engine must refuse this output, worked out from the output itself: a
    crash, anything but one real number per node, or a reason that is not a known code."""
    if crash:
        return True
    arrays = []
    for value in (target, reason):
        try:
            arr = np.asarray(value)
        except Exception:  # ragged or odd input: not numbers per node
            return True
        if arr.shape != (N,) or arr.dtype.kind not in "iuf":
            return True
        arrays.append(arr)
    codes = {int(r) for r in Reason}
    return not all(np.isfinite(r) and float(r) == int(r) and int(r) in codes
                   for r in arrays[1].tolist())


WATTS = [(p.watts_idle, p.watts_mine, p.watts_ai) for p in profiles("s19-xp", "s21",
                                                                    "h100-sxm-8x")]
PROFILE_OF = [0, 0, 0, 1, 1, 1, 2, 2]  # mixed_fleet(): 3 S19 XP, 3 S21, 2 H100 nodes
CAP_W = 20_000.0


@FUZZ
@example(np.full(N, 1, dtype=np.int64), np.zeros(N, dtype=np.int64), False)  # all mining
@example(np.full(N, 2.0), np.full(N, np.nan), False)  # NaN reasons
@example(np.full(N, 2, dtype=np.int8), np.zeros(N, dtype=np.int16), True)  # a crash
@given(outputs(), outputs(), st.booleans())
def test_any_policy_output_is_refused_or_made_safe(target: Any, reason: Any, crash: bool) -> None:
    ctx = context()
    refuse = refusal_expected(target, reason, crash)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plan = decide(ctx, Returns(target, reason, crash), GuardConfig(min_dwell_s=0))
        except PolicyError as exc:
            assert refuse, f"a usable output was refused: {exc}"
            assert str(exc), "the error says what was wrong"
            return
    assert not refuse, "an output that cannot be read as modes per node was acted on"
    assert plan.target.shape == (N,) and plan.target.dtype == np.int8
    assert set(np.unique(plan.target)) <= {0, 1, 2}
    asic = np.array([p < 2 for p in PROFILE_OF])
    assert not np.any(plan.target[asic] == Mode.AI)
    valid = {int(r) for r in Reason}
    assert {int(r) for r in plan.reason} <= valid
    # Every node's full-load draw in its planned mode, from the profiles: no lease is
    # protected here and idle draws far less than the cap, so the plan always fits.
    planned = sum(WATTS[p][int(t)] for p, t in zip(PROFILE_OF, plan.target, strict=True))
    assert planned <= CAP_W + 1e-6
    assert not plan.site_over_cap.any()
    ControllerMetrics().observe_plan(plan, 0.01)  # and the metrics can name every reason
    for i in plan.changed:
        plan.explain(int(i))


def test_a_policy_that_crashes_holds_the_cycle_and_is_journaled(tmp_path: Path) -> None:
    from tests.faults.fake_site import FakeSite

    site = FakeSite(tmp_path)
    site.use_policy(Returns(None, None, crash=True))
    outcome = site.cycle.run_once()
    # Every node kept as it is (nothing over a cap here to shed): no write.
    assert outcome.plan is not None and outcome.plan.held is not None
    assert not outcome.plan.changed.size and site.kube.writes == 0
    assert set(outcome.plan.reason.tolist()) == {int(Reason.POLICY_FAILED)}
    held = outcome.record.plan["held"]
    assert "ZeroDivisionError" in held and "a bug in the policy" in held
    assert outcome.record.market is not None  # the market was fine: it is on record
