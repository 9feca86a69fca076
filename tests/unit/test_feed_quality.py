"""The data-quality rules, one by one and as properties over arbitrary inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from orchestrator.adapters.market.quality import (
    EARLIEST_OBSERVATION_S,
    Candidate,
    DataQuality,
    Quote,
    Reject,
    basic_check,
    combine_quotes,
    difficulty_check,
)
from orchestrator.models.feeds_config import LiveMarketConfig, PlausibleRange

NOW = 1_736_000_000.0
D = 1.1e14
ANY = PlausibleRange(min=-1e9, max=1e9)


@pytest.mark.parametrize(
    ("value", "observed", "sign", "reason"),
    [
        (math.nan, NOW, "positive", Reject.NOT_FINITE),
        (math.inf, NOW, "any", Reject.NOT_FINITE),
        (-1.0, NOW, "positive", Reject.NEGATIVE),
        (0.0, NOW, "positive", Reject.ZERO),
        (1.0, 0.0, "positive", Reject.BAD_TIMESTAMP),
        (1.0, -5.0, "positive", Reject.BAD_TIMESTAMP),
        (1.0, math.nan, "positive", Reject.BAD_TIMESTAMP),
        (1.0, NOW + 301, "positive", Reject.FUTURE_TIMESTAMP),
        (2e9, NOW, "any", Reject.OUT_OF_RANGE),
    ],
)
def test_basic_rules(value: float, observed: float, sign: str, reason: Reject) -> None:
    problem = basic_check(value, observed, NOW, allowed=ANY, sign=sign, max_skew_s=300)
    assert problem is not None and problem[0] == reason


def test_negative_power_prices_pass() -> None:
    assert basic_check(-25.0, NOW, NOW, allowed=ANY, sign="any", max_skew_s=300) is None
    assert basic_check(0.0, NOW, NOW, allowed=ANY, sign="any", max_skew_s=300) is None


@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    observed=st.floats(allow_nan=True, allow_infinity=True),
    sign=st.sampled_from(["positive", "nonneg", "any"]),
)
def test_whatever_passes_basic_rules_is_sane(value: float, observed: float, sign: str) -> None:
    if basic_check(value, observed, NOW, allowed=ANY, sign=sign, max_skew_s=300) is None:
        assert math.isfinite(value) and ANY.min <= value <= ANY.max
        assert EARLIEST_OBSERVATION_S <= observed <= NOW + 300
        if sign == "positive":
            assert value > 0
        if sign == "nonneg":
            assert value >= 0


def test_difficulty_rules() -> None:
    epoch_start = 2016 * 435
    assert difficulty_check(D, epoch_start + 5, D, epoch_start + 9) is None
    mid = difficulty_check(D, epoch_start + 5, D * 1.01, epoch_start + 9)
    assert mid is not None and mid[0] == Reject.DIFFICULTY_MID_EPOCH
    assert difficulty_check(D, epoch_start + 5, D * 3.9, epoch_start + 2016) is None
    step = difficulty_check(D, epoch_start + 5, D * 4.1, epoch_start + 2016)
    assert step is not None and step[0] == Reject.DIFFICULTY_STEP
    assert difficulty_check(D, epoch_start + 5, D * 15, epoch_start + 2 * 2016) is None
    assert difficulty_check(D, None, D / 3.9, None) is None


@given(
    h0=st.integers(0, 2_000_000),
    dh=st.integers(0, 10_000),
    ratio=st.floats(1e-3, 1e3),
)
def test_difficulty_accepted_only_at_boundaries_within_the_limit(
    h0: int, dh: int, ratio: float
) -> None:
    h1 = h0 + dh
    problem = difficulty_check(D, h0, D * ratio, h1)
    epochs = h1 // 2016 - h0 // 2016
    if problem is None:
        if epochs == 0:
            assert abs(ratio - 1) <= 1e-6
        else:
            assert 4.0**-epochs <= ratio * (1 + 1e-12) and ratio <= 4.0**epochs * (1 + 1e-12)


quotes = st.lists(
    st.builds(
        Quote,
        value=st.floats(1_000, 1_000_000),
        source=st.sampled_from(["a", "b", "c", "d", "e"]),
        observed_s=st.floats(NOW - 600, NOW),
    ),
    max_size=5,
    unique_by=lambda q: q.source,
)


@given(qs=quotes, last=st.none() | st.floats(1_000, 1_000_000))
def test_combined_price_lies_within_the_agreeing_quotes(
    qs: list[Quote], last: float | None
) -> None:
    cand, dropped = combine_quotes(qs, agreement=0.02, last_good=last)
    if cand is None:
        assert len(dropped) == len(qs)
        return
    kept = [q for q in qs if all(q is not d[0] for d in dropped)]
    assert cand.confirmations == len(kept) == len(qs) - len(dropped)
    assert min(q.value for q in kept) <= cand.value <= max(q.value for q in kept)
    assert cand.observed_s == min(q.observed_s for q in kept)
    # Every kept quote agrees with the value within twice the agreement band.
    assert all(abs(q.value - cand.value) <= 0.0401 * cand.value for q in kept)


def test_majority_outvotes_an_outlier() -> None:
    qs = [Quote(97_000, "a", NOW), Quote(97_100, "b", NOW), Quote(9_700_000, "c", NOW)]
    cand, dropped = combine_quotes(qs, agreement=0.02, last_good=None)
    assert cand is not None and cand.value == 97_050 and cand.confirmations == 2
    assert [(d[0].source, d[1]) for d in dropped] == [("c", Reject.SOURCES_DISAGREE)]


def quality(**over: object) -> DataQuality:
    return DataQuality(LiveMarketConfig.model_validate(over))


def test_btc_jump_needs_a_second_source() -> None:
    q = quality()
    assert q.offer("btc_usd", Candidate(97_000, "a+b", NOW, confirmations=2), NOW) is None
    assert q.offer("btc_usd", Candidate(120_000, "a", NOW + 60), NOW + 60) == (
        Reject.JUMP_UNCONFIRMED
    )
    # The same source again does not confirm a BTC/USD jump; a second one does.
    assert q.offer("btc_usd", Candidate(120_000, "a", NOW + 120), NOW + 120) == (
        Reject.JUMP_UNCONFIRMED
    )
    assert (
        q.offer("btc_usd", Candidate(120_000, "a+b", NOW + 180, confirmations=2), NOW + 180) is None
    )


def test_single_source_power_jump_waits_for_a_repeat() -> None:
    q = quality(power_jump_band=0.5)
    f = "power_usd_mwh.default"
    assert q.offer(f, Candidate(30.0, "csv", NOW), NOW) is None
    assert q.offer(f, Candidate(300.0, "csv", NOW + 300), NOW + 300) == Reject.JUMP_UNCONFIRMED
    assert q.offer(f, Candidate(301.0, "csv", NOW + 600), NOW + 600) is None
    good = q.last_good(f)
    assert good is not None and good.value == 301.0


def test_real_time_power_may_jump_by_default() -> None:
    q = quality()
    f = "power_usd_mwh.default"
    assert q.offer(f, Candidate(30.0, "csv", NOW), NOW) is None
    assert q.offer(f, Candidate(-20.0, "csv", NOW + 300), NOW + 300) is None
    assert q.offer(f, Candidate(2500.0, "csv", NOW + 600), NOW + 600) is None


def test_out_of_order_value_is_refused() -> None:
    q = quality()
    assert q.offer("fees_btc_per_block", Candidate(0.05, "a", NOW), NOW) is None
    assert q.offer("fees_btc_per_block", Candidate(0.06, "b", NOW - 10), NOW) == (
        Reject.OUT_OF_ORDER
    )


def test_counts_and_hook() -> None:
    seen: list[tuple[str, Reject]] = []
    q = DataQuality(LiveMarketConfig(), on_reject=lambda f, r, d: seen.append((f, r)))
    q.offer("btc_usd", Candidate(-1.0, "a", NOW), NOW)
    q.offer("btc_usd", Candidate(math.nan, "a", NOW), NOW)
    q.reject("chain", Reject.TIMEOUT, "timed out")
    assert q.rejection_counts() == {
        "btc_usd": {"negative": 1, "not_finite": 1},
        "chain": {"timeout": 1},
    }
    assert seen == [
        ("btc_usd", Reject.NEGATIVE),
        ("btc_usd", Reject.NOT_FINITE),
        ("chain", Reject.TIMEOUT),
    ]
    assert q.status(NOW)["btc_usd"].last_problem == "not_finite: value nan"


offers = st.lists(
    st.tuples(
        st.sampled_from(["btc_usd", "difficulty", "fees_btc_per_block", "power_usd_mwh.x"]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-1e5, 1e5),  # observed − now
        st.floats(0, 3600),  # time step
        st.integers(0, 5000),  # height step
        st.integers(1, 3),  # confirmations
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(seq=offers)
# Found by hypothesis: a time 2 ns inside the allowed skew rounded to the microsecond a
# snapshot keeps used to land past it.
@example(seq=[("btc_usd", 50_000.0, 299.99999999789395, 2744.208296848591, 0, 1)])
def test_last_good_is_always_sane_and_in_time_order(
    seq: list[tuple[str, float, float, float, int, int]],
) -> None:
    q = quality()
    now, height = NOW, 870_000
    for feed, value, lag, step, dh, conf in seq:
        now += step
        height += dh
        before = q.last_good(feed)
        cand = Candidate(value, "s", now + lag, height=height, confirmations=conf)
        problem = q.offer(feed, cand, now)
        after = q.last_good(feed)
        if problem is not None:
            assert after == before
            continue
        assert after is not None
        assert math.isfinite(after.value)
        assert after.observed_at.timestamp() <= now + q.config.max_clock_skew_s
        if before is not None:
            assert after.observed_at >= before.observed_at
        if feed != "power_usd_mwh.x":
            assert after.value > 0


def test_default_sources_are_https_and_key_free() -> None:
    config = LiveMarketConfig()
    urls = [s.base_url for s in (*config.chain_sources, *config.price_sources)]
    assert urls and all(u.startswith("https://") for u in urls)
    assert all("key" not in u.lower() and "token" not in u.lower() for u in urls)
    assert len(config.price_sources) >= 2


@pytest.mark.parametrize(
    ("http", "url", "ok"),
    [
        ({}, "http://127.0.0.1:8080", False),
        ({"allow_loopback_http": True}, "http://127.0.0.1:8080", True),
        ({"allow_loopback_http": True}, "http://[::1]:8080/api", True),
        ({"allow_loopback_http": True}, "http://localhost/api", True),
        ({"allow_loopback_http": True}, "http://127.0.0.1.example.com/", False),
        ({"allow_loopback_http": True}, "http://user@mempool.space/api", False),
        ({"require_https": False}, "http://mempool.space/api", True),
        ({}, "ftp://mempool.space/api", False),
        ({}, "mempool.space/api", False),
    ],
)
def test_url_policy(http: dict[str, object], url: str, ok: bool) -> None:
    data = {"http": http, "chain_sources": [{"kind": "mempool", "base_url": url}]}
    if ok:
        LiveMarketConfig.model_validate(data)
    else:
        with pytest.raises(ValueError, match="chain_sources"):
            LiveMarketConfig.model_validate(data)


def test_fixed_tariff_is_the_default_site() -> None:
    config = LiveMarketConfig(power_usd_mwh_fixed=42.0)
    assert list(config.power_by_site()) == ["default"]
    with pytest.raises(ValueError, match="not both"):
        LiveMarketConfig.model_validate(
            {
                "power_usd_mwh_fixed": 42.0,
                "power_sources": {"default": {"kind": "fixed", "usd_mwh": 40.0}},
            }
        )


# -- cold start: a first value from one source waits for something to agree with it ------


def test_first_btc_price_from_one_exchange_waits_for_a_second() -> None:
    """One exchange quoting in cents (6,988,000 is under the 10,000,000 cap) is not the
    market's first price; a second exchange quoting the same level confirms it."""
    q = quality()
    assert q.offer("btc_usd", Candidate(6_988_000, "a", NOW), NOW) == Reject.UNCONFIRMED
    assert q.offer("btc_usd", Candidate(6_988_000, "a", NOW + 60), NOW + 60) == (
        Reject.UNCONFIRMED
    )
    assert q.last_good("btc_usd") is None
    # Another exchange at the true level does not confirm the cents either…
    assert q.offer("btc_usd", Candidate(69_880, "b", NOW + 120), NOW + 120) == Reject.UNCONFIRMED
    # …but a third agreeing with it does.
    assert q.offer("btc_usd", Candidate(69_900, "c", NOW + 180), NOW + 180) is None
    good = q.last_good("btc_usd")
    assert good is not None and good.value == 69_900


