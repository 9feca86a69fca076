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


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def kwok_cluster() -> Iterator[KwokCluster]:
    """A running control plane shared by the session's tier-2 tests.

    Without the binaries this skips (loudly) on a workstation and fails under CI=true, so a
    CI that forgot to build them can never pass by skipping tier 2.
    """
    bin_dir = find_testenv_bin()
    if bin_dir is None:
        message = (
            f"TIER-2 NOT RUN: control-plane binaries missing in {testenv_dir() / 'bin'}. "
            f"Build them once with `bash {BUILD_SCRIPT}` (about 20 min cold, cached after)."
        )
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
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
