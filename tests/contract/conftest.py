"""Fixtures of the tier-1 feed contract tests: the local replay server and HTTP settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.models.feeds_config import HttpSettings
from tests.contract.feedserver import FeedServer, SleepLog


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_settings() -> HttpSettings:
    """Loopback http allowed explicitly; short timeouts; retries with no real waiting."""
    return HttpSettings(
        timeout_s=0.5,
        retries=2,
        backoff_initial_s=0.5,
        backoff_max_s=4.0,
        require_https=True,
        allow_loopback_http=True,
    )


@pytest.fixture
def sleeps() -> SleepLog:
    return SleepLog()
