"""Kubernetes Events on nodes: each switch the controller decides and each guard hold that
keeps a node where it is, with the reason in words, so `kubectl describe node` and
`kubectl get events` say what hashpivot did to a node and why.

Modelled on Karpenter's disruption events: `events.k8s.io/v1` Events regarding the Node
(in the `default` namespace, where node events live), reported by
`hashpivot.io/controller`, de-duplicated per node and reason for a while (a guard that
holds a node every cycle is one event, not one per cycle), and capped per cycle so a
fleet-wide hold cannot flood the API server. Only the live leader records them: shadow
writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.framework.reasons import GUARD_REASONS, REASON_TEXT, Reason
from orchestrator.models.modes import MODE_LABELS

if TYPE_CHECKING:
    from orchestrator.engine.plan import Plan

log = logging.getLogger("hashpivot.k8s.events")

REPORTING_CONTROLLER = "hashpivot.io/controller"
EVENTS_NAMESPACE = "default"
#: One event per node and reason within this long, s.
DEDUPE_S = 15 * 60.0
#: Most events written in one cycle; the rest wait for a later cycle (or their dedupe).
MAX_PER_CYCLE = 50
#: Guard holds that mean trouble are Warnings; pacing (dwell, budgets…) is Normal.
WARNING_GUARDS = frozenset({Reason.GUARD_STALE_DATA, Reason.GUARD_FROZEN,
                            Reason.GUARD_UNREACHABLE, Reason.GUARD_POWER_CAP_CURTAILED,
                            Reason.GUARD_INVALID_TARGET, Reason.GUARD_UNSUPPORTED_MODE})
#: Guard holds looked at per cycle (a rotating window over the held nodes).
HOLD_SCAN = 1000
#: The API server refuses a longer `note`.
NOTE_LIMIT = 1024

CreateEvent = Callable[[str, dict[str, Any]], Any]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.lower().split("_"))


def switch_reason(target: str) -> str:
    """`SwitchToAi`, `SwitchToMine`, `SwitchToIdle`."""
    return f"SwitchTo{target.capitalize()}"


def hold_reason(reason: Reason) -> str:
    """`HeldMinDwell`, `HeldStaleData`, … (the guard's name, CamelCase)."""
    return "Held" + _camel(reason.name.removeprefix("GUARD_"))


#: Event reason and type of each guard's hold, worked out once.
_HOLDS = {int(r): (hold_reason(r), "Warning" if r in WARNING_GUARDS else "Normal")
          for r in GUARD_REASONS}


class NodeEvents:
    """Writes the Events of one cycle's plan (see the module docstring)."""

    def __init__(self, create: CreateEvent, instance: str, *,
                 dedupe_s: float = DEDUPE_S, max_per_cycle: int = MAX_PER_CYCLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.create = create
        self.instance = instance[:128]
        self.dedupe_s = dedupe_s
        self.max_per_cycle = max_per_cycle
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._cursor = 0
        self.written = 0
        self.suppressed = 0

    def publish(self, plan: Plan | None, notes: dict[str, str] | None = None) -> int:
        """Events for `plan`'s switches and guard holds; `notes`: the journaled text of a
        switch by node (the plan's own explanation is used otherwise). Returns how many
        were written."""
        if plan is None:
            return 0
        # Switches first, then guard holds; notes are built only for events written. Holds
        # are scanned in a rotating window: a fleet-wide hold (each node already reported
        # within the dedupe window) costs a bounded scan per cycle, not one per node.
        now = self.clock()
        written = examined = 0
        changed = plan.changed
        held = np.flatnonzero((plan.reason >= min(GUARD_REASONS)) & (plan.target == plan.current))
        window = held
        if held.size > HOLD_SCAN:
            start = self._cursor % held.size
            window = np.roll(held, -start)[:HOLD_SCAN]
            self._cursor = start + HOLD_SCAN
        for i in (*changed.tolist(), *window.tolist()):
            if written >= self.max_per_cycle:
                break
            examined += 1
            node = str(plan.node_names[i])
            current = MODE_LABELS[int(plan.current[i])]
            if plan.target[i] != plan.current[i]:
                target = MODE_LABELS[int(plan.target[i])]
                reason, kind = switch_reason(target), "Normal"
            else:
                code = int(plan.reason[i])
                reason, kind = _HOLDS[code]
            last = self._last.get((node, reason))
            if last is not None and now - last < self.dedupe_s:
                continue
            if plan.target[i] != plan.current[i]:
                text = (notes or {}).get(node) or plan.explain(i).text
                note = f"{current} → {target}: {text}"
            else:
                # A change the power cap reverted names the load it gave way to.
                gave_way = plan.cap.text(i, node) if plan.cap is not None else None
                note = f"stays {current}: {gave_way or REASON_TEXT[Reason(code)]}"
            try:
                self.create(EVENTS_NAMESPACE, self.body(node, reason, kind, note,
                                                       plan.decision_id))
            except Exception as exc:  # an event is for people: never fail the cycle
                log.warning("event %s on node %s not written: %s", reason, node, exc)
                continue
            self._last[(node, reason)] = now
            written += 1
        self.suppressed += int(changed.size + held.size) - examined
        self.written += written
        # Forget keys past their dedupe window so the map stays the size of the fleet.
        if len(self._last) > 4 * max(len(plan.node_names), 1):
            self._last = {k: t for k, t in self._last.items() if now - t < self.dedupe_s}
        return written

    def body(self, node: str, reason: str, kind: str, note: str,
             decision_id: str) -> dict[str, Any]:
        action = "Switch" if reason.startswith("Switch") else "Hold"
        return {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # The server appends a random suffix to generateName; the name must stay DNS-valid.
            "metadata": {"generateName": f"{node[:200]}.hashpivot-",
                         "namespace": EVENTS_NAMESPACE,
                         "annotations": {"hashpivot.io/decision": decision_id}},
            "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "type": kind,
            "note": note[:NOTE_LIMIT],
            "regarding": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
