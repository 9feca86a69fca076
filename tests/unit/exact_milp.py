"""The exact optimum of a small mixed-integer model with HiGHS (`highspy`), for the tests
that check the hindsight oracle's bound against it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highspy
import numpy as np


def maximize(obj: Sequence[float], lower: Sequence[float], upper: Sequence[float],
             integer: Sequence[bool],
             rows: Sequence[tuple[Mapping[int, float], float, float]]) -> float:
    """max obj·x over lower ≤ x ≤ upper, each row's lo ≤ Σ coef·x ≤ hi, the `integer`
    columns whole; solved to optimality (no MIP gap)."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    n = len(obj)
    cols = np.arange(n, dtype=np.int32)
    h.addVars(n, np.array(lower), np.array(upper))
    h.changeColsCost(n, cols, np.array(obj))
    h.changeColsIntegrality(n, cols, np.array([highspy.HighsVarType.kInteger if k else
                                               highspy.HighsVarType.kContinuous
                                               for k in integer]))
    for coefs, lo, hi in rows:
        idx = np.array(list(coefs), dtype=np.int32)
        h.addRow(lo, hi, len(idx), idx, np.array(list(coefs.values())))
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)
