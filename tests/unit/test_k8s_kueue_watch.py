"""Tier 0: Kueue and KubeRay objects are listed once and then watched (docs/kueue.md):
after the watch has synced, reads are served from it and a change arrives as an event,
with no further LIST; with `watch=False` every read lists."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from orchestrator.adapters.k8s.api import Obj
from orchestrator.adapters.k8s.kueue import KUEUE_API, KubeCustomObjects

PATH = f"{KUEUE_API}/workloads"


def wl(name: str, rv: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}",
                         "resourceVersion": rv}}


class _Stream:
    """One watch request: the events given, then open until stopped."""

    def __init__(self, events: list[Obj]) -> None:
        self.events = events
        self.stopped = threading.Event()

    def __iter__(self) -> Iterator[Obj]:
        yield from self.events
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


class _Api:
    """The two calls `KubeCustomObjects` makes on the client, counted."""

    def __init__(self) -> None:
        self.lists = 0
        self.streams: list[_Stream] = []

    def _list(self, path: str, params: dict[str, Any]) -> tuple[list[Obj], str]:
        assert path == PATH
        self.lists += 1
        return [wl("a", "5")], "5"

    def _watch(self, path: str, rv: str, params: dict[str, Any], timeout: float) -> _Stream:
        events = [{"type": "ADDED", "object": wl("b", "6")}] if not self.streams else []
        self.streams.append(_Stream(events))
        return self.streams[-1]


def names(items: list[Obj]) -> set[str]:
    return {o["metadata"]["name"] for o in items}


def test_after_the_watch_syncs_reads_come_from_it_and_changes_as_events() -> None:
    api = _Api()
    objects = KubeCustomObjects(api, watch=True)  # type: ignore[arg-type]
    try:
        # The first read starts the watch; it lists, or reads the watch if that was quicker.
        assert "a" in names(objects.list(PATH))
        cache = objects._cache(PATH)
        cache.wait_synced()
        while len(cache.items()) < 2:  # the watch's ADDED event lands
            time.sleep(0.01)
        lists = api.lists
        for _ in range(5):
            assert names(objects.list(PATH)) == {"a", "b"}
        assert api.lists == lists  # no LIST once watched
    finally:
        objects.stop()
    assert all(s.stopped.is_set() for s in api.streams)


def test_without_the_watch_every_read_lists() -> None:
    api = _Api()
    objects = KubeCustomObjects(api, watch=False)  # type: ignore[arg-type]
    for i in range(3):
        assert names(objects.list(PATH)) == {"a"}
        assert api.lists == i + 1
    assert api.streams == []