def test_single_configured_sources_must_imply_a_plausible_hashprice() -> None:
    """With one exchange and one chain API configured nothing can confirm a first value:
    it must agree with the other inputs through the hashprice it implies."""
    one = {"price_sources": [{"kind": "kraken", "base_url": "https://api.kraken.com"}],
           "chain_sources": [{"kind": "esplora", "base_url": "https://blockstream.info/api"}]}
    q = quality(**one)
    # No hashrate checked it and no price is known yet: it waits, and the price is
    # checked against it.
    assert q.offer("difficulty", Candidate(D, "e", NOW, height=877_320), NOW) == (
        Reject.UNCONFIRMED
    )
    band = q.config.ranges.hashprice_usd_per_ph_day
    # The design's formula: 1e15 × 86400 × (subsidy + fees) × price / (D × 2^32).
    cents = 6_988_000.0
    implied = 1e15 * 86400 * 3.125 * cents / (D * 2**32)
    assert implied > band.max
    assert q.offer("btc_usd", Candidate(cents, "k", NOW), NOW) == Reject.IMPLAUSIBLE
    assert q.offer("btc_usd", Candidate(cents / 100, "k", NOW + 60), NOW + 60) is None
    assert q.offer("difficulty", Candidate(D, "e", NOW + 60, height=877_320), NOW + 60) is None
    # And the other way round: a difficulty ×1000 against a known price.
    q = quality(**one)
    assert q.offer("btc_usd", Candidate(69_880.0, "k", NOW), NOW) is None
    assert band.min > 1e15 * 86400 * 3.125 * 69_880.0 / (D * 1000 * 2**32)
    assert q.offer("difficulty", Candidate(D * 1000, "e", NOW, height=877_320), NOW) == (
        Reject.IMPLAUSIBLE
    )


