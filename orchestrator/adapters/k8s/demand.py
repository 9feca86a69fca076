"""AI demand from the cluster: pending pods that request `nvidia.com/gpu`, and where the
site runs them, Kueue's pending Workloads and KubeRay's clusters not yet in pods (design §4).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from orchestrator.adapters.k8s.api import ApiError
from orchestrator.adapters.k8s.kueue import KueueReader
from orchestrator.adapters.k8s.objects import PodView, pod_view
from orchestrator.adapters.k8s.watch import PodSource
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.demand import AIJob, DemandSnapshot
from orchestrator.models.hardware import HardwareProfile

SOURCE = "kubernetes"

log = logging.getLogger("hashpivot.k8s.demand")


class KubeDemandSource:
    """`DemandSource` over watched (or listed) pods.

    A pending job's GPU model comes from the node label it requires (the profile label, or
    `nvidia.com/gpu.product` mapped through `gpu_product_profiles`); its price from the
    price annotation, else None (the engine then uses the configured market price).

    With a `KueueReader`, jobs waiting in Kueue (suspended, so without pods) and the Ray
    GPUs not yet in pods are added; a Kueue or KubeRay API that cannot be read costs its
    share of the demand for that cycle (named in the snapshot's source), never the cycle.
    """

    def __init__(
        self,
        pods: PodSource,
        config: KubernetesConfig,
        profiles: Mapping[str, HardwareProfile] | Sequence[HardwareProfile],
        kueue: KueueReader | None = None,
    ) -> None:
        self._pods = pods
        self.kueue = kueue
        self.config = config
        self.profiles: dict[str, HardwareProfile] = (
            dict(profiles) if isinstance(profiles, Mapping) else {p.name: p for p in profiles}
        )

    def _gpu_model(self, pod: PodView) -> str | None:
        name = pod.profile or (
            self.config.gpu_product_profiles.get(pod.gpu_product) if pod.gpu_product else None
        )
        profile = self.profiles.get(name) if name else None
        return profile.gpu_model if profile is not None else None

    def _job(self, pod: PodView) -> AIJob:
        return AIJob(
            id=pod.key,
            gpus=max(1, round(pod.gpus)),
            gpu_model=self._gpu_model(pod),
            offered_usd_per_gpu_hour=pod.offered_usd_per_gpu_hour,
            expected_duration_h=pod.expected_duration_h or 1.0,
            interruptible=pod.interruptible,
            submitted_at=(
                datetime.fromtimestamp(pod.created_s, UTC) if pod.created_s is not None else None
            ),
            deadline_at=(
                datetime.fromtimestamp(pod.deadline_s, UTC) if pod.deadline_s is not None
                else None
            ),
        )

    def _views(self) -> list[PodView]:
        return [pod_view(p, self.config) for p in self._pods.pods()]

    def demand(self, now_s: float) -> DemandSnapshot:
        pods = self._pods.pods()
        pending = [self._job(p) for p in (pod_view(o, self.config) for o in pods)
                   if p.is_ai and p.is_pending]
        source = SOURCE
        if self.kueue is not None:
            try:
                pending += self.kueue.pending(pods)
                source = f"{SOURCE}+kueue"
            except ApiError as exc:
                log.warning("Kueue/KubeRay demand unreadable this cycle: %s", exc)
                source = f"{SOURCE} (kueue/kuberay unreadable: {str(exc)[:200]})"
        return DemandSnapshot(
            pending=sorted(pending, key=lambda j: j.id),
            source=source,
            observed_at=datetime.fromtimestamp(now_s, UTC),
        )

    def running(self) -> list[AIJob]:
        """AI pods bound to nodes and not finished (the demand already served).

        Admitted Workloads are served through their pods, so they are counted here as those
        pods; `KueueReader.running` lists them as Workloads.
        """
        return sorted(
            (self._job(p) for p in self._views() if p.is_ai and p.node and not p.finished),
            key=lambda j: j.id,
        )
