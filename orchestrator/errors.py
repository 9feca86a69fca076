"""Errors a user can cause and fix. The CLI prints them in one line, never a traceback."""

from __future__ import annotations


class HashpivotError(Exception):
    """Base class for errors reported to the user without a traceback."""


class ConfigError(HashpivotError):
    """A configuration value is wrong. Names the field and where it came from."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        where = ""
        if source and field:
            where = f"{source}: {field}: "
        elif source:
            where = f"{source}: "
        elif field:
            where = f"{field}: "
        super().__init__(f"{where}{message}")


class DataError(HashpivotError):
    """A recorded or live data file/payload is unusable. Names file, line and column."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ):
        self.source = source
        self.line = line
        self.column = column
        parts = [p for p in (source, f"line {line}" if line else None) if p]
        if column:
            parts.append(f"column {column!r}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class PolicyError(HashpivotError):
    """A policy could not be found, loaded, or returned an unusable decision."""


class FeedError(HashpivotError):
    """A market feed failed or returned a value the quality rules reject."""


class TransitionError(HashpivotError):
    """A node was asked to move along an edge the lifecycle table does not allow."""


def raised_at(exc: BaseException) -> str:
    """`exc` and the innermost line of the user's code it came from (frames inside
    installed libraries such as numpy are skipped), e.g. for a policy that raises."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    modules = [frame.f_globals.get("__name__")
               for frame, _ in traceback.walk_tb(exc.__traceback__)]
    # Not the stubs `hashpivot policies check` puts in the policy's way: the line that
    # called one is the policy's.
    own = [f for f, module in zip(frames, modules, strict=True)
           if "site-packages" not in f.filename and "dist-packages" not in f.filename
           and module != "orchestrator.testing"]
    where = (own or frames)[-1:]
    if not where:
        return repr(exc)
    return f"{exc!r} at {where[0].filename}:{where[0].lineno}"
