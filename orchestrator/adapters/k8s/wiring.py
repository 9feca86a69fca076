"""The Kubernetes side of `hashpivot run`, assembled from one config.

live: watches, fleet and demand readers, a leader elector, and an actuator that writes only
while this replica leads. shadow (and dry-run): the same readers and a `ShadowActuator`;
no Lease either, because taking a Lease is a write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.adapters.k8s.actuator import KubeActuator, ShadowActuator
from orchestrator.adapters.k8s.api import KubeOps
from orchestrator.adapters.k8s.client import KubeClient, check_access, load_api_client
from orchestrator.adapters.k8s.demand import KubeDemandSource
from orchestrator.adapters.k8s.fleet import KubeFleetSource
from orchestrator.adapters.k8s.kueue import KueueActuator, KueueReader, custom_objects
from orchestrator.adapters.k8s.leader import LeaderElector
from orchestrator.adapters.k8s.watch import ClusterCache
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import ControllerMode, HashpivotConfig


@dataclass
class KubeAdapters:
    """Everything a controller needs from the cluster. `start()` before the first cycle."""

    kube: KubeOps
    cache: ClusterCache
    fleet: KubeFleetSource
    demand: KubeDemandSource
    actuator: KubeActuator | ShadowActuator
    #: The live actuator (also inside a ShadowActuator, where it only previews).
    kube_actuator: KubeActuator
    elector: LeaderElector | None
    #: Kueue/KubeRay reader, when the config reads them (its lists are watched).
    kueue: KueueReader | None = None

    def start(self, sync_timeout_s: float = 60.0) -> bool:
        """Start the watches (and the election when live); False if they did not sync.

        A real API server is asked once first: an unreachable server or rejected
        credentials raise `ConfigError` with the reason."""
        if isinstance(self.kube, KubeClient):
            check_access(self.kube)
        self.cache.start()
        synced = self.cache.wait_synced(sync_timeout_s)
        if self.elector is not None:
            self.elector.start()
        return synced

    def is_leader(self) -> bool:
        return self.elector is not None and self.elector.is_leader()

    def stop(self) -> None:
        """Hand the Lease over (live) and stop the watches."""
        if self.elector is not None:
            self.elector.stop(release=True)
        self.cache.stop()
        if self.kueue is not None:
            self.kueue.stop()


def build_adapters(
    config: HashpivotConfig,
    *,
    api: Any = None,
    kubeconfig: str | None = None,
    identity: str | None = None,
    kube: KubeOps | None = None,
) -> KubeAdapters:
    """Adapters for `config.controller.mode`.

    The API comes from `kube` (any `KubeOps`, e.g. a fake), else `api` (an ApiClient), else
    `kubeconfig` / the in-cluster service account (`load_api_client`).
    """
    k8s = config.kubernetes
    if kube is None:
        kube = KubeClient(
            api if api is not None else load_api_client(kubeconfig),
            field_manager=k8s.field_manager,
        )
    cache = ClusterCache(kube, k8s)
    catalog = profile_catalog(config)
    live = config.controller.mode == ControllerMode.LIVE
    elector = LeaderElector.from_config(kube, k8s, identity) if live else None
    # Kueue/KubeRay objects are read through the real client only (fakes carry no CRDs).
    objects = custom_objects(kube) if config.kueue.enabled or config.kuberay.enabled else None
    reader = (
        KueueReader(objects, k8s, config.kueue, config.kuberay, catalog)
        if objects is not None else None
    )
    # Shadow: even a stray call to the inner actuator cannot write.
    is_leader = elector.is_leader if elector is not None else (lambda: False)
    actuator = (
        KueueActuator(kube, k8s, reader=reader, nodes=cache, pods=cache, is_leader=is_leader)
        if reader is not None and config.kueue.cluster_queue
        else KubeActuator(kube, k8s, nodes=cache, pods=cache, is_leader=is_leader)
    )
    return KubeAdapters(
        kube=kube,
        cache=cache,
        fleet=KubeFleetSource(cache, cache, k8s, catalog, config.sites),
        demand=KubeDemandSource(cache, k8s, catalog, reader),
        actuator=actuator if live else ShadowActuator(actuator),
        kube_actuator=actuator,
        elector=elector,
        kueue=reader,
    )
