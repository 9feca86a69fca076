"""Fixtures of the end-to-end tests: emulated miners and a local market feed server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.feedserver import FeedServer
from tests.contract.fixtures.miners.emulator import MinerLab
from tests.e2e.test_asic_site import CALM_USD_MWH, set_power
from tests.faults.k8s_site import serve_fresh_market


@pytest.fixture
def lab() -> Iterator[MinerLab]:
    lab = MinerLab()
    yield lab
    lab.close()


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    serve_fresh_market(server)
    set_power(server, CALM_USD_MWH)
    try:
        yield server
    finally:
        server.stop()
