"""Cold-start plausibility of chain values: a first block height is bounded by the rate
the chain can run at, a first difficulty must agree with the hashrate and block times it
implies (or wait for a BTC price to check the hashprice it implies).

Expectations come from the inputs: heights the real chain reached (the recorded daily
block counts bundled with hashpivot), the design's hashrate formula, and the bounds as
`orchestrator/adapters/market/quality.py` and `chain.py` state them.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from importlib import resources

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestrator.adapters.market.chain import ChainReading, check_hashrate_units
from orchestrator.adapters.market.quality import (
    ANCHOR_HEIGHT,
    ANCHOR_S,
    Candidate,
    DataQuality,
    Reject,
    height_check,
)
from orchestrator.models.feeds_config import LiveMarketConfig

TWO_32 = 2.0**32
#: A loaded machine makes data generation slow, not wrong.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _recorded_heights() -> list[tuple[float, int]]:
    """(end of day, s; chain height then) for every recorded day from the fourth halving
    on: block 840,000 was the first of 2024-04-20, so a day ends at 839,999 plus the
    blocks counted since."""
    path = resources.files("orchestrator") / "data" / "recorded" / "btc_daily.csv"
    with path.open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["date"] >= "2024-04-20"]
    out, height = [], ANCHOR_HEIGHT - 1
    for r in rows:
        height += int(r["block_count"])
        day = datetime.fromisoformat(r["date"]).replace(tzinfo=UTC).timestamp()
        out.append((day + 86_400, height))
    return out


HEIGHTS = _recorded_heights()
days = st.integers(0, len(HEIGHTS) - 1)


@settings(RELAXED, max_examples=400)
@given(a=days, b=days)
def test_every_height_the_chain_reached_is_accepted_from_any_earlier_one(a: int, b: int) -> None:
    (t0, h0), (t1, h1) = HEIGHTS[min(a, b)], HEIGHTS[max(a, b)]
    assert height_check(h1, t1, h0, t0) is None
    # A cold start, counted from the anchor.
    assert height_check(h1, t1, None, -math.inf) is None


@settings(RELAXED, max_examples=400)
@given(a=days, b=days, excess=st.floats(1.0, 1e6))
def test_a_height_past_the_documented_bound_is_refused(a: int, b: int, excess: float) -> None:
    """The bound: the smaller of one block per 480 s plus 72, and the 600 s target rate
    ×1.10 plus 720, since the last known height."""
    (t0, h0), (t1, _) = HEIGHTS[min(a, b)], HEIGHTS[max(a, b)]
    span = t1 - t0
    most = h0 + min(span / 480 + 72, span * 1.10 / 600 + 720)
    too_far = math.floor(most + excess)
    if too_far <= most:
        too_far += 1
    problem = height_check(too_far, t1, h0, t0)
    assert problem is not None and problem[0] == Reject.IMPLAUSIBLE


def test_the_bound_refuses_a_first_height_past_the_next_halving_before_december_2027() -> None:
    """Counted from the anchor (2024-04-20), twice the target rate would have taken a
    first height of 1,050,000 (the next halving) in April 2026."""
    halving = ANCHOR_HEIGHT + 210_000
    april_2026 = datetime(2026, 4, 30, tzinfo=UTC).timestamp()
    assert ANCHOR_HEIGHT + (april_2026 - ANCHOR_S) / 300 + 72 > halving
    assert height_check(halving, april_2026, None, -math.inf) is not None
    nov_2027 = datetime(2027, 11, 1, tzinfo=UTC).timestamp()
    assert height_check(halving, nov_2027, None, -math.inf) is not None


# -- difficulty against hashrate and block times ------------------------------------------


difficulty = st.floats(1e12, 1e16)
#: Mean block intervals the chain ran at over a day since 2016 (432 s to 1,490 s).
interval = st.floats(432.0, 1489.0)
unit_error = st.sampled_from([1e-12, 1e-9, 1e-6, 1e-3, 0.01, 0.1, 10.0, 100.0, 1e3, 1e6, 1e9])


@settings(RELAXED, max_examples=300)
@given(d=difficulty, i=interval)
def test_a_difficulty_its_hashrate_agrees_with_is_kept(d: float, i: float) -> None:
    reading = ChainReading("s", 0.0, difficulty=d, hashrate_hs=d * TWO_32 / i)
    check_hashrate_units(reading)
    assert reading.difficulty == d and not reading.problems


@settings(RELAXED, max_examples=300)
@given(d=difficulty, i=interval, factor=unit_error, on_difficulty=st.booleans())
def test_a_unit_error_in_difficulty_or_hashrate_drops_both(
    d: float, i: float, factor: float, on_difficulty: bool
) -> None:
    hashrate = d * TWO_32 / i
    reading = ChainReading("s", 0.0, difficulty=d * factor if on_difficulty else d,
                           hashrate_hs=hashrate if on_difficulty else hashrate / factor)
    check_hashrate_units(reading)
    # The interval they imply is i × factor: far outside 400…1,800 s for a unit error.
    assert not 400 <= i * factor <= 1800
    assert reading.difficulty is None and reading.hashrate_hs is None
    assert [p.reason for p in reading.problems] == [Reject.UNITS]


@settings(RELAXED, max_examples=300)
@given(d=difficulty, i=interval, drift=st.floats(0.05, 20.0))
def test_difficulty_and_hashrate_must_agree_with_the_block_times(
    d: float, i: float, drift: float
) -> None:
    """The period's mean block time (mempool's difficulty-adjustment `timeAvg`) is a
    third reading of the same interval: within ×2.5 of the implied one, or refused. A
    block time no chain runs at is itself the bad reading: dropped, the others stand."""
    measured = i * drift
    # Values within rounding of a bound could fall either side of it.
    assume(all(abs(x / edge - 1) > 1e-9 for x, edge in (
        (measured, 400.0), (measured, 1800.0), (drift, 2.5), (drift, 1 / 2.5))))
    reading = ChainReading("s", 0.0, difficulty=d, hashrate_hs=d * TWO_32 / i,
                           mean_block_s=measured)
    check_hashrate_units(reading)
    in_band = 400 <= measured <= 1800
    agrees = not in_band or 1 / 2.5 <= i / measured <= 2.5
    assert (reading.difficulty == d) == agrees
    assert (reading.mean_block_s == measured) == in_band


# -- a first difficulty with nothing to check it against ---------------------------------


def _single_sources() -> DataQuality:
    return DataQuality(LiveMarketConfig.model_validate({
        "price_sources": [{"kind": "kraken", "base_url": "https://api.kraken.com"}],
        "chain_sources": [{"kind": "esplora", "base_url": "https://blockstream.info/api"}],
        "power_usd_mwh_fixed": 40.0,
    }))


NOW = 1_736_000_000.0
TRUE_D, TRUE_PRICE = 109_782_075_598_905.2, 97_000.0


@settings(RELAXED, max_examples=200)
@given(factor=st.sampled_from([1.0, 0.05, 1e3, 100.0, 0.5, 2.0, 4.0]),
       price=st.floats(5_000.0, 500_000.0))
def test_an_unchecked_first_difficulty_waits_for_a_price_and_must_imply_a_plausible_hashprice(
    factor: float, price: float
) -> None:
    q = _single_sources()
    d = TRUE_D * factor
    assert q.offer("difficulty", Candidate(d, "esplora", NOW, height=877_320), NOW) == (
        Reject.UNCONFIRMED
    )
    assert q.last_good("difficulty") is None
    # The price is checked against the difficulty waiting, then the difficulty against
    # the price: each must imply a hashprice in the plausible band.
    hp = 1e15 * 86_400 * 3.125 * price / (d * TWO_32)
    band = q.config.ranges.hashprice_usd_per_ph_day
    plausible = band.min <= hp <= band.max
    assert (q.offer("btc_usd", Candidate(price, "kraken", NOW), NOW) is None) == plausible
    waiting = q.awaiting_price()
    assert (waiting is not None) == plausible
    if waiting is not None:
        assert q.offer("difficulty", waiting, NOW) is None
        good = q.last_good("difficulty")
        assert good is not None and good.value == d
