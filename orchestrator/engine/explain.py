"""Human-readable reasons for every changed node, with the numbers behind them."""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.framework.context import ScoreTable
from orchestrator.framework.reasons import REASON_TEXT, Reason
from orchestrator.models.modes import MODE_LABELS


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


@dataclass(frozen=True, slots=True)
class ExplanationTable:
    """The terms behind every changed node, as columns (cheap at any fleet size).

    Text is rendered per node on demand (`NodeExplanation`), so a cycle that changes
    100k nodes explains all of them in arrays and formats only what is shown or journaled.
    """

    nodes: npt.NDArray[Any]
    current: npt.NDArray[Any]
    target: npt.NDArray[Any]
    reason: npt.NDArray[Any]
    #: (3, k) net USD/h per mode, revenue and power cost.
    value: npt.NDArray[Any]
    revenue: npt.NDArray[Any]
    power_cost: npt.NDArray[Any]
    switch_cost_usd: npt.NDArray[Any]
    switch_cost_usd_h: npt.NDArray[Any]
    ai_fill: npt.NDArray[Any]
    #: USD/h gained after switching cost (the sort key for "most important first").
    gain_usd_h: npt.NDArray[Any]
    #: Text of the policy's own reason codes, beside the built-in ones.
    reason_text: Mapping[int, str] = field(default_factory=dict)
    #: What the power cap did, for the whole fleet (None when not known): the load each
    #: shed node gave way to (-1: none), USD per kW·h of each load named, node names and
    #: the plan's targets. Rendered only for the rows shown.
    cap: CapAllocation | None = None
    #: Per-node numbers (whole fleet) the policy's own reason texts name.
    reason_values: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    #: Per site, the power-contract programs that priced its draw ('' where none), and
    #: each node's site (whole fleet); the note follows the text of its site's nodes.
    power_notes: Sequence[str] = ()
    node_site: npt.NDArray[Any] | None = None

    @staticmethod
    def of(
        nodes: np.ndarray,
        current: np.ndarray,
        target: np.ndarray,
        reason: np.ndarray,
        scores: ScoreTable,
        reason_text: Mapping[int, str] | None = None,
        cap: CapAllocation | None = None,
        reason_values: Mapping[str, npt.NDArray[np.float64]] | None = None,
        power_notes: Sequence[str] = (),
        node_site: npt.NDArray[Any] | None = None,
    ) -> ExplanationTable:
        cur = current[nodes].astype(np.intp)
        tgt = target[nodes].astype(np.intp)
        value = scores.value[:, nodes]
        k = np.arange(nodes.shape[0])
        sc_h = scores.switch_cost_per_h[tgt, nodes]
        return ExplanationTable(
            nodes=nodes,
            current=cur,
            target=tgt,
            reason=reason[nodes],
            value=value,
            revenue=scores.revenue[:, nodes],
            power_cost=scores.power_cost[:, nodes],
            switch_cost_usd=scores.switch_cost_usd[tgt, nodes],
            switch_cost_usd_h=sc_h,
            ai_fill=scores.ai_fill[nodes],
            gain_usd_h=value[tgt, k] - value[cur, k] - sc_h,
            reason_text=reason_text or {},
            cap=cap,
            reason_values=reason_values or {},
            power_notes=power_notes,
            node_site=node_site,
        )

    def __len__(self) -> int:
        return int(self.nodes.shape[0])

    def row(self, j: int, name: str) -> NodeExplanation:
        return self.rows([j], [name])[0]

    def rows(self, js: Sequence[int], names: Sequence[str]) -> list[NodeExplanation]:
        """Rendered explanations of rows `js`. Columns become Python lists once, so the
        per-row work is plain Python (a numpy scalar read per field would cost more)."""
        idx = np.asarray(js, dtype=np.intp)
        cur_l = self.current[idx].tolist()
        tgt_l = self.target[idx].tolist()
        code_l = self.reason[idx].tolist()
        value_l = self.value[:, idx].T.tolist()
        revenue_l = self.revenue[:, idx].T.tolist()
        power_l = self.power_cost[:, idx].T.tolist()
        sc_l = self.switch_cost_usd[idx].tolist()
        sch_l = self.switch_cost_usd_h[idx].tolist()
        fill_l = self.ai_fill[idx].tolist()
        node_l = self.nodes[idx].tolist()
        notes = self.power_notes
        site_l = (self.node_site[self.nodes[idx]].tolist()
                  if notes and self.node_site is not None else None)
        out = []
        for k, name in enumerate(names):
            cur, tgt, code, value = cur_l[k], tgt_l[k], code_l[k], value_l[k]
            why = _REASON_TEXT.get(code) or self._policy_text(code, node_l[k])
            sc_h = sch_l[k]
            out.append(
                NodeExplanation(
                    node=name,
                    current=MODE_LABELS[cur],
                    target=MODE_LABELS[tgt],
                    reason=why,
                    reason_code=code,
                    value_usd_h={
                        MODE_LABELS[m]: v for m, v in enumerate(value) if math.isfinite(v)
                    },
                    revenue_usd_h=dict(zip(MODE_LABELS, revenue_l[k], strict=True)),
                    power_cost_usd_h=dict(zip(MODE_LABELS, power_l[k], strict=True)),
                    switch_cost_usd=sc_l[k],
                    switch_cost_usd_h=sc_h,
                    ai_fill=fill_l[k],
                    text=_with_note(
                        _text(cur, tgt, value[tgt] - value[cur], sc_h, why)
                        if self.cap is None
                        else self.cap.text(node_l[k], name)
                        or _text(cur, tgt, value[tgt] - value[cur], sc_h, why),
                        notes[site_l[k]] if site_l is not None else ""),
                )
            )
        return out


    def _policy_text(self, code: int, node: int) -> str:
        """The policy's text for `code`, its value names filled in for `node`."""
        text = self.reason_text.get(code)
        if text is None:
            return str(code)
        if "{" not in text:
            return text
        return _fill(text, self.reason_values, node)


