"""Fixtures for tier-2 tests: one real control plane per session, one namespace per test.

Registered in `tests/conftest.py`, so the tier-2 tests and the fault suite (`tests/faults`)
share the one session cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.tier2.cluster import BUILD_SCRIPT, KwokCluster, find_testenv_bin, testenv_dir, wait_until


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}


def tier2_required() -> bool:
    """Tier 2 must run, not skip: under CI, and under `make test`
    (HASHPIVOT_REQUIRE_TIER2=1). Then a missing binary is a failure, and so is any skip
    of a tier-2 or chart test (`tests/conftest.py` turns such skips into failures)."""
    return _flag("CI") or _flag("HASHPIVOT_REQUIRE_TIER2")


def skip_or_fail(message: str) -> None:
    """Skip loudly on a workstation; fail where tier 2 is required."""
    if tier2_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kwok_cluster() -> Iterator[KwokCluster]:
    """A running control plane shared by the session's tier-2 tests.

    Without the binaries this skips (loudly) on a workstation and fails under CI=true or
    HASHPIVOT_REQUIRE_TIER2=1 (`make test`), so neither can pass by skipping tier 2.
    """
    bin_dir = find_testenv_bin()
    if bin_dir is None:
        skip_or_fail(
            f"TIER-2 NOT RUN: control-plane binaries missing in {testenv_dir() / 'bin'}. "
            f"Build them once with `bash {BUILD_SCRIPT}` (about 20 min cold, cached after)."
        )
        return
    with KwokCluster(bin_dir) as cluster:
        yield cluster


@pytest.fixture
def k8s_namespace(kwok_cluster: KwokCluster) -> Iterator[str]:
    """A fresh namespace, ready for pods; deleted with everything in it afterwards."""
    name = f"hp-test-{uuid.uuid4().hex[:8]}"
    api = kwok_cluster.api_client()
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        # Admission rejects pods until the namespace's default ServiceAccount exists.
        wait_until(
            lambda: core.read_namespaced_service_account("default", name),
            timeout=60,
            what=f"ServiceAccount default in {name}",
        )
        yield name
    finally:
        try:
            # Force-delete pods first: a pod whose fake node is already gone never finishes
            # terminating, which would hold the namespace in Terminating.
            core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        finally:
            api.close()  # type: ignore[no-untyped-call]
