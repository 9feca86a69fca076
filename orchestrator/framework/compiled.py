"""Compiled loops (numba) for the engine and for policies, and per-node helpers built on them.

A numpy expression is a full pass over the fleet plus a Python-level call; the strided
ones (an argmax down the mode axis, a gather of one mode per node) cost several passes.
Policies run every cycle, so the gathers they all need are compiled here once.
`NUMBA_DISABLE_JIT=1` runs every compiled function as plain Python for debugging.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast


def _use_writable_cache_dir() -> None:
    """Compiled code is cached on disk so only the first process pays for compiling.

    Numba writes next to the sources by default; an installed package or a read-only
    container root cannot take that, so default to a per-user cache directory.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    fallback = Path(tempfile.gettempdir()) / "hashpivot-numba"
    for candidate in (base / "hashpivot" / "numba", fallback):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(candidate)
            return


_use_writable_cache_dir()

import numba  # noqa: E402  (numba reads NUMBA_CACHE_DIR at import)
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])
F64 = npt.NDArray[np.float64]


def compiled(fn: F) -> F:
    """`numba.njit` with an on-disk cache, keeping the function's type for mypy."""
    try:
        return cast(F, numba.njit(cache=True, nogil=True)(fn))
    except RuntimeError:  # no writable cache location at all: compile per process
        return cast(F, numba.njit(nogil=True)(fn))


@compiled
def best_of_three(idle: float, mine: float, ai: float) -> int:
    """The mode of the largest of three per-mode numbers, for compiled policy loops.
    Ties go to the lower mode (idle, then mine); NaN never wins over a number."""
    best, top = 0, idle
    if mine > top or (np.isnan(top) and not np.isnan(mine)):
        best, top = 1, mine
    if ai > top or (np.isnan(top) and not np.isnan(ai)):
        best = 2
    return best


@compiled
def _argmax3(table: F64, out: npt.NDArray[np.int8]) -> None:
    for i in range(table.shape[1]):
        out[i] = best_of_three(table[0, i], table[1, i], table[2, i])


@compiled
def _gather(table: F64, modes: npt.NDArray[Any], out: F64) -> None:
    for i in range(table.shape[1]):
        out[i] = table[modes[i], i]


def mode_argmax(table: F64) -> npt.NDArray[np.int8]:
    """Per node, the mode whose entry of a (3, n) table is largest; ties go to the lower
    mode (idle, then mine) and NaN never wins over a number. Same answer as
    `argmax(axis=0)` on real numbers, in one pass instead of a strided reduction."""
    out = np.empty(table.shape[1], dtype=np.int8)
    _argmax3(table, out)
    return out


def at_mode(table: F64, modes: npt.NDArray[np.integer]) -> F64:
    """Per node, the entry of a (3, n) table in the given mode (e.g. its value now)."""
    out = np.empty(table.shape[1], dtype=table.dtype)
    _gather(table, modes, out)
    return out
