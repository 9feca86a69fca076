"""The oracle's per-class dynamic program finds the best mode path, checked by brute force."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from orchestrator.backtest.oracle import _dynamic_program, _path_switch_costs

DT_H = 1.0


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda t: st.tuples(
            arrays(np.float64, (t, 2, 3), elements=st.floats(-20, 20, allow_nan=False)),
            arrays(np.float64, (3, 2), elements=st.floats(0, 2)),
            arrays(np.float64, (3, 2), elements=st.floats(0, 2)),
            arrays(np.float64, (2,), elements=st.floats(0, 5)),
            arrays(np.int8, (2,), elements=st.integers(0, 2)),
        )
    )
)
def test_best_path_beats_every_other_path(case: tuple[np.ndarray, ...]) -> None:
    values, stop, start, wear, initial = case
    steps = values.shape[0]
    modes, total = _dynamic_program(values, stop, start, wear, initial, DT_H)

    def worth(path: np.ndarray, c: int) -> float:
        cls = slice(c, c + 1)
        switch = _path_switch_costs(path[:, None], initial[cls], values[:, cls], stop[:, cls],
                                    start[:, cls], wear[cls], DT_H)
        return float(np.sum(values[np.arange(steps), c, path] - switch[:, 0]))

    for c in range(2):
        best = max(worth(np.array(p), c) for p in itertools.product(range(3), repeat=steps))
        assert np.isclose(total[c], best, atol=1e-9)
        assert np.isclose(worth(modes[:, c], c), total[c], atol=1e-9)
