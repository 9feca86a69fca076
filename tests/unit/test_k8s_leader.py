"""Tier 0/1: leader election over a Lease (fake API, fake clocks)."""

from __future__ import annotations

import pytest

from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.k8s.leader import LeaderElector
from orchestrator.models.config import KubernetesConfig
from tests.doubles.k8s import FakeKube


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(kube: FakeKube, who: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        kube,
        "hp",
        "leader",
        identity=who,
        lease_duration_s=15.0,
        renew_deadline_s=10.0,
        retry_period_s=2.0,
        wall=clock,
        monotonic=clock,
    )


def test_first_creates_second_waits_holder_renews() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)
    assert a.try_acquire_or_renew() and a.is_leader()
    assert not b.try_acquire_or_renew() and not b.is_leader()
    assert b.holder == "a"
    for _ in range(10):  # a keeps renewing; b never gets in
        clock.t += 2.0
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    lease = kube.leases["hp/leader"]["spec"]
    assert lease["holderIdentity"] == "a" and lease["leaseTransitions"] == 0
    assert lease["leaseDurationSeconds"] == 15


def test_takeover_only_after_a_full_lease_without_renewal() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b starts its own timer now
    clock.t += 10.0  # a stops renewing (crashed); renew deadline passed
    assert not a.is_leader()  # a stops writing before anyone may start
    clock.t += 4.0
    assert not b.try_acquire_or_renew()  # 14 s < 15 s lease
    clock.t += 1.5
    assert b.try_acquire_or_renew() and b.is_leader()
    assert kube.leases["hp/leader"]["spec"]["leaseTransitions"] == 1
    # a comes back: sees b holding a fresh lease, stays out.
    assert not a.try_acquire_or_renew()
    assert not a.is_leader()


def test_at_most_one_leader_at_every_instant() -> None:
    kube, clock = FakeKube(), Clock()
    replicas = [elector(kube, f"r{i}", clock) for i in range(3)]
    for tick in range(200):
        clock.t += 1.0
        for i, r in enumerate(replicas):
            # r0 pauses for a while (GC stall): someone else must take over cleanly.
            if i == 0 and 50 <= tick < 80:
                continue
            r.try_acquire_or_renew()
            assert sum(x.is_leader() for x in replicas) <= 1
        if tick == 79:  # r0 has been silent 30 s: someone else leads by now
            assert any(x.is_leader() for x in replicas[1:])


def test_conflicting_update_loses_without_error() -> None:
    kube, clock = FakeKube(), Clock()
    a = elector(kube, "a", clock)
    assert a.try_acquire_or_renew()
    kube.fail["replace_lease"] = [ApiError(409, "conflict")]
    clock.t += 2.0
    assert not a.try_acquire_or_renew() and not a.is_leader()
    clock.t += 2.0
    assert a.try_acquire_or_renew()  # still the holder: renews next round


def test_release_hands_over_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release() and not a.is_leader()
    assert b.try_acquire_or_renew()
    assert not a.release()  # not the leader: nothing to release


def test_two_creators_race_one_wins() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)
    kube.before_write = lambda name, key: b.try_acquire_or_renew()
    assert not a.try_acquire_or_renew()  # b created it between a's read and a's create
    assert b.is_leader()


def test_config_and_bad_timings() -> None:
    kube = FakeKube()
    e = LeaderElector.from_config(kube, KubernetesConfig(namespace="x", lease_name="l"))
    assert (e.namespace, e.name, e.lease_duration_s) == ("x", "l", 15.0)
    assert "_" in e.identity
    with pytest.raises(ValueError):
        LeaderElector(kube, "x", "l", lease_duration_s=5.0, renew_deadline_s=5.0)
    with pytest.raises(ValueError):
        LeaderElector(kube, "x", "l", renew_deadline_s=2.0, retry_period_s=2.0)