def test_first_difficulty_needs_its_hashrate_or_a_second_source() -> None:
    q = quality()
    # ×1000 with no hashrate to check against: waits.
    assert q.offer("difficulty", Candidate(D * 1000, "m", NOW, height=877_320), NOW) == (
        Reject.UNCONFIRMED
    )
    # Checked against its own source's hashrate: accepted at once.
    assert q.offer("difficulty", Candidate(D, "m", NOW + 1, height=877_320, checked=True),
                   NOW + 1) is None


cold = st.lists(
    st.tuples(
        st.sampled_from(["btc_usd", "difficulty"]),
        st.sampled_from([1.0, 100.0, 1000.0, 0.01]),  # unit error factor of this reading
        st.sampled_from(["a", "b", "c"]),  # source
        st.integers(1, 2),  # confirmations
        st.booleans(),  # checked
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(seq=cold)
def test_a_first_value_is_always_confirmed(
    seq: list[tuple[str, float, str, int, bool]],
) -> None:
    """Whatever the order of readings, a feed's first accepted value is one that was
    confirmed: a multi-source reading, a reading checked against its source's other
    inputs, or one a reading from another source agreed with."""
    q = quality()
    base = {"btc_usd": 97_000.0, "difficulty": D}
    seen: dict[str, list[tuple[float, str]]] = {"btc_usd": [], "difficulty": []}
    for i, (feed, factor, source, conf, checked) in enumerate(seq):
        now = NOW + 60 * i
        value = base[feed] * factor
        first = q.last_good(feed) is None
        problem = q.offer(feed, Candidate(value, source, now, height=877_320,
                                          confirmations=conf, checked=checked), now)
        if first and problem is None:
            tol = 1e-6 if feed == "difficulty" else q.config.price_agreement
            agreed = [s for v, s in seen[feed][-1:] if abs(v - value) / v <= tol and s != source]
            assert conf >= 2 or checked or agreed
        if first:
            seen[feed].append((value, source))
