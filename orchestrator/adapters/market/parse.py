"""Strict readers for feed payloads: a changed schema is an error, never a silent zero."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.adapters.market.quality import FeedRejectError, Reject

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 2, 60, 60
_BRIEF.maxlist = _BRIEF.maxdict = 4


def brief(value: Any) -> str:
    """A bounded repr for error messages: a hostile body may put megabytes of text or
    deeply nested lists where a number belongs, and the message goes to logs and the
    journal."""
    return _BRIEF.repr(value)


def dig(doc: Any, path: str, *, source: str) -> Any:
    """Follow a dotted path ('data.-1.price'); integers index lists. '' is the document."""
    node = doc
    for part in [p for p in path.split(".") if p] if path else []:
        if isinstance(node, Mapping):
            if part not in node:
                raise FeedRejectError(
                    Reject.SCHEMA, f"missing field {brief(part)} in {brief(path)}", source=source
                )
            node = node[part]
        elif isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise FeedRejectError(
                    Reject.SCHEMA,
                    f"no item {brief(part)} in a list of {len(node)} ({brief(path)})",
                    source=source,
                ) from None
        else:
            raise FeedRejectError(
                Reject.SCHEMA,
                f"{brief(path)}: {type(node).__name__} has no field {brief(part)}",
                source=source,
            )
    return node


def field(doc: Any, name: str, *, source: str) -> Any:
    if not isinstance(doc, Mapping):
        raise FeedRejectError(
            Reject.SCHEMA, f"expected an object, got {type(doc).__name__}", source=source
        )
    if name not in doc:
        raise FeedRejectError(Reject.SCHEMA, f"missing field {brief(name)}", source=source)
    return doc[name]


def number(value: Any, *, what: str, source: str) -> float:
    """A JSON number or numeric string (exchanges quote prices as strings)."""
    if isinstance(value, bool) or value is None:
        raise FeedRejectError(
            Reject.SCHEMA, f"{what}: expected a number, got {brief(value)}", source=source
        )
    if isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:  # a JSON integer past float range
            raise FeedRejectError(Reject.NOT_FINITE, f"{what}: too large", source=source) from None
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise FeedRejectError(
                Reject.SCHEMA, f"{what}: expected a number, got {brief(value)}", source=source
            ) from None
    else:
        raise FeedRejectError(
            Reject.SCHEMA, f"{what}: expected a number, got {type(value).__name__}", source=source
        )
    if not math.isfinite(out):
        raise FeedRejectError(Reject.NOT_FINITE, f"{what}: {brief(value)}", source=source)
    return out


def integer(value: Any, *, what: str, source: str) -> int:
    out = number(value, what=what, source=source)
    if out != int(out):
        raise FeedRejectError(
            Reject.SCHEMA, f"{what}: expected an integer, got {brief(value)}", source=source
        )
    return int(out)


def zone(name: str, *, source: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FeedRejectError(Reject.SCHEMA, f"unknown time zone {name!r}", source=source) from None


def timestamp(value: Any, fmt: str, *, tz: str = "UTC", source: str) -> float:
    """Seconds since the epoch from 'unix_s', 'unix_ms', 'iso' or a strptime format."""
    if fmt == "unix_s":
        return number(value, what="time", source=source)
    if fmt == "unix_ms":
        return number(value, what="time", source=source) / 1000.0
    if not isinstance(value, str):
        raise FeedRejectError(
            Reject.BAD_TIMESTAMP, f"time {brief(value)} is not text", source=source
        )
    text = value.strip()
    extra = timedelta(0)
    try:
        if fmt == "iso":
            parsed = datetime.fromisoformat(text)
        else:
            if "24:00" in text:
                # Hour-ending labels run 01:00..24:00; 24:00 is midnight of the next day.
                text, extra = text.replace("24:00", "00:00"), timedelta(days=1)
            parsed = datetime.strptime(text, fmt)
    except ValueError:
        raise FeedRejectError(
            Reject.BAD_TIMESTAMP, f"time {brief(value)} does not match {fmt!r}", source=source
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz, source=source))
    try:
        return (parsed + extra).astimezone(UTC).timestamp()
    except OverflowError:  # 9999-12-31 24:00, or year 1 shifted west of UTC
        raise FeedRejectError(
            Reject.BAD_TIMESTAMP, f"time {brief(value)} is out of range", source=source
        ) from None
