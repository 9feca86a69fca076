"""Generate the reference tables of docs/policies.md from the code they describe.

The tables between `<!-- generated: NAME -->` and `<!-- end: NAME -->` come from the
code: the `DecisionContext`, `ScoreTable`, `PolicyDecision`, `MarketHistory`,
`ObservedTimes`, `DemandSummary` and `PendingJobs` fields with their `#:` comments, the
guards' settings with their descriptions and defaults, and the reason codes with their
text. The prose around them is written by hand.

Usage: python scripts/gen_policy_reference.py [--check]
  --check  write nothing; exit 1 if docs/policies.md is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from orchestrator.framework import context  # noqa: E402
from orchestrator.framework.reasons import GUARD_REASONS, REASON_TEXT, Reason  # noqa: E402
from orchestrator.models.config import GuardConfig  # noqa: E402
from orchestrator.models.demand import DemandSummary, PendingJobs  # noqa: E402
from orchestrator.models.market import ObservedTimes  # noqa: E402

DOC = REPO / "docs" / "policies.md"


def _field_comments(cls: type) -> dict[str, str]:
    """`#:` comment lines above each field of a dataclass, joined."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+):\s*[^=]+", stripped)
        if match and not stripped.startswith(("def ", "@", "return")) and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


def _type_name(tp: object) -> str:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
    return str(text).replace("npt.NDArray", "array").replace("|", "\\|")


def dataclass_table(cls: type) -> str:
    comments = _field_comments(cls)
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        rows.append(f"| `{f.name}` | `{_type_name(f.type)}` | {comments.get(f.name, '')} |")
    for name, member in vars(cls).items():
        if name.startswith("_") or isinstance(member, staticmethod):
            continue
        if isinstance(member, property):
            kind, fn = "property", member.fget
        elif inspect.isfunction(member):
            kind, fn = "method", member
        else:
            continue
        summary = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split())
        summary = summary.replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {summary} |")
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    return f"{doc}\n\n" + "\n".join(rows)


def guards_table() -> str:
    rows = ["| setting (`guards.`) | default | meaning |", "|---|---|---|"]
    for name, info in GuardConfig.model_fields.items():
        rows.append(f"| `{name}` | `{info.default!r}` | {info.description or ''} |")
    return "\n".join(rows)


def reasons_table() -> str:
    rows = ["| code | name | text | set by |", "|---|---|---|---|"]
    for reason in Reason:
        who = "guard" if reason in GUARD_REASONS else "policy"
        rows.append(f"| {int(reason)} | `{reason.name}` | {REASON_TEXT.get(reason, '')} | "
                    f"{who} |")
    return "\n".join(rows)


def sections() -> dict[str, str]:
    return {
        "context": dataclass_table(context.DecisionContext),
        "scores": dataclass_table(context.ScoreTable),
        "history": dataclass_table(context.MarketHistory),
        "observed": dataclass_table(ObservedTimes),
        "demand": dataclass_table(DemandSummary),
        "jobs": dataclass_table(PendingJobs),
        "decision": dataclass_table(context.PolicyDecision),
        "guards": guards_table(),
        "reasons": reasons_table(),
    }


def render(text: str) -> str:
    for name, table in sections().items():
        pattern = re.compile(
            rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no section markers for {name!r}")
        text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = DOC.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{DOC.relative_to(REPO)} is stale: run python scripts/gen_policy_reference.py")
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
