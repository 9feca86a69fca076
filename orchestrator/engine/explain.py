"""Human-readable reasons for every changed node, with the numbers behind them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from orchestrator.framework.context import ScoreTable
from orchestrator.framework.reasons import REASON_TEXT, Reason
from orchestrator.models.modes import MODE_LABELS, Mode


@dataclass(frozen=True, slots=True)
class NodeExplanation:
    """Why one node got its target: the mode values (USD/h) and the switching cost."""

    node: str
    current: str
    target: str
    reason: str
    reason_code: int
    value_usd_h: dict[str, float]
    revenue_usd_h: dict[str, float]
    power_cost_usd_h: dict[str, float]
    switch_cost_usd: float
    switch_cost_usd_h: float
    ai_fill: float
    text: str


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def explain_node(
    name: str, i: int, *, current: int, target: int, reason: int, scores: ScoreTable
) -> NodeExplanation:
    cur, tgt = Mode(current), Mode(target)
    why = REASON_TEXT.get(Reason(reason), str(reason))
    values = {m.label: float(scores.value[m, i]) for m in Mode}
    sc_h = float(scores.switch_cost_per_h[tgt, i])
    delta = values[tgt.label] - values[cur.label]
    if cur == tgt:
        text = f"stays {cur.label}: {why}"
    elif math.isfinite(delta):
        verb = "beats" if delta - sc_h >= 0 else "trails"
        text = (
            f"{tgt.label} {verb} {cur.label} by ${abs(delta - sc_h):.2f}/h after "
            f"${sc_h:.2f}/h switching cost ({why})"
        )
    else:
        text = f"{cur.label} → {tgt.label}: {why}"
    return NodeExplanation(
        node=name,
        current=cur.label,
        target=tgt.label,
        reason=why,
        reason_code=int(reason),
        value_usd_h={k: v for k, v in values.items() if _finite(v) is not None},
        revenue_usd_h={m.label: float(scores.revenue[m, i]) for m in Mode},
        power_cost_usd_h={m.label: float(scores.power_cost[m, i]) for m in Mode},
        switch_cost_usd=float(scores.switch_cost_usd[tgt, i]),
        switch_cost_usd_h=sc_h,
        ai_fill=float(scores.ai_fill[i]),
        text=text,
    )


def mode_counts(modes: np.ndarray) -> dict[str, int]:
    counts = np.bincount(modes.astype(np.intp), minlength=len(MODE_LABELS))
    return {label: int(c) for label, c in zip(MODE_LABELS, counts, strict=True)}
