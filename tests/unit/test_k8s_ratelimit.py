"""Tier 0: the write rate limiter, on a fake clock."""

from __future__ import annotations

import pytest

from orchestrator.adapters.k8s.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_burst_then_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock=clock, sleep=clock.sleep)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_s() == pytest.approx(0.5)
    clock.t += 0.5
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.t += 100.0  # refills to the burst, not beyond
    assert sum(bucket.try_acquire() for _ in range(10)) == 3


def test_acquire_sleeps_for_a_token_within_the_deadline() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, 1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire()
    assert bucket.acquire(deadline=1.0)
    assert clock.t == pytest.approx(0.25)
    # 10 writes at 4/s take 2.5 s; a deadline at 1.0 s lets only some through.
    granted = sum(bucket.acquire(deadline=1.0) for _ in range(10))
    assert granted == 3
    assert clock.t <= 1.0


def test_sustained_rate_matches_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5.0, 1, clock=clock, sleep=clock.sleep)
    for _ in range(51):
        assert bucket.acquire()
    assert clock.t == pytest.approx(10.0, rel=0.01)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1)
    with pytest.raises(ValueError):
        TokenBucket(1.0, 0)
