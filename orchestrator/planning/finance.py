"""NPV, IRR and payback of a cash-flow series with equal periods (hashpivot uses months).

IRR is hand-written (numpy-financial is unmaintained and scipy is not a dependency): the
NPV is scanned over a grid of rates for a sign change, then the bracket is bisected, so
it never diverges the way Newton's method can and returns None when no rate makes NPV
zero. When several rates do (flows that change sign more than once) the lowest above -100%
is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def npv(rate: float, flows: Sequence[float] | F64) -> float:
    """Value at period 0 of `flows[t]` paid at the end of period t (t = 0 is now)."""
    cf = np.asarray(flows, dtype=np.float64)
    if rate <= -1.0:
        raise ValueError("a discount rate must be above -100%")
    t = np.arange(cf.shape[0], dtype=np.float64)
    return float(np.sum(cf / (1.0 + rate) ** t))


def periodic_rate(annual: float, periods_per_year: int) -> float:
    return float((1.0 + annual) ** (1.0 / periods_per_year) - 1.0)


def annual_rate(periodic: float, periods_per_year: int) -> float:
    return float((1.0 + periodic) ** periods_per_year - 1.0)


def irr(flows: Sequence[float] | F64, *, tol: float = 1e-14) -> float | None:
    """The per-period rate at which the NPV of `flows` is zero, or None when there is none."""
    cf = np.asarray(flows, dtype=np.float64)
    if cf.size < 2 or not np.any(cf > 0) or not np.any(cf < 0):
        return None
    t = np.arange(cf.shape[0], dtype=np.float64)

    def f(r: float) -> float:
        # Log-space growth; at rates near -100% over long horizons the terms overflow to
        # inf, which only tells the search the sign it needs.
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.sum(cf * np.exp(-t * math.log1p(r))))

    # Rates from -99% to +1000% per period, denser near zero where answers usually are.
    grid = np.concatenate(
        [
            -1.0 + np.logspace(-4, 0, 60)[:-1],
            np.linspace(0.0, 1.0, 201),
            np.logspace(0, 1, 40)[1:],
        ]
    )
    values = [f(r) for r in grid]
    for i in range(len(grid) - 1):
        a, b, fa, fb = float(grid[i]), float(grid[i + 1]), values[i], values[i + 1]
        if fa == 0.0:
            return a
        if fa * fb < 0:
            for _ in range(200):
                m = 0.5 * (a + b)
                fm = f(m)
                if fm == 0.0 or b - a < tol:
                    return m
                if fa * fm < 0:
                    b = m
                else:
                    a, fa = m, fm
            return 0.5 * (a + b)
    return None


def payback_periods(flows: Sequence[float] | F64) -> float | None:
    """Periods until the running sum of `flows` turns non-negative for good (interpolated
    within the period), or None when it never does. 0 when nothing is ever owed."""
    cf = np.asarray(flows, dtype=np.float64)
    cum = np.cumsum(cf)
    if cum.size == 0 or cum[-1] < 0:
        return None
    negative = np.nonzero(cum < 0)[0]
    if negative.size == 0:
        return 0.0
    last = int(negative[-1])  # after this period the sum stays >= 0
    before, inflow = float(cum[last]), float(cf[last + 1])
    return last + (-before / inflow if inflow > 0 else 1.0)
