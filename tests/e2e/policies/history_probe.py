"""A policy that reads every history column and acts on one: it idles a site's nodes once
that site's power history shows a spike. It also writes what it was shown to
`history_seen.jsonl` beside itself, so a test can check each value against the recorded
files (a test probe: real policies do no I/O)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np

from orchestrator.framework import DecisionContext, Policy, PolicyDecision
from orchestrator.models.modes import Mode

SEEN = Path(__file__).with_name("history_seen.jsonl")
SPIKE_USD_MWH = 1_000.0


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


class HistoryProbe(Policy):
    name: ClassVar[str] = "history-probe"
    uses_history: ClassVar[bool] = True
    SPIKE_SEEN: ClassVar[int] = 120
    reasons: ClassVar[dict[int, str]] = {
        SPIKE_SEEN: "a power spike at this site is in the published history: idled",
    }

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        h = ctx.history
        with SEEN.open("a") as out:
            out.write(json.dumps({
                "now": ctx.now_s,
                "times": h.times_s.tolist(),
                "known_at": h.known_at_s.tolist(),
                "btc": _floats(h.btc_usd),
                "difficulty": _floats(h.difficulty),
                "hashprice": _floats(h.hashprice_usd_ph_day),
                "first_site": _floats(h.power_usd_mwh),
                "sites": [_floats(h.site_power_usd_mwh[:, k])
                          for k in range(h.site_power_usd_mwh.shape[1])],
            }) + "\n")
        spiked = np.zeros(len(ctx.fleet.sites), dtype=bool)
        if h.times_s.size:
            # NaN (not yet published) is no spike.
            shown = np.nan_to_num(h.site_power_usd_mwh, nan=-np.inf)
            spiked = shown.max(axis=0) >= SPIKE_USD_MWH
        idle = spiked[ctx.fleet.site]
        target = np.where(idle, Mode.IDLE, ctx.current).astype(np.int8)
        reason = np.where(idle & (ctx.current != Mode.IDLE), self.SPIKE_SEEN, 0)
        return PolicyDecision(target=target, reason=reason.astype(np.int16))
