"""Compiled loops (numba) for the engine and for policies, and per-node helpers built on them.

A numpy expression is a full pass over the fleet plus a Python-level call; the strided
ones (an argmax down the mode axis, a gather of one mode per node) cost several passes.
Policies run every cycle, so the gathers they all need are compiled here once.
`NUMBA_DISABLE_JIT=1` runs every compiled function as plain Python for debugging.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast


def _private_dir(path: Path) -> bool:
    """Create `path` for this user only; True if it is ours and nobody else may write it.

    Numba loads its cache index with pickle: a directory another user can write would let
    them run code in the controller.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return False
    return (
        info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and os.access(path, os.W_OK)
    )


def _use_private_cache_dir() -> bool:
    """Compiled code is cached on disk so only the first process pays for compiling.

    Numba writes next to the sources by default; an installed package or a read-only
    container root cannot take that, so use a per-user directory: `$NUMBA_CACHE_DIR` if
    set, else `~/.cache/hashpivot/numba`, else one under the temp dir named for the user.
    A `$NUMBA_CACHE_DIR` this process cannot write (the image's, built by `hashpivot
    warm-cache`, on a read-only root filesystem) seeds the per-user one: numba ignores a
    cache directory it cannot write to, even for loading.
    Returns False when none is usable: compile in memory, cache nothing.
    """
    given = os.environ.get("NUMBA_CACHE_DIR")
    seed = Path(given) if given and _read_only_cache(Path(given)) else None
    if given and seed is None:
        return True
    candidates = []
    try:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".cache"
        candidates.append(base / "hashpivot" / "numba")
    except RuntimeError:  # no home directory (an arbitrary container user)
        pass
    candidates.append(Path(tempfile.gettempdir()) / f"hashpivot-numba-{os.getuid()}")
    for candidate in candidates:
        if _private_dir(candidate):
            if seed is not None:
                _copy_cache(seed, candidate)
            os.environ["NUMBA_CACHE_DIR"] = str(candidate)
            return True
    return False


def _read_only_cache(path: Path) -> bool:
    """A cache directory to copy from: one that exists, that this process cannot write,
    and that no other user could have written (numba unpickles what it finds there)."""
    try:
        info = path.stat()
    except OSError:
        return False
    return (path.is_dir() and not os.access(path, os.W_OK)
            and info.st_uid in (0, os.getuid())
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _copy_cache(seed: Path, into: Path) -> None:
    """Copy the compiled files `into` lacks (a restarted container keeps its /tmp)."""
    for source in seed.rglob("*"):
        target = into / source.relative_to(seed)
        try:
            if source.is_dir():
                target.mkdir(mode=0o700, exist_ok=True)
            elif not target.exists():
                shutil.copy2(source, target)
        except OSError:  # a partial copy only costs a compile
            continue


_CACHE_ON_DISK = _use_private_cache_dir()

import numba  # noqa: E402  (numba reads NUMBA_CACHE_DIR at import)
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from orchestrator.models.modes import Mode  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])
F64 = npt.NDArray[np.float64]

#: Modes as plain ints: compiled loops compare them with int8 columns as constants.
IDLE, MINE, AI = int(Mode.IDLE), int(Mode.MINE), int(Mode.AI)


def compiled(fn: F) -> F:
    """`numba.njit` with an on-disk cache, keeping the function's type for mypy.

    Arithmetic follows numpy, as the array expressions these loops replace do: dividing
    by zero gives inf or nan rather than raising (numba's `error_model="numpy"`), which
    also spares every division a check (the guard kernels ran about 30% faster)."""
    return cast(F, numba.njit(cache=_CACHE_ON_DISK, nogil=True, error_model="numpy")(fn))


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
        m = modes[i]
        if m < 0 or m > 2:
            raise IndexError("mode out of range (0 idle, 1 mine, 2 ai)")
        out[i] = table[m, i]


def _check_table(table: F64) -> None:
    # Compiled loops do not check bounds: a misshapen table would read other memory.
    if table.ndim != 2 or table.shape[0] != 3:
        raise ValueError(f"expected a (3 modes, n nodes) table, got shape {table.shape}")


def mode_argmax(table: F64) -> npt.NDArray[np.int8]:
    """Per node, the mode whose entry of a (3, n) table is largest; ties go to the lower
    mode (idle, then mine) and NaN never wins over a number. Same answer as
    `argmax(axis=0)` on real numbers, in one pass instead of a strided reduction."""
    _check_table(table)
    out = np.empty(table.shape[1], dtype=np.int8)
    _argmax3(table, out)
    return out


def at_mode(table: F64, modes: npt.NDArray[np.integer]) -> F64:
    """Per node, the entry of a (3, n) table in the given mode (e.g. its value now)."""
    _check_table(table)
    if modes.shape != (table.shape[1],):
        raise ValueError(f"expected one mode per node ({table.shape[1]}), got {modes.shape}")
    out = np.empty(table.shape[1], dtype=table.dtype)
    _gather(table, modes, out)
    return out
