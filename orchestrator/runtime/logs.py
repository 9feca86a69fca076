"""Logging for operators: one `hashpivot.*` logger tree, text or JSON lines on stderr.

`configure_logging` is called once by the CLI (and again inside the Ray controller actor,
a separate process). Text is for people at a terminal; JSON is one object per line for a
log pipeline (`--log-format json`, the chart's `logFormat`). Structured fields passed with
`extra={"cycle": {...}}` become keys of the JSON object.

The JSON formatter is hand-written (a dozen lines on top of `logging.Formatter`) rather
than a dependency: the fields are fixed and nothing else needs it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from orchestrator.runtime.cycle import CycleOutcome

ROOT = "hashpivot"
FORMATS = ("text", "json")
#: Attributes every LogRecord has; anything else was passed with `extra=` and is data.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
#: Third-party loggers that are chatty at INFO and say nothing an operator acts on.
_QUIET = ("urllib3", "kubernetes", "httpx", "httpcore", "numba", "asyncio")
_current = {"format": "text"}


def current_format() -> str:
    """The format `configure_logging` last set (the Ray controller actor logs the same)."""
    return _current["format"]


class TextFormatter(logging.Formatter):
    """`2025-01-01T00:00:00Z INFO hashpivot.controller: message` (UTC, whatever the host)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{when} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure_logging(fmt: str = "text", level: str | int = "INFO",
                      stream: TextIO | None = None) -> None:
    """Send the `hashpivot` tree to `stream` (stderr) in `fmt`; idempotent (a second call
    replaces the handler rather than adding one)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("hashpivot")
    root = logging.getLogger(ROOT)
    for old in [h for h in root.handlers if h.get_name() == "hashpivot"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _current["format"] = fmt
    # The tree has its own handler: the root logger (Ray's, pytest's) does not print twice.
    root.propagate = False
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def describe_cycle(outcome: CycleOutcome, sites: Sequence[str]) -> tuple[
        str, dict[str, Any], list[str]]:
    """The per-cycle INFO line, the same facts as fields (JSON logs), and the warnings an
    operator should act on (guards that mean trouble, a site over its cap, failed writes).

    Everything comes from the cycle's plan and actuation result, so the line says what
    this cycle decided in every mode (live, shadow, dry-run)."""
    import numpy as np

    from orchestrator.framework.reasons import REASON_TEXT, Reason
    from orchestrator.models.modes import MODE_LABELS
    from orchestrator.runtime.metrics import WARNING_HOLDS, error_kind

    record, plan, result = outcome.record, outcome.plan, outcome.result
    fields: dict[str, Any] = {"decision_id": record.decision_id, "mode": record.mode,
                              "policy": record.policy}
    warnings: list[str] = []
    if plan is None:
        held = str(record.plan.get("held") or "no plan")
        fields |= {"held": held, "changes": 0}
        message = f"cycle {record.decision_id}: every node held ({held})"
    else:
        summary = plan.summary()
        # Counted as pairs in one pass: a cycle may switch tens of thousands of nodes.
        pairs, counts = np.unique(plan.current[plan.changed].astype(np.int64) * 3
                                  + plan.target[plan.changed], return_counts=True)
        moves = {f"{MODE_LABELS[int(p) // 3]}→{MODE_LABELS[int(p) % 3]}": int(c)
                 for p, c in zip(pairs, counts, strict=True)}
        modes = summary["modes"]
        assert isinstance(modes, dict)
        held_by = plan.held_by_guard()
        usd = sum(plan.expected_usd_per_hour().values())
        power: list[dict[str, Any]] = []
        for k, (used, cap) in enumerate(zip(plan.site_power_w, plan.site_cap_w, strict=True)):
            name = sites[k] if k < len(sites) else str(k)
            # An unlimited cap is null: JSON has no infinity.
            power.append({"site": name, "power_w": float(used),
                          "cap_w": float(cap) if np.isfinite(cap) else None,
                          "over_cap": bool(plan.site_over_cap[k])})
            if plan.site_over_cap[k]:
                warnings.append(f"site {name} over its power cap: {_mw(float(used))} of "
                                f"{_mw(float(cap))}")
        for reason, count in held_by.items():
            if reason in WARNING_HOLDS:
                warnings.append(f"{count} node(s) held: {REASON_TEXT[Reason[reason]]}")
        if plan.stale and Reason.GUARD_STALE_DATA.name not in held_by:
            # Said on every stale cycle, also one where no node asked to change.
            warnings.append(f"{REASON_TEXT[Reason.GUARD_STALE_DATA]} (only the power cap "
                            "still sheds load)")
        fields |= {"changes": int(plan.changed.size), "moves": moves, "modes": modes,
                   "held": {r.lower(): n for r, n in held_by.items()},
                   "expected_usd_per_hour": round(usd, 4), "sites": power,
                   "stale": bool(plan.stale)}
        parts = [f"{int(plan.changed.size)} change(s)"
                 + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(moves.items())) + ")"
                    if moves else "")]
        parts.append("modes " + ", ".join(f"{m} {modes.get(m, 0)}" for m in MODE_LABELS))
        if held_by:
            parts.append("held " + ", ".join(f"{r.lower().removeprefix('guard_')} {n}"
                                             for r, n in sorted(held_by.items())))
        parts.append(f"expected {usd:,.2f} USD/h")
        parts.append("power " + ", ".join(
            f"{p['site']} {_mw(p['power_w'])}/{_mw(p['cap_w'])}" for p in power))
        message = f"cycle {record.decision_id}: " + "; ".join(parts)
        if plan.held is not None:  # the policy failed: every node was held
            fields["held"] = plan.held
            message += f"; every node held ({plan.held})"
    fields |= {"writes": result.writes, "errors": len(result.errors)}
    if result.errors:
        kinds: dict[str, int] = {}
        for text in result.errors.values():
            kinds[error_kind(text)] = kinds.get(error_kind(text), 0) + 1
        first = "; ".join(f"{node}: {text}" for node, text in list(result.errors.items())[:3])
        warnings.append(f"actuation failed on {len(result.errors)} node(s) ("
                        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                        + f"), e.g. {first}")
    return message, fields, warnings


def _mw(watts: float | None) -> str:
    """Site power for people: kW below a megawatt, MW above; caps may be unlimited."""
    if watts is None or watts == float("inf"):
        return "no cap"
    return f"{watts / 1e6:,.2f} MW" if abs(watts) >= 1e6 else f"{watts / 1e3:,.1f} kW"
