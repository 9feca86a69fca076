"""One node's next move toward its target mode: pure, so every path is unit-tested.

Every edge goes through `orchestrator.models.modes.next_state` (illegal transitions are
refused there). Edges with nothing to wait for are folded into one write; an edge that
waits on the cluster (the miner pod leaving or running, AI pods leaving) is only crossed
once the node is observed in the state before it:

    to AI:   MINING → STOPPING_MINE (label idle; the miner pod goes)
             → IDLE → STARTING_AI (taint off, label ai) → AI
    to mine: AI → DRAINING_AI (taint on, label idle; pods finish, leases end, or
             interruptible pods are evicted) → IDLE → STARTING_MINE (label mine)
             → MINING (the miner pod runs)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.adapters.k8s.api import Obj
from orchestrator.adapters.k8s.objects import (
    NodeView,
    PodView,
    Provenance,
    format_time,
    mode_of,
    node_patch,
)
from orchestrator.models.modes import STEADY_STATE_OF_MODE, Mode, NodeState, next_state

STEADY = frozenset(STEADY_STATE_OF_MODE.values())
_MAX_EDGES = 8  # a full switch is at most four edges; more means a bug, not a long walk


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one node now: one patch (or none), evictions, and why it stops short."""

    node: str
    start: NodeState
    end: NodeState
    goal: Mode
    path: tuple[NodeState, ...]
    patch: Obj | None
    evict: tuple[PodView, ...]
    #: Why the node stops before the goal's steady state (None: it gets there).
    waiting: str | None
    #: A switch begins (or changes target) with this step.
    new_switch: bool

    @property
    def reaches_goal(self) -> bool:
        return self.end == STEADY_STATE_OF_MODE[self.goal]


def effective_target(view: NodeView, planned: Mode, *, held_in_transition: bool) -> Mode:
    """Where a node should go. The engine holds a switching node at its committed mode
    (GUARD_IN_TRANSITION): the switch under way then continues to its recorded target, and
    a node that has meanwhile settled stays put (a held node never starts a new switch)."""
    if not held_in_transition:
        return planned
    if view.state in STEADY:
        return mode_of(view.state)
    return view.target if view.target is not None else planned


def _gate(
    state: NodeState,
    nxt: NodeState,
    view: NodeView,
    ai_pods: Sequence[PodView],
    miner_pods: Sequence[PodView],
    *,
    now_s: float,
    miner_managed: bool,
) -> tuple[str | None, tuple[PodView, ...]]:
    """(why the edge must wait, pods to evict). (None, ()) when the edge may be crossed."""
    # The server holds `state` on the node (not just our plan of it).
    observed = state == view.state and view.state_recorded and view.in_shape(state)
    # ... and not just now by our own write: pod lists may lag that write by a moment.
    settled = observed and not view.fresh_write
    if state == NodeState.STOPPING_MINE and nxt == NodeState.IDLE:
        if not settled:
            return "waiting for the miner to be told to stop", ()
        if miner_managed and miner_pods:
            return "waiting for the miner pod to leave", ()
    elif state == NodeState.DRAINING_AI and nxt == NodeState.IDLE:
        if not observed:
            return "waiting for the taint to hold", ()
        active = [p for p in ai_pods if not p.finished]
        if active:
            evict = tuple(p for p in active if p.evictable(now_s))
            return _drain_message(active, evict, now_s), evict
        if not settled:
            return "drain: checking for late pods next pass", ()
    elif state == NodeState.STARTING_MINE and nxt == NodeState.MINING and miner_managed:
        running = [p for p in miner_pods if p.phase == "Running" and not p.deleting]
        if not observed or not running:
            return "waiting for the miner pod to run", ()
    return None, ()


def _drain_message(active: Sequence[PodView], evict: Sequence[PodView], now_s: float) -> str:
    leased = [p for p in active if p.lease_protected(now_s)]
    fixed = [p for p in active if not p.interruptible and not p.lease_protected(now_s)]
    leaving = [p for p in active if p.deleting]
    parts = [f"draining {len(active)} AI pod(s)"]
    if leaving:
        parts.append(f"{len(leaving)} leaving")
    if evict:
        parts.append(f"{len(evict)} to evict")
    if leased:
        until = max(p.lease_until for p in leased)
        parts.append(f"{len(leased)} protected by lease until {format_time(until)}")
    if fixed:
        parts.append(f"{len(fixed)} not interruptible: waiting for them to finish")
    return "; ".join(parts)


def plan_step(
    view: NodeView,
    target: Mode,
    ai_pods: Sequence[PodView],
    miner_pods: Sequence[PodView],
    *,
    now_s: float,
    provenance: Provenance,
    miner_managed: bool,
    power_gate: Callable[[NodeState, NodeState], str | None] | None = None,
) -> Step:
    """The next move of one node toward `target`, given the AI and miner pods bound to it.

    `power_gate(state, next)` may refuse an edge (why, or None): the actuator's site power
    budget, so a node starts drawing more only once the site has room for it.
    """
    goal = STEADY_STATE_OF_MODE[target]
    state = view.state
    path: list[NodeState] = []
    waiting: str | None = None
    evict: tuple[PodView, ...] = ()
    while state != goal:
        if len(path) >= _MAX_EDGES:
            raise RuntimeError(f"{view.name}: no path from {view.state.name} to {goal.name}")
        nxt = next_state(state, target)
        waiting, evict = _gate(
            state, nxt, view, ai_pods, miner_pods, now_s=now_s, miner_managed=miner_managed
        )
        if waiting is None and power_gate is not None:
            waiting = power_gate(state, nxt)
            if waiting is not None and path and state == NodeState.IDLE:
                # Wait where the switch is, not at IDLE: IDLE reads as settled, and the
                # engine would re-decide the node as a new switch, dropping its target.
                path.pop()
                state = path[-1] if path else view.state
        if waiting is not None:
            break
        path.append(nxt)
        state = nxt
    new_switch = view.target != target or (view.state in STEADY and view.state != goal)
    patch = node_patch(
        view, state, target, now_s=now_s, provenance=provenance if new_switch else None
    )
    return Step(
        node=view.name,
        start=view.state,
        end=state,
        goal=target,
        path=tuple(path),
        patch=patch,
        evict=evict,
        waiting=waiting,
        new_switch=new_switch,
    )


def committed_mode(step: Step) -> Mode:
    """The mode label the node carries after the step."""
    return mode_of(step.end)
