"""Tier 0/1: the actuator against the in-memory API (`FakeKube`): switches, conflicts,
evictions, leases, leadership, rate limits, shadow mode and restarts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from orchestrator.adapters.k8s.actuator import (
    RECONCILE_DECISION,
    KubeActuator,
    NodeTarget,
    ShadowActuator,
    ensure_miner_daemonset,
    miner_daemonset_manifest,
    targets_from_plan,
)
from orchestrator.adapters.k8s.api import ApiError, Obj
from orchestrator.adapters.k8s.objects import (
    DECISION_ANNOTATION,
    MINING_TAINT_KEY,
    MODE_LABEL,
    SINCE_ANNOTATION,
    STATE_ANNOTATION,
    TARGET_ANNOTATION,
    format_time,
)
from orchestrator.adapters.k8s.ratelimit import TokenBucket
from orchestrator.engine.plan import Plan
from orchestrator.framework.context import ScoreTable
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.modes import Mode
from orchestrator.ports import ActuationResult, Actuator
from tests.doubles.k8s import FakeKube

NS = "hp"
MINER = "hashpivot-miner"
CFG = KubernetesConfig(namespace=NS, node_selector="", qps=1000.0, burst=1000)
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def world(n: int = 3) -> FakeKube:
    kube = FakeKube()
    for i in range(n):
        kube.add_node(f"n{i}", labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    return kube


def actuator(kube: FakeKube, clock: Clock | None = None, **kw: object) -> KubeActuator:
    clock = clock or Clock()
    return KubeActuator(kube, CFG, clock=clock, monotonic=clock, **kw)  # type: ignore[arg-type]


def node(kube: FakeKube, name: str) -> Obj:
    return kube.nodes[name]


def state(kube: FakeKube, name: str) -> str:
    return str(node(kube, name)["metadata"]["annotations"].get(STATE_ANNOTATION))


def tainted(kube: FakeKube, name: str) -> bool:
    return any(t["key"] == MINING_TAINT_KEY for t in node(kube, name)["spec"].get("taints") or [])


def label(kube: FakeKube, name: str) -> str | None:
    return node(kube, name)["metadata"]["labels"].get(MODE_LABEL)


def targets(mode: Mode, names: Sequence[str], **kw: object) -> list[NodeTarget]:
    return [NodeTarget(n, mode, reason="HIGHER_VALUE", **kw) for n in names]  # type: ignore[arg-type]


def converge(
    act: KubeActuator,
    kube: FakeKube,
    wanted: list[NodeTarget],
    decision: str = "d-1",
    passes: int = 10,
) -> list[ActuationResult]:
    """Passes until nothing is deferred; the DaemonSet controller runs between passes."""
    results = []
    for _ in range(passes):
        result = act.apply_targets(wanted, decision)
        results.append(result)
        kube.run_daemonset_controller(NS, MINER)
        if not result.deferred and not result.errors:
            return results
    raise AssertionError(f"no convergence: {results[-1]}")


def make_plan(
    names: Sequence[str],
    current: Sequence[int],
    target: Sequence[int],
    *,
    gains: Sequence[float] | None = None,
    reasons: Sequence[int] | None = None,
    decision_id: str = "d-1",
) -> Plan:
    n = len(names)
    value = np.zeros((3, n))
    if gains is not None:
        value[np.asarray(target), np.arange(n)] = gains
    zeros = np.zeros((3, n))
    scores = ScoreTable(
        revenue=value,
        power_cost=zeros,
        value=value,
        switch_cost_usd=zeros,
        switch_cost_per_h=zeros,
        ai_fill=np.zeros(n),
        watts=zeros,
        expected_stay_h=24.0,
    )
    return Plan(
        decision_id=decision_id,
        policy="test",
        now_s=NOW,
        node_names=np.array(list(names), dtype=object),
        current=np.asarray(current, dtype=np.int8),
        target=np.asarray(target, dtype=np.int8),
        reason=np.asarray(reasons if reasons is not None else [0] * n, dtype=np.int16),
        scores=scores,
        site_power_w=np.zeros(1),
        site_cap_w=np.full(1, np.inf),
        site_over_cap=np.zeros(1, dtype=bool),
        stale=False,
    )


# -- switching -------------------------------------------------------------------------------


def test_protocol() -> None:
    assert isinstance(actuator(world()), Actuator)
    assert isinstance(ShadowActuator(), Actuator)


def test_new_nodes_to_mine_then_one_to_ai_step_by_step() -> None:
    kube = world(3)
    act = actuator(kube)
    first = act.apply_targets(targets(Mode.MINE, ["n0", "n1", "n2"]), "d-1")
    assert sorted(first.started) == ["n0", "n1", "n2"] and first.writes == 3
    for n in ("n0", "n1", "n2"):
        assert state(kube, n) == "STARTING_MINE" and label(kube, n) == "mine" and tainted(kube, n)
        assert first.deferred[n].startswith("waiting for the miner pod to run")
    kube.run_daemonset_controller(NS, MINER)
    second = act.apply_targets(targets(Mode.MINE, ["n0", "n1", "n2"]), "d-1")
    assert sorted(second.completed) == ["n0", "n1", "n2"] and not second.deferred
    assert all(state(kube, n) == "MINING" for n in ("n0", "n1", "n2"))

    clock = Clock(NOW + 3600)
    act = actuator(kube, clock)
    to_ai = act.apply_targets(targets(Mode.AI, ["n0"]), "d-2")
    assert to_ai.started == ["n0"] and state(kube, "n0") == "STOPPING_MINE"
    assert label(kube, "n0") == "idle" and tainted(kube, "n0")
    assert "miner" in to_ai.deferred["n0"]
    again = act.apply_targets(targets(Mode.AI, ["n0"]), "d-2")  # the miner pod is still there
    assert again.writes == 0 and "miner pod to leave" in again.deferred["n0"]
    kube.run_daemonset_controller(NS, MINER)  # the DaemonSet drops the pod
    done = act.apply_targets(targets(Mode.AI, ["n0"]), "d-2")
    assert done.completed == ["n0"] and done.writes == 1
    notes = node(kube, "n0")["metadata"]["annotations"]
    assert notes[STATE_ANNOTATION] == "AI" and notes[TARGET_ANNOTATION] == "ai"
    assert notes[DECISION_ANNOTATION] == "d-2"
    assert notes[SINCE_ANNOTATION] == format_time(NOW + 3600)
    assert label(kube, "n0") == "ai" and not tainted(kube, "n0")
    assert f"{NS}/{MINER}-n0" not in kube.pods


def test_applying_a_converged_plan_writes_nothing() -> None:
    kube = world(2)
    act = actuator(kube)
    converge(act, kube, targets(Mode.MINE, ["n0", "n1"]))
    before = kube.writes
    for _ in range(3):
        result = act.apply_targets(targets(Mode.MINE, ["n0", "n1"]), "d-9")
        assert result == ActuationResult()
    assert kube.writes == before
    # The decision that started the switch stays recorded; a later plan keeping it does not.
    assert node(kube, "n0")["metadata"]["annotations"][DECISION_ANNOTATION] == "d-1"


def test_drift_is_repaired_level_based() -> None:
    kube = world(1)
    act = actuator(kube)
    converge(act, kube, targets(Mode.MINE, ["n0"]))
    kube.set_node("n0", lambda n: n["spec"].__setitem__("taints", []))  # someone untaints it
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-1")
    assert result.writes == 1 and tainted(kube, "n0")


def test_engine_hold_in_transition_lets_the_switch_continue() -> None:
    kube = world(1)
    act = actuator(kube)
    converge(act, kube, targets(Mode.MINE, ["n0"]))
    act.apply_targets(targets(Mode.AI, ["n0"]), "d-2")
    assert state(kube, "n0") == "STOPPING_MINE"
    kube.run_daemonset_controller(NS, MINER)
    plan = make_plan(
        ["n0"], [Mode.IDLE], [Mode.IDLE], reasons=[Reason.GUARD_IN_TRANSITION], decision_id="d-3"
    )
    result = act.apply(plan)
    assert result.completed == ["n0"] and state(kube, "n0") == "AI"
    assert node(kube, "n0")["metadata"]["annotations"][DECISION_ANNOTATION] == "d-2"


def test_reconcile_finishes_recorded_switches_and_adopts_nothing() -> None:
    kube = world(2)
    act = actuator(kube)
    converge(act, kube, targets(Mode.MINE, ["n0"]))
    act.apply_targets(targets(Mode.AI, ["n0"]), "d-2")
    kube.run_daemonset_controller(NS, MINER)
    result = act.reconcile()
    assert result.completed == ["n0"] and state(kube, "n0") == "AI"
    assert STATE_ANNOTATION not in node(kube, "n1")["metadata"]["annotations"]


def test_opted_out_and_missing_nodes() -> None:
    kube = world(1)
    kube.set_node("n0", lambda n: n["metadata"]["labels"].__setitem__(CFG.opt_out_label, "true"))
    act = actuator(kube)
    result = act.apply_targets(targets(Mode.MINE, ["n0", "ghost"]), "d-1")
    assert result.writes == 0
    assert "opted out" in result.deferred["n0"]
    assert "not found" in result.deferred["ghost"]


# -- draining, evictions, leases ------------------------------------------------------------


def ai_world(*pods: dict[str, object]) -> tuple[FakeKube, KubeActuator, Clock]:
    kube = world(1)
    clock = Clock()
    act = actuator(kube, clock)
    converge(act, kube, targets(Mode.AI, ["n0"]))
    for i, extra in enumerate(pods):
        kube.add_pod("t", f"job{i}", gpus=4, node="n0", **extra)  # type: ignore[arg-type]
    return kube, act, clock


def test_interruptible_pods_are_evicted_and_the_node_goes_mining() -> None:
    kube, act, _ = ai_world(
        {"labels": {CFG.interruptible_label: "true"}}, {"priority_class": "preemptible"}
    )
    first = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    # Taint, then (the server confirmed the taint) evict both in the same pass.
    assert state(kube, "n0") == "DRAINING_AI" and tainted(kube, "n0")
    assert sorted(kube.evictions) == ["t/job0", "t/job1"] and first.writes == 3
    assert sorted(act.last_report.evicted) == ["t/job0", "t/job1"]
    results = converge(act, kube, targets(Mode.MINE, ["n0"]))
    assert state(kube, "n0") == "MINING" and label(kube, "n0") == "mine"
    assert sum(r.writes for r in results) == 2  # → STARTING_MINE, → MINING
    assert len(kube.evictions) == 2  # nobody evicted twice


def test_disruption_budget_429_is_deferred_then_retried() -> None:
    kube, act, _ = ai_world({"labels": {CFG.interruptible_label: "true"}})
    kube.pdb_blocked.add("t/job0")
    for _ in range(3):
        result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
        assert not result.errors
        assert "disruption budget" in result.deferred["n0"]
    assert "t/job0" in act.last_report.refused
    assert kube.calls["evict_pod"] == 3 and kube.evictions == []
    assert state(kube, "n0") == "DRAINING_AI"
    kube.pdb_blocked.clear()  # the budget allows it now
    converge(act, kube, targets(Mode.MINE, ["n0"]))
    assert kube.evictions == ["t/job0"] and state(kube, "n0") == "MINING"


def test_non_interruptible_and_leased_pods_are_never_evicted() -> None:
    lease_end = format_time(NOW + 2 * 3600)
    kube, act, clock = ai_world(
        {},  # a tenant's job: not interruptible
        {
            "labels": {CFG.interruptible_label: "true"},
            "annotations": {CFG.lease_annotation: lease_end},
        },
    )
    for _ in range(5):
        result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
        clock.t += 600.0
    assert kube.calls["evict_pod"] == 0
    assert "protected by lease" in result.deferred["n0"]
    assert "not interruptible" in result.deferred["n0"]
    clock.t = NOW + 2 * 3600 + 1  # the lease ends: its interruptible pod may now go
    act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert kube.evictions == ["t/job1"]
    kube.delete_pod("t", "job0")  # the tenant's job finishes on its own
    converge(act, kube, targets(Mode.MINE, ["n0"]))
    assert state(kube, "n0") == "MINING" and kube.evictions == ["t/job1"]


def test_other_eviction_errors_are_reported() -> None:
    kube, act, _ = ai_world({"labels": {CFG.interruptible_label: "true"}})
    kube.fail["evict_pod"] = [ApiError(500, "etcd down")]
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert "etcd down" in result.errors["n0"]


# -- concurrency ------------------------------------------------------------------------------


class StaleNodes:
    """A node source frozen at one moment (a watch cache that has not caught up)."""

    def __init__(self, kube: FakeKube) -> None:
        self.items, _ = kube.list_nodes()

    def nodes(self) -> list[Obj]:
        return self.items

    def node(self, name: str) -> Obj | None:
        return None  # never fresher than the listing


def test_stale_write_gets_409_rereads_and_redoes_the_step() -> None:
    kube = world(1)
    stale = StaleNodes(kube)
    kube.set_node("n0", lambda n: n["metadata"]["labels"].__setitem__("team", "x"))
    act = KubeActuator(kube, CFG, nodes=stale, clock=Clock(), monotonic=Clock())
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-1")
    assert kube.calls["patch_node"] == 2 and kube.calls["get_node"] == 1
    assert act.last_report.conflicts == 1 and not result.errors
    assert label(kube, "n0") == "mine" and node(kube, "n0")["metadata"]["labels"]["team"] == "x"


class WatchedNodes(StaleNodes):
    """A pass snapshot taken before a change, and a watch that has since seen it."""

    def __init__(self, kube: FakeKube) -> None:
        super().__init__(kube)
        self.kube = kube

    def node(self, name: str) -> Obj | None:
        return self.kube.get_node(name)


def test_each_write_starts_from_the_watch_copy_of_the_node_not_the_pass_snapshot() -> None:
    kube = world(1)
    watched = WatchedNodes(kube)
    kube.set_node("n0", lambda n: n["metadata"]["labels"].__setitem__("team", "x"))
    act = KubeActuator(kube, CFG, nodes=watched, clock=Clock(), monotonic=Clock())
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-1")
    assert kube.calls["patch_node"] == 1 and act.last_report.conflicts == 0
    assert not result.errors and label(kube, "n0") == "mine"


def test_conflict_where_someone_already_did_it_writes_nothing_more() -> None:
    kube = world(1)
    other = actuator(kube)
    mine = KubeActuator(kube, CFG, nodes=StaleNodes(kube), clock=Clock(), monotonic=Clock())
    other.apply_targets(targets(Mode.MINE, ["n0"]), "d-1")  # the other replica was faster
    result = mine.apply_targets(targets(Mode.MINE, ["n0"]), "d-1")
    assert mine.last_report.conflicts == 1
    assert kube.calls["patch_node"] == 2  # other's write + our refused one; no third
    assert result.writes == 1 and state(kube, "n0") == "STARTING_MINE"


def test_two_conflicts_in_a_row_defer_to_the_next_pass() -> None:
    kube = world(1)
    kube.fail["patch_node"] = [ApiError(409, "conflict"), ApiError(409, "conflict")]
    result = actuator(kube).apply_targets(targets(Mode.MINE, ["n0"]), "d-1")
    assert "conflict" in result.deferred["n0"] and not result.errors


def test_not_the_leader_writes_nothing() -> None:
    kube = world(3)
    act = actuator(kube, is_leader=lambda: False)
    result = act.apply_targets(targets(Mode.MINE, ["n0", "n1", "n2"]), "d-1")
    assert kube.writes == 0 and result.writes == 0
    assert all("not the leader" in result.deferred[n] for n in ("n0", "n1", "n2"))
    assert act.last_report.not_leader


def test_rate_limit_serves_switches_under_way_then_highest_gain() -> None:
    kube = world(5)
    act0 = actuator(kube)
    converge(act0, kube, targets(Mode.MINE, ["n4"]))
    act0.apply_targets(targets(Mode.AI, ["n4"]), "d-1")  # n4 is now mid-switch
    kube.run_daemonset_controller(NS, MINER)
    clock = Clock()
    limiter = TokenBucket(1e-6, 2, clock=clock, sleep=clock.sleep)
    act = actuator(kube, clock, limiter=limiter)
    wanted = [
        NodeTarget("n0", Mode.MINE, gain_per_h=1.0),
        NodeTarget("n1", Mode.MINE, gain_per_h=5.0),
        NodeTarget("n2", Mode.MINE, gain_per_h=3.0),
        NodeTarget("n3", Mode.MINE, gain_per_h=4.0),
        NodeTarget("n4", Mode.IDLE, held_in_transition=True),
    ]
    result = act.apply_targets(wanted, "d-2")
    assert result.writes == 2
    assert state(kube, "n4") == "AI" and state(kube, "n1") == "STARTING_MINE"
    for n in ("n0", "n2", "n3"):
        assert "rate limited" in result.deferred[n]
    assert act.last_report.rate_limited == 3


def test_plan_gains_order_the_writes() -> None:
    plan = make_plan(
        ["a", "b", "c"], [Mode.IDLE] * 3, [Mode.MINE, Mode.AI, Mode.IDLE], gains=[2.0, 7.0, 0.0]
    )
    got = targets_from_plan(plan)
    assert [(t.name, t.mode, t.gain_per_h) for t in got] == [
        ("a", Mode.MINE, 2.0),
        ("b", Mode.AI, 7.0),
        ("c", Mode.IDLE, 0.0),
    ]
    assert got[0].reason == "UNCHANGED" and not got[0].held_in_transition


# -- shadow mode and restarts -------------------------------------------------------------------


def test_shadow_mode_records_and_writes_nothing() -> None:
    kube = world(3)
    shadow = ShadowActuator(actuator(kube))
    plan = make_plan(["n0", "n1", "n2"], [Mode.IDLE] * 3, [Mode.MINE, Mode.AI, Mode.IDLE])
    for _ in range(3):
        result = shadow.apply(plan)
        assert result.writes == 0
    assert kube.writes == 0 and kube.calls["list_nodes"] == 3
    record = shadow.records[-1]
    assert record.decision_id == "d-1" and len(shadow.records) == 3
    assert set(record.actions) == {"n0", "n1", "n2"}  # n2 would be adopted (label, taint)
    assert "STARTING_MINE" in record.actions["n0"]
    assert result.deferred["n1"].startswith("shadow: would patch IDLE → STARTING_AI → AI")
    bare = ShadowActuator().apply(plan)
    assert bare.deferred == {"n0": "shadow: would idle → mine", "n1": "shadow: would idle → ai"}


def test_restarted_controller_continues_without_double_actions() -> None:
    kube, first, clock = ai_world({"labels": {CFG.interruptible_label: "true"}}, {})
    kube.evict_deletes = False  # evicted pods take a while to terminate
    first.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert kube.evictions == ["t/job0"] and state(kube, "n0") == "DRAINING_AI"
    since = node(kube, "n0")["metadata"]["annotations"][SINCE_ANNOTATION]
    del first  # the controller dies; its memory goes with it

    clock.t += 120.0
    second = actuator(kube, clock)
    held = [NodeTarget("n0", Mode.IDLE, reason="GUARD_IN_TRANSITION", held_in_transition=True)]
    for _ in range(3):
        result = second.apply_targets(held, "d-3")
        assert result.writes == 0  # job0 is already leaving, job1 is not interruptible
    assert kube.evictions == ["t/job0"]
    kube.delete_pod("t", "job0")
    kube.delete_pod("t", "job1")
    results = converge(second, kube, held, decision="d-3")
    assert sum(r.writes for r in results) == 2
    notes = node(kube, "n0")["metadata"]["annotations"]
    assert notes[STATE_ANNOTATION] == "MINING" and notes[DECISION_ANNOTATION] == "d-2"
    assert notes[SINCE_ANNOTATION] != since  # the label moved idle → mine: a new since
    assert notes["hashpivot.io/reason"] == "HIGHER_VALUE"


def test_miner_daemonset_manifest_and_ensure() -> None:
    kube = FakeKube()
    body = miner_daemonset_manifest(
        CFG,
        "miner:1",
        args=["--pool", "x"],
        wallet_secret="wallet",
        gpus=8,
        node_selector={"a": "b"},
    )
    spec = body["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {MODE_LABEL: "mine", "a": "b"}
    assert spec["tolerations"][0]["key"] == MINING_TAINT_KEY
    assert spec["containers"][0]["envFrom"] == [{"secretRef": {"name": "wallet"}}]
    assert ensure_miner_daemonset(kube, body) is True
    assert ensure_miner_daemonset(kube, body) is False
    assert kube.calls["create_daemonset"] == 1


def test_a_failed_read_is_reported_not_raised() -> None:
    kube = world(1)
    kube.fail["list_nodes"] = [ApiError(0, "connection refused"), ApiError(503, "unavailable")]
    act = actuator(kube)
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-1")
    assert "connection refused" in result.errors["(cluster)"] and result.writes == 0
    assert "unavailable" in act.reconcile().errors["(cluster)"]
    assert act.apply_targets(targets(Mode.MINE, ["n0"]), "d-1").writes == 1


def test_a_switch_a_reconcile_pass_begins_is_reported_with_the_next_plan() -> None:
    """A node held back for power headroom may begin its switch in a reconcile pass
    between cycles: the next plan's result lists it as begun then, so the decision step
    counts it against the budgets."""
    kube = world(2)
    clock = Clock()
    act = actuator(kube, clock)
    released = ActuationResult(started=["n1"])
    real_run = act._run

    def run_releasing(wanted: Sequence[NodeTarget], decision_id: str, *, write: bool) -> Any:
        done = real_run(wanted, decision_id, write=write)
        if decision_id == RECONCILE_DECISION:
            done.result = released
        return done

    act._run = run_releasing  # type: ignore[method-assign]
    began = clock()
    act.reconcile()
    clock.sleep(30.0)
    act.reconcile()  # the same switch seen again: still the time it began
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert result.began_earlier == {"n1": began}
    assert act.apply_targets(targets(Mode.MINE, ["n0"]), "d-3").began_earlier == {}


def test_an_eviction_answered_not_found_or_conflict_is_a_pod_gone_not_a_refusal() -> None:
    for status in (404, 409):
        kube, act, _ = ai_world({"labels": {CFG.interruptible_label: "true"}})
        kube.fail["evict_pod"] = [ApiError(status, "gone")]
        # One pass taints the node and, once the server holds the taint, evicts.
        result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
        assert not result.errors, status
        assert "t/job0 already gone" in result.deferred["n0"], status
        assert act.last_report.refused == {}, status


def test_a_disruption_budget_refusal_keeps_the_servers_words() -> None:
    kube, act, _ = ai_world({"labels": {CFG.interruptible_label: "true"}})
    kube.pdb_blocked.add("t/job0")
    act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert act.last_report.refused == {
        "t/job0": "Cannot evict pod as it would violate the pod's disruption budget."
    }
    # A refusal with no message is still recorded, by its status.
    kube.pdb_blocked.clear()
    kube.fail["evict_pod"] = [ApiError(429, "")]
    act.apply_targets(targets(Mode.MINE, ["n0"]), "d-3")
    assert act.last_report.refused == {"t/job0": "429"}


def test_an_eviction_names_the_pods_uid_so_a_pod_recreated_under_its_name_stays() -> None:
    kube, act, _ = ai_world({"labels": {CFG.interruptible_label: "true"}})
    uid = kube.pods["t/job0"]["metadata"]["uid"]
    asked: list[str | None] = []
    evict = kube.evict_pod

    def recording(namespace: str, name: str, uid: str | None = None) -> None:
        asked.append(uid)
        evict(namespace, name, uid)

    kube.evict_pod = recording  # type: ignore[method-assign]
    act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert asked == [uid] and kube.evictions == ["t/job0"]


def test_an_eviction_that_fails_does_not_stop_the_next_pods_eviction() -> None:
    kube, act, _ = ai_world({"labels": {CFG.interruptible_label: "true"}},
                            {"labels": {CFG.interruptible_label: "true"}})
    kube.fail["evict_pod"] = [ApiError(500, "etcd timeout")]
    result = act.apply_targets(targets(Mode.MINE, ["n0"]), "d-2")
    assert kube.calls["evict_pod"] == 2
    assert len(kube.evictions) == 1
    assert "failed" in result.errors["n0"] and "etcd timeout" in result.errors["n0"]
