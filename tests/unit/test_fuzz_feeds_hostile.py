"""Hostile answers, structure-aware: every adapter, through `LiveMarketSource`.

Each recorded API body is taken apart and broken where a server could break it: a node
at any depth replaced by a value of another type, numbers at the edges of float range,
documents nested past the decoder's limit, bodies cut short or grown past the size
limit. Whatever comes back, a poll ends normally: the broken source's values are refused
with a named reason (never the catch-all `malformed`), and a snapshot is either sane or
refused with a `FeedError`.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.adapters.market.http import FeedHttpClient
from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.quality import Reject
from orchestrator.models.feeds_config import LiveMarketConfig
from tests.contract.feedserver import NOW, fixture_bytes
from tests.unit.test_fuzz_feeds import FIXTURES, check_snapshot, config

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
JSON_PATHS = sorted(p for p in FIXTURES if not FIXTURES[p].endswith(".csv"))

edge_numbers = st.sampled_from([
    1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0, 10**400, -(10**400), 2**63, -(2**63) - 1,
    "1e-400", "1e400", "0x10", "1_000", " 97000 ", "97000.0.0", "\u0669\u0667\u0660\u0660\u0660",
])
wrong_types = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), edge_numbers,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
    st.just("x" * 100_000),
)


def nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in `doc` (inner nodes too), the first three items of each list."""
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += nodes(v, (*path, i))
    return out


def put(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc[path[0]] = put(doc[path[0]], path[1:], value)
    return doc


def nested(depth: int, inner: bytes = b"1", kind: str = "list") -> bytes:
    if kind == "list":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


@st.composite
def hostile(draw: st.DrawFn, name: str) -> bytes:
    original = fixture_bytes(name)
    how = draw(st.sampled_from(["retype", "nest_inside", "nest_whole", "truncate", "grow"]))
    if how == "truncate":
        return original[: draw(st.integers(0, max(len(original) - 1, 0)))]
    if how == "grow":
        # Whitespace keeps it valid JSON: only the size limit may refuse it.
        return original + b" " * (config().http.max_response_bytes + 1)
    if how == "nest_whole":
        kind = draw(st.sampled_from(["list", "dict"]))
        return nested(draw(st.sampled_from([10, 500, 999, 1000, 5000, 100_000])), kind=kind)
    if name.endswith(".csv"):
        # A cell retyped, or a row of nested quoting: csv has no depth, only width.
        lines = original.decode().splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(st.sampled_from(['"' * 1001, "\x00", "a," * 5000, str(10**400)]))
        return "\n".join(lines).encode()
    doc = json.loads(original)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(nodes(doc)))
        if how == "retype":
            value: Any = draw(wrong_types)
        else:
            # A marker, swapped for the nesting once serialized: the document itself stays
            # shallow enough to copy and walk here.
            value = f"@@nest{draw(st.sampled_from([5, 200, 900]))}@@"
        doc = put(copy.deepcopy(doc), path, value)
    body = json.dumps(doc).encode()
    for depth in (5, 200, 900):
        body = body.replace(f'"@@nest{depth}@@"'.encode(), nested(depth))
    return body


def source_with(answers: Mapping[str, bytes | int], reasons: list[tuple[str, Reject]],
                cfg: LiveMarketConfig | None = None) -> LiveMarketSource:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/mempool/api/v1/blocks/"):
            path = "/mempool/api/v1/blocks"
        if path in answers:
            answer = answers[path]
            if isinstance(answer, int):
                return httpx.Response(answer, content=b"{}")
            return httpx.Response(200, content=answer)
        if path not in FIXTURES:
            return httpx.Response(404, content=b"{}")
        return httpx.Response(200, content=fixture_bytes(FIXTURES[path]))

    def hook(feed: str, reason: Reject, detail: str) -> None:
        reasons.append((feed, reason))
        assert reason is not Reject.MALFORMED, (feed, detail)

    return LiveMarketSource.from_config(cfg or config(), transport=httpx.MockTransport(handler),
                                        sleep=lambda s: None, on_reject=hook)


def reaching(path: str, body: bytes) -> dict[str, bytes | int]:
    """Answers that serve `body` at `path` and make sure it is read: a fallback is read
    only when the sources before it fail."""
    answers: dict[str, bytes | int] = {path: body}
    if path in ("/bci/stats", "/esplora/api/blocks"):
        answers["/mempool/api/v1/blocks"] = 404
        if path == "/esplora/api/blocks":
            answers["/bci/stats"] = 404
    if path == "/mempool/api/v1/mining/reward-stats/10":  # read when blocks lack fees
        answers["/mempool/api/v1/blocks"] = fixture_bytes("mempool_v1_blocks_no_extras.json")
    return answers


