"""A policy's reason text filled from one node's values: a value the decision did not give
reads '?', a format a number cannot take leaves the text as written; never an error."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.engine.explain import ExplanationTable
from orchestrator.framework.context import ScoreTable
from orchestrator.framework.policy import template_fields


def _table(text: str, values: dict[str, np.ndarray]) -> ExplanationTable:
    n = 3
    zeros3 = np.zeros((3, n))
    scores = ScoreTable(zeros3, zeros3, zeros3, zeros3, zeros3, np.zeros(n), zeros3, 24.0)
    current = np.ones(n, dtype=np.int8)
    target = np.zeros(n, dtype=np.int8)
    reason = np.full(n, 150, dtype=np.int16)
    return ExplanationTable.of(np.arange(n), current, target, reason, scores, {150: text},
                               None, values)


@pytest.mark.parametrize(("text", "want"), [
    ("{price:.1f} USD/MWh for {hours:.0f} h", ["10.0 USD/MWh for 2 h", "20.5 USD/MWh for 4 h",
                                               "-3.0 USD/MWh for 6 h"]),
    ("{price:.0f} over {strike:.0f}", ["10 over ?", "20 over ?", "-3 over ?"]),
    ("{price:s}", ["{price:s}"] * 3),
    ("{{literal}} {hours:g}", ["{literal} 2", "{literal} 4", "{literal} 6"]),
])
def test_text_per_node(text: str, want: list[str]) -> None:
    values = {"price": np.array([10.0, 20.5, -3.0]), "hours": np.array([2.0, 4.0, 6.0])}
    rows = _table(text, values).rows([0, 1, 2], ["a", "b", "c"])
    assert [r.reason for r in rows] == want
    assert all(r.reason in r.text for r in rows)


def test_value_names_of_a_text() -> None:
    assert template_fields("${price:.0f} for {hours} h, {price}") == ("price", "hours")
    for bad in ("{0}", "{price!r}", "{a.b}", "{"):
        with pytest.raises(ValueError):
            template_fields(bad)
