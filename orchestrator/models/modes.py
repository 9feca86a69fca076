"""Node modes, lifecycle states and the one table of legal transitions.

Modes are what a policy chooses; states are where a node actually is while the
actuator walks it from one mode to another (design §2: "illegal transitions are
refused in one place" — that place is `LEGAL_TRANSITIONS` and `check_transition`).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt


class Mode(IntEnum):
    """What a node is for. Stored as int8 in fleet columns."""

    IDLE = 0
    MINE = 1
    AI = 2

    @property
    def label(self) -> str:
        """The value of the `hashpivot.io/mode` label."""
        return ("idle", "mine", "ai")[self.value]

    @classmethod
    def parse(cls, text: str) -> Mode:
        try:
            return {"idle": cls.IDLE, "mine": cls.MINE, "ai": cls.AI}[text.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown mode {text!r}; expected one of idle, mine, ai") from None


N_MODES = len(Mode)
MODE_LABELS: tuple[str, ...] = tuple(m.label for m in Mode)


class NodeState(IntEnum):
    """Where a node is in its lifecycle. Steady states equal a mode; the rest are on the way."""

    IDLE = 0
    MINING = 1
    AI = 2
    STARTING_MINE = 3
    STOPPING_MINE = 4
    STARTING_AI = 5
    DRAINING_AI = 6


STEADY_STATE_OF_MODE: dict[Mode, NodeState] = {
    Mode.IDLE: NodeState.IDLE,
    Mode.MINE: NodeState.MINING,
    Mode.AI: NodeState.AI,
}

# Every legal edge, with why it exists. Anything else is refused.
LEGAL_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    # An idle node can start either workload.
    NodeState.IDLE: frozenset({NodeState.STARTING_MINE, NodeState.STARTING_AI}),
    # The miner comes up, or the start is abandoned (mode changed again before it ran).
    NodeState.STARTING_MINE: frozenset({NodeState.MINING, NodeState.STOPPING_MINE}),
    # Mining only ends by stopping the miner: nothing else runs there.
    NodeState.MINING: frozenset({NodeState.STOPPING_MINE}),
    NodeState.STOPPING_MINE: frozenset({NodeState.IDLE}),
    # Taint removed; AI pods may land. Abandoning drains what landed.
    NodeState.STARTING_AI: frozenset({NodeState.AI, NodeState.DRAINING_AI}),
    # Leaving AI always drains first: tenants finish, leases end, or interruptible pods move.
    NodeState.AI: frozenset({NodeState.DRAINING_AI}),
    # A drain finishes, or is cancelled because AI is wanted again.
    NodeState.DRAINING_AI: frozenset({NodeState.IDLE, NodeState.AI}),
}


def check_transition(current: NodeState, nxt: NodeState) -> None:
    """Raise `TransitionError` unless `current → nxt` is in the table (staying put is legal)."""
    from orchestrator.errors import TransitionError

    if nxt == current or nxt in LEGAL_TRANSITIONS[current]:
        return
    raise TransitionError(f"illegal node transition {current.name} → {nxt.name}")


def next_state(current: NodeState, target: Mode) -> NodeState:
    """The next step from `current` toward the steady state of `target` (one edge at a time)."""
    goal = STEADY_STATE_OF_MODE[target]
    if current == goal:
        return current
    step: NodeState
    if current == NodeState.IDLE:
        step = NodeState.STARTING_MINE if target == Mode.MINE else NodeState.STARTING_AI
    elif current in (NodeState.MINING, NodeState.STARTING_MINE):
        step = (
            NodeState.MINING
            if (current == NodeState.STARTING_MINE and target == Mode.MINE)
            else NodeState.STOPPING_MINE
        )
    elif current == NodeState.STOPPING_MINE:
        step = NodeState.IDLE
    elif current == NodeState.STARTING_AI:
        step = NodeState.AI if target == Mode.AI else NodeState.DRAINING_AI
    elif current == NodeState.AI:
        step = NodeState.DRAINING_AI
    else:  # DRAINING_AI
        step = NodeState.AI if target == Mode.AI else NodeState.IDLE
    check_transition(current, step)
    return step


def mode_of_state(states: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    """The mode a node is committed to in each state (transitional states count as their goal).

    Vectorized through a lookup table so it costs one pass at any fleet size.
    """
    return _MODE_OF_STATE[states]


_MODE_OF_STATE = np.array(
    [Mode.IDLE, Mode.MINE, Mode.AI, Mode.MINE, Mode.IDLE, Mode.AI, Mode.IDLE], dtype=np.int8
)

STEADY_STATES = np.array([True, True, True, False, False, False, False])