@FUZZ
@given(st.data())
def test_hostile_answers_never_escape_a_poll(data: st.DataObject) -> None:
    broken = data.draw(st.lists(st.sampled_from(sorted(FIXTURES)), min_size=1, max_size=3,
                                unique=True))
    answers = {p: data.draw(hostile(FIXTURES[p])) for p in broken}
    reasons: list[tuple[str, Reject]] = []
    cfg = config()
    source = source_with(answers, reasons, cfg)
    try:
        check_snapshot(source, cfg)
        check_snapshot(source, cfg)  # a second poll: the relative rules run too
    finally:
        source.close()


@pytest.mark.parametrize("path", JSON_PATHS)
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [1000, 5000])
def test_json_nested_past_the_decoder_limit_is_refused(path: str, kind: str, depth: int) -> None:
    """1,000 levels (the 2 kB body real servers were seen to send) sit at the recursion
    limit: decoded or not, the reader refuses it by name. 5,000 levels always exceed it."""
    body = nested(depth, kind=kind)
    assert len(body) < 40_000  # small: the size limit cannot be what refuses it
    reasons: list[tuple[str, Reject]] = []
    source = source_with(reaching(path, body), reasons)
    try:
        source.refresh(NOW)
    finally:
        source.close()
    found = {r for _, r in reasons} - {Reject.HTTP_STATUS}
    assert found & {Reject.BAD_JSON, Reject.SCHEMA}
    if depth == 5000:
        assert Reject.BAD_JSON in found


@pytest.mark.parametrize("path", JSON_PATHS)
def test_body_past_the_size_limit_is_too_large(path: str) -> None:
    cfg = config()
    body = fixture_bytes(FIXTURES[path]) + b" " * cfg.http.max_response_bytes
    reasons: list[tuple[str, Reject]] = []
    source = source_with(reaching(path, body), reasons, cfg)
    try:
        source.refresh(NOW)
    finally:
        source.close()
    assert Reject.TOO_LARGE in [r for _, r in reasons]


@pytest.mark.parametrize("value", [10**400, 1e308, "1e400", -(10**400)])
def test_numbers_past_float_range_are_refused_not_rounded(value: Any) -> None:
    doc = json.loads(fixture_bytes("coinbase_spot.json"))
    doc["data"]["amount"] = value
    reasons: list[tuple[str, Reject]] = []
    source = source_with({"/coinbase/v2/prices/BTC-USD/spot": json.dumps(doc).encode()},
                         reasons)
    try:
        source.refresh(NOW)
        good = source.quality.last_good("btc_usd")
    finally:
        source.close()
    coinbase = [r for f, r in reasons if f == "btc_usd"]
    # Past float range: not finite; 1e308 is a number the other quotes outvote.
    assert coinbase and set(coinbase) <= {Reject.NOT_FINITE, Reject.SOURCES_DISAGREE}
    # The other exchanges still price BTC, inside the plausible range.
    assert good is not None and math.isfinite(good.value) and good.value < 1e7


def test_a_parser_bug_is_a_refusal_not_a_crash() -> None:
    """The last line of defence: an exception no reader anticipated (here a reader that
    raises TypeError) is counted as `malformed` for its feed, and the poll goes on."""
    reasons: list[tuple[str, str]] = []
    cfg = config()
    source = LiveMarketSource.from_config(
        cfg, transport=httpx.MockTransport(
            lambda r: httpx.Response(200, content=fixture_bytes(
                FIXTURES["/mempool/api/v1/blocks" if r.url.path.startswith(
                    "/mempool/api/v1/blocks/") else r.url.path]))),
        sleep=lambda s: None, on_reject=lambda f, r, d: reasons.append((f, r.value)))

    def broken(now_s: float) -> Any:
        raise TypeError("'<' not supported between instances of 'str' and 'int'")

    source.prices[0].quote = broken  # type: ignore[method-assign]
    try:
        report = source.refresh(NOW)
    finally:
        source.close()
    assert ("btc_usd", "malformed") in reasons
    assert "btc_usd" in report.accepted  # the three other exchanges still agree


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=12),
                 st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-5", "1e-400",
                                  "Wed, 21 Oct 2015 07:28:00 GMT", " 3 "])))
def test_any_retry_after_header_gives_a_wait_sleep_accepts(retry_after: str) -> None:
    """A server's Retry-After of 'nan' once reached time.sleep, which raises on it."""
    wait = CLIENT.backoff_s(0, retry_after)
    assert math.isfinite(wait) and 0.0 <= wait <= CLIENT.settings.backoff_max_s


#: One client for every example (building one, TLS context included, costs ~0.1 s).
CLIENT = FeedHttpClient(config().http)
