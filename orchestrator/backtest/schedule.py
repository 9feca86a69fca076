"""The hindsight oracle's schedule run through the simulated site, so the feasible value a
backtest reports is what the site's ledger earns for it, not the oracle's own estimate.

The oracle plans nodes per mode for each class of identical nodes (profile, site and
starting mode); `ScheduleFollower` turns that into a mode per node every step and goes
through the same decision step, guards and simulated site as every policy. It runs under
the physical guards only (power cap, protected leases, stale data): the oracle plans
without min dwell or switch budgets.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason
from orchestrator.models.modes import Mode

I64 = npt.NDArray[np.int64]


class ScheduleFollower(Policy):
    """Each step, every class's nodes per mode as the schedule says. Within a class the
    nodes already in a mode keep it first (AI nodes with the most busy GPUs first, so
    the ones that leave carry the least work), then by node index: deterministic, and no
    node switches while another of its class switches the other way."""

    name: ClassVar[str] = "hindsight-schedule"
    summary: ClassVar[str] = "the hindsight oracle's schedule, followed node by node"

    def __init__(self, start_s: float, step_s: float, class_of_node: I64, class_modes: I64):
        super().__init__()
        self.start_s, self.step_s = start_s, step_s
        self.class_modes = class_modes
        order = np.argsort(class_of_node, kind="stable")
        bounds = np.searchsorted(class_of_node[order], np.arange(class_modes.shape[1] + 1))
        #: Node indices of each class, ascending.
        self.members = [order[bounds[c] : bounds[c + 1]] for c in range(class_modes.shape[1])]
        #: Every step's targets as issued (steps × nodes), for whoever checks the replay.
        self.issued = np.empty((class_modes.shape[0], class_of_node.shape[0]), dtype=np.int8)

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        k = min(max(round((ctx.now_s - self.start_s) / self.step_s), 0),
                self.class_modes.shape[0] - 1)
        current = ctx.fleet.mode
        busy = ctx.fleet.ai_gpus_busy
        target = current.astype(np.int8)
        for c, nodes in enumerate(self.members):
            want = self.class_modes[k, c]
            movers: list[I64] = []
            stayed = np.zeros(3, dtype=np.int64)
            for m in range(3):
                here = nodes[current[nodes] == m]
                if m == Mode.AI:
                    here = here[np.argsort(-busy[here], kind="stable")]
                stayed[m] = min(here.shape[0], int(want[m]))
                movers.append(here[stayed[m] :])
            moving = np.sort(np.concatenate(movers))
            first = 0
            for m in range(3):
                need = int(want[m]) - int(stayed[m])
                target[moving[first : first + need]] = m
                first += need
        self.issued[k] = target
        return PolicyDecision(target, np.full(ctx.fleet.n, Reason.HINDSIGHT_OPTIMUM,
                                              dtype=np.int16))

