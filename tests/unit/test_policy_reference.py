"""docs/policies.md's reference tables are the code's own: regenerated, they are unchanged,
and every field a policy reads or returns is explained there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "gen_policy_reference", REPO / "scripts" / "gen_policy_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_reference_tables_match_the_code() -> None:
    gen = _generator()
    current = gen.DOC.read_text()
    assert gen.render(current) == current, (
        "docs/policies.md is stale: run python scripts/gen_policy_reference.py")


def test_every_field_a_policy_touches_is_explained() -> None:
    gen = _generator()
    for name, table in gen.sections().items():
        for row in table.splitlines():
            if row.startswith("| `"):
                meaning = row.rstrip("|").rsplit("|", 1)[-1].strip()
                assert meaning, f"{name}: {row.split('|')[1].strip()} has no explanation"
