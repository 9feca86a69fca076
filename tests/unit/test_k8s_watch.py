"""Tier 0/1: the list + watch caches (bookmarks, 410 Gone, resync, filtering, threads)."""

from __future__ import annotations

import time

import pytest

from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.k8s.watch import ClusterCache, ListingSource, ObjectCache
from orchestrator.models.config import KubernetesConfig
from tests.doubles.k8s import FakeKube

CFG = KubernetesConfig(node_selector="pool=gpu", namespace="hp")


def node_cache(kube: FakeKube, **kw: object) -> ObjectCache:
    return ObjectCache(
        lambda: kube.list_nodes("pool=gpu"),
        lambda rv, t: kube.watch_nodes(rv, "pool=gpu", t),
        name="nodes",
        **kw,  # type: ignore[arg-type]
    )


def names(cache: ObjectCache) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cache.items())


def test_list_then_watch_applies_events_without_relisting() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={"pool": "gpu"})
    kube.add_node("other", labels={"pool": "cpu"})
    cache = node_cache(kube)
    cache.run_once()
    assert names(cache) == ["a"] and cache.synced and cache.lists == 1
    kube.add_node("b", labels={"pool": "gpu"})
    kube.set_node("a", lambda n: n["metadata"]["labels"].__setitem__("x", "1"))
    cache.run_once()
    assert names(cache) == ["a", "b"] and cache.lists == 1
    assert cache.get("a")["metadata"]["labels"]["x"] == "1"  # type: ignore[index]
    # Leaving the selector is a delete.
    kube.set_node("b", lambda n: n["metadata"]["labels"].__setitem__("pool", "cpu"))
    cache.run_once()
    assert names(cache) == ["a"]
    assert cache.bookmarks >= 2
    assert cache.resource_version == str(kube._rv)


def test_bookmark_moves_the_version_so_a_quiet_watch_stays_valid() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={"pool": "gpu"})
    cache = node_cache(kube)
    cache.run_once()
    kube.add_node("noise", labels={"pool": "cpu"})  # moves the server's version only
    cache.run_once()
    assert cache.resource_version == str(kube._rv)
    kube.compact()  # history before now is gone; our version is current, so no 410
    cache.run_once()
    assert cache.gone == 0 and cache.lists == 1


def test_410_gone_relists() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={"pool": "gpu"})
    cache = node_cache(kube)
    cache.run_once()
    kube.add_node("b", labels={"pool": "gpu"})
    kube.compact()  # the event for b is lost to the watch window
    cache.run_once()  # watch answers ERROR 410
    assert cache.gone == 1 and names(cache) == ["a"]
    cache.run_once()  # relists
    assert cache.lists == 2 and names(cache) == ["a", "b"]


def test_410_raised_by_the_client_also_relists() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={"pool": "gpu"})
    calls = {"n": 0}

    def watcher(rv: str, timeout: float):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise ApiError(410, "too old resource version")
        return kube.watch_nodes(rv, "pool=gpu", timeout)

    cache = ObjectCache(lambda: kube.list_nodes("pool=gpu"), watcher)
    cache.run_once()
    cache.run_once()
    assert cache.gone == 1 and cache.lists == 2


def test_other_errors_propagate_from_run_once_and_force_a_relist() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={"pool": "gpu"})
    cache = node_cache(kube)
    cache.run_once()
    kube.fail["watch_nodes"] = [ApiError(500, "boom")]
    with pytest.raises(ApiError):
        cache.run_once()
    cache.run_once()
    assert cache.lists == 2


def test_periodic_resync_relists() -> None:
    kube = FakeKube()
    kube.add_node("a", labels={"pool": "gpu"})
    now = {"t": 0.0}
    cache = node_cache(kube, resync_s=60.0, clock=lambda: now["t"])
    cache.run_once()
    now["t"] = 30.0
    cache.run_once()
    assert cache.lists == 1
    now["t"] = 61.0
    cache.run_once()
    assert cache.lists == 2


def test_cluster_cache_keeps_gpu_and_miner_pods_only_and_drops_finished() -> None:
    kube = FakeKube()
    kube.add_node("n1", labels={"pool": "gpu"})
    kube.add_pod("t", "job", gpus=8, node="n1")
    kube.add_pod("t", "web", gpus=0, node="n1")
    kube.add_pod("hp", "miner-n1", node="n1", daemonset="hashpivot-miner")
    kube.add_pod("t", "old", gpus=1, node="n1", phase="Succeeded")
    cache = ClusterCache(kube, CFG)
    cache.node_cache.run_once()
    cache.pod_cache.run_once()
    keys = sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in cache.pods())
    assert keys == ["hp/miner-n1", "t/job"]
    kube.set_pod("t", "job", lambda p: p["status"].__setitem__("phase", "Succeeded"))
    cache.pod_cache.run_once()
    assert [p["metadata"]["name"] for p in cache.pods()] == ["miner-n1"]
    listing = ListingSource(kube, CFG)
    assert [p["metadata"]["name"] for p in listing.pods()] == ["miner-n1"]
    assert [n["metadata"]["name"] for n in listing.nodes()] == ["n1"]


def test_threads_sync_follow_changes_and_stop() -> None:
    kube = FakeKube()
    kube.watch_hold_s = 0.01
    kube.add_node("a", labels={"pool": "gpu"})
    cache = ClusterCache(kube, CFG).start()
    try:
        assert cache.wait_synced(10.0)
        kube.add_node("b", labels={"pool": "gpu"})
        deadline = time.monotonic() + 10.0
        while len(cache.nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(cache.nodes()) == 2
    finally:
        cache.stop()
    assert cache.node_cache._thread is None
