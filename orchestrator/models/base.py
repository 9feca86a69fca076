"""Shared pydantic base: every model at the edges forbids unknown fields."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen model that rejects unknown fields, NaN and infinities."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def read_only_view(value: Any) -> Any:
    """`value` as a view that cannot be written, when it is a writable array (else as it
    is): what a policy reads through the context, so no policy can change another
    cycle's or another run's inputs; the owner's array stays writable."""
    if isinstance(value, np.ndarray) and value.flags.writeable:
        view = value.view()
        view.flags.writeable = False
        return view
    return value


def freeze_arrays(obj: Any, names: tuple[str, ...]) -> None:
    """Make the array fields `names` of a frozen dataclass read-only views (in
    `__post_init__` of a value that is never written after it is built)."""
    for name in names:
        value = getattr(obj, name)
        frozen = read_only_view(value)
        if frozen is not value:
            object.__setattr__(obj, name, frozen)