class _NodeValues(string.Formatter):
    """Fills a reason text from one node's values; a name the decision did not give
    reads '?', so a text never fails a cycle."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), _MISSING)

    def format_field(self, value: Any, format_spec: str) -> Any:
        return "?" if value is _MISSING else super().format_field(value, format_spec)


_MISSING = object()
_FORMATTER = _NodeValues()


def _fill(text: str, values: Mapping[str, npt.NDArray[np.float64]], node: int) -> str:
    row = {name: float(column[node]) for name, column in values.items()}
    try:
        return _FORMATTER.vformat(text, (), row)
    except (ValueError, TypeError, IndexError):  # a format a number cannot take ("{x:s}")
        return text


_REASON_TEXT = {int(code): text for code, text in REASON_TEXT.items()}
_CAP_SHED = {int(Reason.GUARD_POWER_CAP_CURTAILED): "curtailed",
             int(Reason.GUARD_POWER_CAP_REVERTED): "kept as it was"}
_SO_IT_CAN = {0: "stay idle", 1: "mine", 2: "serve AI"}


@dataclass(frozen=True, slots=True)
class CapAllocation:
    """What gave way to what under a site's power cap, as the guards left it (see
    `engine.kernels.allocate_cap`), for the whole fleet."""

    gave_way_to: npt.NDArray[np.intp]
    usd_per_kwh: npt.NDArray[np.float64]
    names: npt.NDArray[Any]
    current: npt.NDArray[Any]
    target: npt.NDArray[Any]
    reason: npt.NDArray[Any]

    def text(self, i: int, name: str) -> str | None:
        """"s19-0412 curtailed so gpu-07 can serve AI: $0.04/kW·h vs $0.91/kW·h", or
        None when node i gave way to nothing."""
        j = int(self.gave_way_to[i])
        done = _CAP_SHED.get(int(self.reason[i]))
        if j < 0 or done is None:
            return None
        winner = str(self.names[j])
        going = int(self.target[j])
        can = _SO_IT_CAN[going] if going != int(self.current[j]) else (
            f"keep {'serving AI' if going == 2 else 'mining' if going == 1 else 'idle'}")
        return (f"{name} {done} so {winner} can {can}: ${float(self.usd_per_kwh[i]):.2f}/kW·h "
                f"vs ${float(self.usd_per_kwh[j]):.2f}/kW·h (site power cap)")


def _text(cur: int, tgt: int, delta: float, sc_h: float, why: str) -> str:
    a, b = MODE_LABELS[cur], MODE_LABELS[tgt]
    if cur == tgt:
        return f"stays {a}: {why}"
    if math.isfinite(delta):
        verb = "beats" if delta - sc_h >= 0 else "trails"
        return (
            f"{b} {verb} {a} by ${abs(delta - sc_h):.2f}/h after ${sc_h:.2f}/h switching "
            f"cost ({why})"
        )
    return f"{a} → {b}: {why}"


def _with_note(text: str, note: str) -> str:
    return f"{text}; {note}" if note else text


def mode_counts(modes: npt.NDArray[Any]) -> dict[str, int]:
    counts = np.bincount(modes.astype(np.intp), minlength=len(MODE_LABELS))
    return {label: int(c) for label, c in zip(MODE_LABELS, counts, strict=True)}
