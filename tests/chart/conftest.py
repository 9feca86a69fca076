"""Fixtures of the chart tests: the helm binary, found or loudly missing."""

from __future__ import annotations

import pytest

from .helm import Helm, find_helm, missing_helm_message, require_tools


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The real helm binary. Missing: a loud skip on a workstation, a failure in CI."""
    path = find_helm()
    if path is None:
        if require_tools():
            pytest.fail(missing_helm_message(), pytrace=False)
        pytest.skip(missing_helm_message())
    return Helm(path)
