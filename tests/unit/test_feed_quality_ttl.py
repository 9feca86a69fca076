"""Property: no sequence of feed values drives the engine to switch on data older than
its time-to-live.

Scripted feeds (up, down, any value, any timestamp) stand in for the APIs; each cycle
does what the controller does — snapshot, and on a FeedError hold every node; else
score, decide and guard — and whenever the plan switches a node, every value it used
must be within its feed's TTL and the engine's `stale_after_s`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from orchestrator.adapters.market.chain import ChainReading
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.quality import Candidate, FeedRejectError, Quote, Reject
from orchestrator.engine import build_context, decide
from orchestrator.engine.plan import Plan
from orchestrator.engine.prices import snapshot_to_prices
from orchestrator.errors import FeedError
from orchestrator.models import DemandSummary, FleetTable, Mode, Site
from orchestrator.models.config import GuardConfig
from orchestrator.models.feeds_config import LiveMarketConfig
from policies.greedy import Greedy
from tests.conftest import profiles

START = 1_736_000_000.0
HEIGHT = 877_320
D = 1.1e14

#: (value, observed − now) or None: the feed is down this cycle.
Reading = tuple[float, float] | None


@dataclass
class Step:
    dt: float
    chain: tuple[int, float, float, float] | None  # height step, difficulty ×, fees, lag
    prices: list[Reading]
    power: Reading
    gpu: Reading


@dataclass
class Script:
    now: float = START
    height: int = HEIGHT
    step: Step | None = None
    log: list[str] = field(default_factory=list)


class ScriptedChain:
    name = "chain@script"

    def __init__(self, script: Script) -> None:
        self.s = script

    def read(self, now_s: float) -> ChainReading:
        st_ = self.s.step
        if st_ is None or st_.chain is None:
            raise FeedRejectError(Reject.TIMEOUT, "down", source=self.name)
        dh, factor, fees, lag = st_.chain
        self.s.height += dh
        return ChainReading(
            source=self.name,
            observed_s=now_s + lag,
            height=self.s.height,
            difficulty=D * factor,
            fees_btc_per_block=fees,
            fees_method="per_block",
        )


class ScriptedPrice:
    def __init__(self, script: Script, i: int) -> None:
        self.s, self.i, self.name = script, i, f"price{i}@script"

    def quote(self, now_s: float) -> Quote:
        st_ = self.s.step
        r = None if st_ is None or self.i >= len(st_.prices) else st_.prices[self.i]
        if r is None:
            raise FeedRejectError(Reject.SERVER_ERROR, "down", source=self.name)
        return Quote(r[0], self.name, now_s + r[1])


class ScriptedOne:
    def __init__(self, script: Script, attr: str) -> None:
        self.s, self.attr, self.name = script, attr, f"{attr}@script"

    def _reading(self, now_s: float) -> Candidate:
        r = None if self.s.step is None else getattr(self.s.step, self.attr)
        if r is None:
            raise FeedRejectError(Reject.TIMEOUT, "down", source=self.name)
        return Candidate(r[0], self.name, now_s + r[1])

    def read(self, now_s: float) -> Candidate:
        return self._reading(now_s)


class ScriptedGpu(ScriptedOne):
    def read(self, now_s: float) -> dict[str, Candidate]:  # type: ignore[override]
        return {"H100_80GB_SXM5": self._reading(now_s)}


def mostly(healthy: st.SearchStrategy, garbage: st.SearchStrategy) -> st.SearchStrategy:
    """Healthy readings 7 times in 10, else anything (down, NaN, negative, any time)."""
    return st.integers(0, 9).flatmap(lambda k: healthy if k < 7 else garbage)


values = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e3, 2e5)
lags = st.floats(-20_000.0, 1_000.0) | st.sampled_from([0.0, -1.0, 600.0, -900.5])
garbage: st.SearchStrategy[Reading] = st.none() | st.tuples(values, lags)
recent = st.floats(-120.0, 0.0)
steps = st.lists(
    st.builds(
        Step,
        dt=st.sampled_from([0.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 4 * 3600.0]),
        chain=mostly(
            st.tuples(st.integers(0, 3), st.just(1.0), st.floats(0.01, 0.5), recent),
            st.none()
            | st.tuples(
                st.integers(0, 2100),
                st.sampled_from([1.0, 1.05, 0.5, 5.0]),
                st.floats(-1.0, 2.0),
                lags,
            ),
        ),
        prices=st.lists(
            mostly(st.tuples(st.floats(90_000, 110_000), recent), garbage),
            min_size=3,
            max_size=3,
        ),
        power=mostly(st.tuples(st.floats(-20, 200), st.floats(-3600, 0)), garbage),
        gpu=mostly(st.tuples(st.floats(1.0, 5.0), st.floats(-3600, 0)), garbage),
    ),
    min_size=1,
    max_size=25,
)


def fleet(since: float) -> FleetTable:
    # Idle S21s and H100s with the dwell long served: any fresh market makes a switch pay.
    return FleetTable.build(
        profiles("s21", "h100-sxm-8x"),
        [Site(name="default")],
        [0, 0, 0, 1, 1],
        modes=[Mode.IDLE] * 5,
        since_s=since,
    )


def cycle(src: LiveMarketSource, now: float, f: FleetTable, guards: GuardConfig) -> Plan | None:
    """One controller cycle; None means the safe state: every node held as it is."""
    try:
        snap = src.snapshot(now)
    except FeedError:
        return None
    ctx = build_context(
        now_s=now,
        prices=snapshot_to_prices(snap, f),
        demand=DemandSummary(np.array([64.0]), np.array([np.nan])),
        fleet=f,
        guards=guards,
    )
    plan = decide(ctx, Greedy(), guards)
    if plan.changed.size:
        for name, obs in snap.values():
            age = now - obs.observed_at.timestamp()
            assert age <= src.quality.ttl_s(name), f"switched on {name} {age:.0f} s old"
            assert age <= guards.stale_after_s, f"switched on {name} {age:.0f} s old"
    return plan


@settings(max_examples=400, deadline=None)
@given(script_steps=steps, stale_after_h=st.sampled_from([0.5, 3.0, 48.0]))
def test_never_switch_on_data_older_than_its_ttl(
    script_steps: list[Step], stale_after_h: float
) -> None:
    script = Script()
    config = LiveMarketConfig(poll_interval_s=0.0, power_usd_mwh_fixed=None)
    src = LiveMarketSource(
        config,
        chain=[ScriptedChain(script)],
        prices=[ScriptedPrice(script, i) for i in range(3)],
        power={"default": ScriptedOne(script, "power")},
        gpu=[ScriptedGpu(script, "gpu")],
    )
    guards = GuardConfig(
        min_dwell_s=0.0,
        max_fleet_switch_share_per_hour=1.0,
        max_switches_per_node_per_day=1000.0,
        stale_after_s=stale_after_h * 3600.0,
    )
    f = fleet(START - 86_400.0)
    switched = 0
    for step in script_steps:
        script.now += step.dt
        script.step = step
        plan = cycle(src, script.now, f, guards)
        if plan is not None and plan.changed.size:
            switched += 1
    # How often scripts reach switching states (see --hypothesis-show-statistics).
    event(f"cycles that switched: {min(switched, 3)}{'+' if switched > 3 else ''}")


def test_the_property_is_not_vacuous() -> None:
    """A healthy script does switch; the same script gone quiet holds."""
    script = Script()
    src = LiveMarketSource(
        LiveMarketConfig(poll_interval_s=0.0),
        chain=[ScriptedChain(script)],
        prices=[ScriptedPrice(script, i) for i in range(3)],
        power={"default": ScriptedOne(script, "power")},
        gpu=[ScriptedGpu(script, "gpu")],
    )
    guards = GuardConfig(min_dwell_s=0.0, max_fleet_switch_share_per_hour=1.0)
    f = fleet(START - 86_400.0)
    script.step = Step(0.0, (0, 1.0, 0.07, 0.0), [(97_000.0, 0.0)] * 3, (30.0, 0.0), (2.5, 0.0))
    plan = cycle(src, START, f, guards)
    assert plan is not None and plan.changed.size > 0
    script.step = Step(0.0, None, [None] * 3, None, None)
    assert cycle(src, START + 600, f, guards) is not None  # within every TTL
    assert cycle(src, START + 901, f, guards) is None  # BTC/USD past 15 min: hold
