"""Tier 0: one node's next move toward its target (every path, gates, and a property)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.adapters.k8s.lifecycle import STEADY, effective_target, plan_step
from orchestrator.adapters.k8s.objects import (
    MINING_TAINT,
    MODE_LABEL,
    STATE_ANNOTATION,
    TARGET_ANNOTATION,
    NodeView,
    PodView,
    Provenance,
    format_time,
    node_view,
    shape_of,
)
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.modes import STEADY_STATE_OF_MODE, Mode, NodeState, check_transition
from tests.doubles.k8s import merge_patch

CFG = KubernetesConfig()
PROV = Provenance("d-1", "HIGHER_VALUE")
NOW = 1_000_000.0


def node_obj(state: NodeState, target: Mode | None = None, *, in_shape: bool = True) -> dict:
    label, tainted = shape_of(state)
    if not in_shape:
        tainted = not tainted
    notes = {STATE_ANNOTATION: state.name, "hashpivot.io/since": "2025-01-01T00:00:00Z"}
    if target is not None:
        notes[TARGET_ANNOTATION] = target.label
    return {
        "metadata": {
            "name": "n1",
            "resourceVersion": "1",
            "labels": {MODE_LABEL: label},
            "annotations": notes,
        },
        "spec": {"taints": [dict(MINING_TAINT)] if tainted else []},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def view(state: NodeState, target: Mode | None = None, *, fresh: bool = False, **kw) -> NodeView:
    return node_view(node_obj(state, target, **kw), CFG, fresh_write=fresh)


def pod(
    name: str = "job",
    *,
    interruptible: bool = False,
    lease_until: float = 0.0,
    deleting: bool = False,
    phase: str = "Running",
    miner: bool = False,
) -> PodView:
    return PodView(
        namespace="t",
        name=name,
        uid=f"uid-{name}",
        node="n1",
        phase=phase,
        gpus=0.0 if miner else 8.0,
        deleting=deleting,
        interruptible=interruptible,
        lease_until=lease_until,
        offered_usd_per_gpu_hour=None,
        expected_duration_h=None,
        gpu_product=None,
        profile=None,
        daemonset="hashpivot-miner" if miner else None,
        created_s=None,
    )


def step(v: NodeView, target: Mode, ai=(), miner=(), managed: bool = True):
    return plan_step(v, target, ai, miner, now_s=NOW, provenance=PROV, miner_managed=managed)


def test_steady_node_in_shape_needs_nothing() -> None:
    s = step(view(NodeState.MINING, Mode.MINE), Mode.MINE, miner=[pod(miner=True)])
    assert s.patch is None and s.path == () and s.waiting is None and s.reaches_goal


def test_mine_to_ai_stops_the_miner_first_then_folds_to_ai() -> None:
    s = step(view(NodeState.MINING, Mode.MINE), Mode.AI, miner=[pod(miner=True)])
    assert s.path == (NodeState.STOPPING_MINE,)
    assert s.patch is not None and s.patch["metadata"]["labels"] == {MODE_LABEL: "idle"}
    assert "taints" not in s.patch.get("spec", {})  # still tainted while the miner leaves
    assert s.new_switch and s.patch["metadata"]["annotations"]["hashpivot.io/decision-id"] == "d-1"
    # Our own answer: the miner pod has not gone yet.
    s = step(view(NodeState.STOPPING_MINE, Mode.AI, fresh=True), Mode.AI, miner=[pod(miner=True)])
    assert s.patch is None and s.waiting and "miner" in s.waiting
    s = step(view(NodeState.STOPPING_MINE, Mode.AI), Mode.AI, miner=[pod(miner=True)])
    assert s.patch is None and s.waiting == "waiting for the miner pod to leave"
    s = step(view(NodeState.STOPPING_MINE, Mode.AI), Mode.AI)
    assert s.path == (NodeState.IDLE, NodeState.STARTING_AI, NodeState.AI)
    assert s.patch is not None and s.patch["spec"]["taints"] == []
    assert s.patch["metadata"]["labels"] == {MODE_LABEL: "ai"}
    assert "hashpivot.io/decision-id" not in s.patch["metadata"]["annotations"]  # kept


def test_without_a_managed_miner_mine_to_ai_is_one_write_after_settling() -> None:
    s = step(view(NodeState.MINING, Mode.MINE), Mode.AI, managed=False)
    assert s.path == (NodeState.STOPPING_MINE,)  # the next edge waits for the label to settle
    s = step(view(NodeState.STOPPING_MINE, Mode.AI), Mode.AI, managed=False)
    assert s.reaches_goal


def test_ai_to_mine_drains_waits_then_labels_mine_then_mining() -> None:
    job = pod(interruptible=False)
    s = step(view(NodeState.AI, Mode.AI), Mode.MINE, ai=[job])
    assert s.path == (NodeState.DRAINING_AI,) and s.evict == ()
    assert s.patch is not None and s.patch["spec"]["taints"] == [MINING_TAINT]
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE, ai=[job])
    assert s.patch is None and s.evict == ()
    assert s.waiting is not None and "not interruptible" in s.waiting
    # Drained, but only just tainted by us: a late pod may still show up.
    s = step(view(NodeState.DRAINING_AI, Mode.MINE, fresh=True), Mode.MINE)
    assert s.patch is None and s.waiting is not None
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE)
    assert s.path == (NodeState.IDLE, NodeState.STARTING_MINE)
    assert s.patch is not None and s.patch["metadata"]["labels"] == {MODE_LABEL: "mine"}
    s = step(view(NodeState.STARTING_MINE, Mode.MINE), Mode.MINE)
    assert s.waiting == "waiting for the miner pod to run"
    pending_miner = pod(miner=True, phase="Pending")
    s = step(view(NodeState.STARTING_MINE, Mode.MINE), Mode.MINE, miner=[pending_miner])
    assert s.waiting == "waiting for the miner pod to run"
    s = step(view(NodeState.STARTING_MINE, Mode.MINE), Mode.MINE, miner=[pod(miner=True)])
    assert s.path == (NodeState.MINING,) and s.reaches_goal
    assert (
        s.patch is not None and s.patch["metadata"]["annotations"]["hashpivot.io/state"] == "MINING"
    )


def _every_kind_of_ai_pod() -> list[PodView]:
    """Free, leased, lease expired, not interruptible (with and without an expired
    lease) and already leaving."""
    return [
        pod("free", interruptible=True),
        pod("leased", interruptible=True, lease_until=NOW + 3600),
        pod("expired", interruptible=True, lease_until=NOW - 1),
        pod("fixed", interruptible=False),
        pod("fixed-expired", interruptible=False, lease_until=NOW - 1),
        pod("leaving", interruptible=True, deleting=True),
    ]


def test_drain_evicts_only_interruptible_pods_outside_leases_and_never_twice() -> None:
    ai = _every_kind_of_ai_pod()
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE, ai=ai)
    assert {p.name for p in s.evict} == {"free", "expired"}
    assert s.waiting is not None and "protected by lease" in s.waiting
    # Eviction waits until the taint holds on the node (never evict onto a schedulable node).
    s = step(view(NodeState.DRAINING_AI, Mode.MINE, in_shape=False), Mode.MINE, ai=ai)
    assert s.evict == () and s.patch is not None


def test_finished_pods_do_not_hold_a_drain() -> None:
    done = pod("done", phase="Succeeded")
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE, ai=[done])
    assert s.path[:2] == (NodeState.IDLE, NodeState.STARTING_MINE)


def test_a_drain_is_cancelled_when_ai_is_wanted_again() -> None:
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.AI, ai=[pod()])
    assert s.path == (NodeState.AI,) and s.new_switch
    assert s.patch is not None and s.patch["spec"]["taints"] == []


def test_effective_target_continues_a_switch_held_by_the_engine() -> None:
    v = view(NodeState.STOPPING_MINE, Mode.AI)
    assert effective_target(v, Mode.IDLE, held_in_transition=True) == Mode.AI
    assert effective_target(v, Mode.IDLE, held_in_transition=False) == Mode.IDLE
    steady = view(NodeState.MINING, Mode.MINE)
    assert effective_target(steady, Mode.AI, held_in_transition=False) == Mode.AI
    # Settled between the plan and the pass: a held node never starts a new switch.
    assert effective_target(steady, Mode.IDLE, held_in_transition=True) == Mode.MINE


def test_unrecorded_node_is_adopted_with_provenance() -> None:
    bare = {"metadata": {"name": "n1", "resourceVersion": "3"}, "spec": {}, "status": {}}
    s = step(node_view(bare, CFG), Mode.IDLE)
    assert s.patch is not None and s.new_switch
    notes = s.patch["metadata"]["annotations"]
    assert notes["hashpivot.io/state"] == "IDLE" and notes["hashpivot.io/decision-id"] == "d-1"
    assert s.patch["spec"]["taints"] == [MINING_TAINT]


# -- property: whatever the world looks like, every step is legal and converges ---------------

states = st.sampled_from(list(NodeState))
modes = st.sampled_from(list(Mode))


@settings(max_examples=300, deadline=None)
@given(
    start=states,
    target=modes,
    recorded_target=st.none() | modes,
    managed=st.booleans(),
    in_shape=st.booleans(),
    fresh=st.booleans(),
    n_fixed=st.integers(0, 2),
    n_free=st.integers(0, 2),
    miner_phase=st.sampled_from([None, "Pending", "Running"]),
)
def test_steps_are_legal_shaped_and_converge(
    start: NodeState,
    target: Mode,
    recorded_target: Mode | None,
    managed: bool,
    in_shape: bool,
    fresh: bool,
    n_fixed: int,
    n_free: int,
    miner_phase: str | None,
) -> None:
    obj = node_obj(start, recorded_target, in_shape=in_shape)
    ai = [pod(f"f{i}") for i in range(n_fixed)] + [
        pod(f"i{i}", interruptible=True) for i in range(n_free)
    ]
    miners = [] if miner_phase is None else [pod("m", miner=True, phase=miner_phase)]
    for _ in range(12):
        v = node_view(obj, CFG, fresh_write=fresh)
        s = step(v, target, ai=ai, miner=miners, managed=managed)
        prev = v.state
        for nxt in s.path:
            check_transition(prev, nxt)  # raises on an illegal edge
            prev = nxt
        for p in s.evict:
            assert p.interruptible and not p.lease_protected(NOW)
            ai.remove(p)  # the eviction worked; the pod leaves
        if s.patch is None:
            assert v.in_shape(s.end) or s.end == v.state
            if s.reaches_goal:
                break
        else:
            obj = merge_patch(obj, s.patch)
            after = node_view(obj, CFG)
            assert after.state == s.end and after.in_shape(s.end)
            assert after.target == target
        # The world moves on: writes settle, the DaemonSet follows the label, jobs end.
        fresh = False
        label = node_view(obj, CFG).mode_label
        miners = [pod("m", miner=True)] if label == "mine" else []
        ai = []
    final = node_view(obj, CFG)
    assert final.state == STEADY_STATE_OF_MODE[target]
    assert final.state in STEADY and final.in_shape(final.state)


# -- each gate on its own edge, and the site power gate -------------------------------------


def test_a_switch_from_starting_mine_to_ai_does_not_wait_for_the_miner_to_run() -> None:
    # The gate on the miner pod running belongs to STARTING_MINE → MINING only; turning
    # back toward AI (STARTING_MINE → STOPPING_MINE) has nothing to wait for.
    s = step(view(NodeState.STARTING_MINE, Mode.MINE), Mode.AI)
    assert s.path == (NodeState.STOPPING_MINE,) and s.waiting is not None
    assert "told to stop" in s.waiting


def test_a_node_just_labelled_mine_waits_for_a_miner_pod_seen_after_the_label() -> None:
    # A miner pod listed as running while the node was still idle (its DaemonSet pod of
    # before, not yet gone) proves nothing about the label just written: the walk stops
    # at STARTING_MINE until the server holds that state.
    old_miner = pod("m", miner=True)
    s = step(view(NodeState.IDLE, Mode.IDLE), Mode.MINE, miner=[old_miner])
    assert s.path == (NodeState.STARTING_MINE,)
    assert s.waiting == "waiting for the miner pod to run"
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE, miner=[old_miner])
    assert s.path == (NodeState.IDLE, NodeState.STARTING_MINE)
    assert s.waiting == "waiting for the miner pod to run"


def test_a_miner_pod_in_any_phase_but_running_does_not_complete_the_switch() -> None:
    for phase in ("Pending", "Succeeded", "Unknown", "Failed"):
        s = step(view(NodeState.STARTING_MINE, Mode.MINE), Mode.MINE,
                 miner=[pod("m", miner=True, phase=phase)])
        assert s.path == () and s.waiting == "waiting for the miner pod to run", phase


def test_the_drain_message_counts_each_kind_of_pod() -> None:
    ai = _every_kind_of_ai_pod()
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE, ai=ai)
    until = format_time(NOW + 3600)
    assert s.waiting == (
        f"draining 6 AI pod(s); 1 leaving; 2 to evict; 1 protected by lease until {until}; "
        "2 not interruptible: waiting for them to finish"
    )
    # Nothing leaving and nothing to evict: those parts are left out.
    s = step(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE, ai=[pod("fixed")])
    assert s.waiting == "draining 1 AI pod(s); 1 not interruptible: waiting for them to finish"
    assert s.evict == ()


def test_a_step_toward_a_recorded_target_from_a_steady_state_is_a_new_switch() -> None:
    # The node's annotation already names the target (a pass wrote it, then the node
    # settled elsewhere, by hand or by a restart): leaving a steady state is still a new
    # switch, and its patch carries this decision's provenance, in either direction.
    for start, target in ((NodeState.MINING, Mode.AI), (NodeState.AI, Mode.MINE),
                          (NodeState.AI, Mode.IDLE), (NodeState.IDLE, Mode.AI)):
        s = step(view(start, target), target, ai=[], miner=[])
        assert s.new_switch, (start, target)
        assert s.patch is not None
        assert s.patch["metadata"]["annotations"]["hashpivot.io/decision-id"] == "d-1"
    # Continuing a switch already under way toward its recorded target is not.
    s = step(view(NodeState.STOPPING_MINE, Mode.AI), Mode.AI)
    assert not s.new_switch


def _gated(v: NodeView, target: Mode, refuse: set[tuple[NodeState, NodeState]]):
    """plan_step with a site power gate refusing the edges in `refuse`."""
    asked: list[tuple[NodeState, NodeState]] = []

    def gate(state: NodeState, nxt: NodeState) -> str | None:
        asked.append((state, nxt))
        return "site power: no room" if (state, nxt) in refuse else None

    s = plan_step(v, target, [], [], now_s=NOW, provenance=PROV, miner_managed=True,
                  power_gate=gate)
    return s, asked


def test_a_power_gate_that_allows_every_edge_changes_nothing() -> None:
    v = view(NodeState.STOPPING_MINE, Mode.AI)
    s, asked = _gated(v, Mode.AI, set())
    assert s.path == (NodeState.IDLE, NodeState.STARTING_AI, NodeState.AI) and s.reaches_goal
    assert asked == [(NodeState.STOPPING_MINE, NodeState.IDLE),
                     (NodeState.IDLE, NodeState.STARTING_AI),
                     (NodeState.STARTING_AI, NodeState.AI)]
    assert s == step(v, Mode.AI)
    # From a settled idle node too (nothing walked yet when the gate is first asked).
    idle = view(NodeState.IDLE, Mode.IDLE)
    s, _ = _gated(idle, Mode.AI, set())
    assert s.path == (NodeState.STARTING_AI, NodeState.AI) and s == step(idle, Mode.AI)


def test_a_power_gate_refusing_the_first_edge_leaves_the_node_where_it_is() -> None:
    s, _ = _gated(view(NodeState.MINING, Mode.MINE), Mode.AI,
                  {(NodeState.MINING, NodeState.STOPPING_MINE)})
    assert s.path == () and s.end == NodeState.MINING
    assert s.waiting == "site power: no room"
    assert not s.reaches_goal
    # Only the new target and its provenance are written: no label, taint or state.
    assert s.patch is not None and set(s.patch) == {"metadata"}
    assert set(s.patch["metadata"]) == {"resourceVersion", "annotations"}
    assert s.patch["metadata"]["annotations"]["hashpivot.io/target"] == "ai"


def test_a_switch_refused_power_at_idle_waits_where_it_was_not_at_idle() -> None:
    # IDLE reads as settled: a node left there would be decided again as a new switch,
    # losing its target. So a refusal at IDLE takes the walk back to the node's state.
    refuse = {(NodeState.IDLE, NodeState.STARTING_AI)}
    s, _ = _gated(view(NodeState.STOPPING_MINE, Mode.AI), Mode.AI, refuse)
    assert s.path == () and s.end == NodeState.STOPPING_MINE and s.patch is None
    assert s.waiting == "site power: no room" and not s.reaches_goal
    s, _ = _gated(view(NodeState.DRAINING_AI, Mode.MINE), Mode.MINE,
                  {(NodeState.IDLE, NodeState.STARTING_MINE)})
    assert s.path == () and s.end == NodeState.DRAINING_AI and s.patch is None


def test_a_switch_refused_power_past_idle_stops_at_the_refused_edge() -> None:
    refuse = {(NodeState.STARTING_AI, NodeState.AI)}
    s, _ = _gated(view(NodeState.STOPPING_MINE, Mode.AI), Mode.AI, refuse)
    assert s.path == (NodeState.IDLE, NodeState.STARTING_AI)
    assert s.end == NodeState.STARTING_AI and s.waiting == "site power: no room"
    assert s.patch is not None


def test_the_power_gate_is_not_asked_about_an_edge_that_already_waits() -> None:
    # The miner has not yet been seen told to stop (our own write just now): that wait
    # stands, whatever the power gate would say.
    s, asked = _gated(view(NodeState.STOPPING_MINE, Mode.AI, fresh=True), Mode.AI, set())
    assert s.path == () and s.waiting == "waiting for the miner to be told to stop"
    assert asked == []
