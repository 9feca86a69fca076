"""Tier-2 fixtures (`kwok_cluster`, `k8s_namespace`) live in `fixtures.py` and are registered
in `tests/conftest.py`: one control plane per session, shared with the fault suite. Here:
the recorded market feeds the tier-2 controllers read (a test module may serve its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.feedserver import FeedServer, serve_market


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    serve_market(server)
    try:
        yield server
    finally:
        server.stop()
