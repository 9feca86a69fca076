"""Shared pydantic base: every model at the edges forbids unknown fields."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen model that rejects unknown fields, NaN and infinities."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def freeze_arrays(obj: Any, names: tuple[str, ...]) -> None:
    """Make the array fields `names` of a frozen dataclass read-only, as views (the
    arrays a caller handed in stay theirs to write): what a policy reads through the
    context cannot be written, so no policy can change another cycle's or run's inputs.
    A field already read-only is kept as it is (nothing to do on the hot path)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, np.ndarray) and value.flags.writeable:
            view = value.view()
            view.flags.writeable = False
            object.__setattr__(obj, name, view)
