"""Config of hashpivot beside Kueue and KubeRay: where AI demand waits, and whose quota
hashpivot keeps equal to the GPUs it has in AI (docs/kueue.md)."""

from __future__ import annotations

from pydantic import Field, field_validator

from orchestrator.models.base import StrictModel


def _prices(v: dict[str, float], what: str) -> dict[str, float]:
    for key, price in v.items():
        if not key.strip():
            raise ValueError(f"{what}: empty name")
        if price < 0:
            raise ValueError(f"{what}[{key!r}]: price must be >= 0, got {price}")
    return v


class KueueConfig(StrictModel):
    """Kueue's pending Workloads as AI demand, and the ClusterQueue quota hashpivot keeps."""

    enabled: bool = Field(
        default=False, description="Read Kueue Workloads as AI demand (needs Kueue's CRDs)."
    )
    cluster_queue: str | None = Field(
        default=None,
        description=(
            "ClusterQueue whose GPU quota (per ResourceFlavor) hashpivot keeps equal to the "
            "GPUs of its nodes in AI and ready; None: read demand only, never write quota."
        ),
    )
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Resource name of a GPU.")
    queue_prices: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Offered USD per GPU-hour by LocalQueue: 'namespace/queue' or 'queue' (any "
            "namespace). Used when a Workload carries no price annotation."
        ),
    )
    priority_prices: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Offered USD per GPU-hour by priority class name (WorkloadPriorityClass or "
            "PriorityClass), after the annotation and queue_prices."
        ),
    )
    deactivate_interruptible: bool = Field(
        default=True,
        description=(
            "Leaving AI: deactivate (spec.active=false) admitted Workloads marked interruptible "
            "on the nodes leaving, so Kueue requeues them; others are waited for."
        ),
    )

    @field_validator("queue_prices")
    @classmethod
    def _queue_prices(cls, v: dict[str, float]) -> dict[str, float]:
        return _prices(v, "queue_prices")

    @field_validator("priority_prices")
    @classmethod
    def _priority_prices(cls, v: dict[str, float]) -> dict[str, float]:
        return _prices(v, "priority_prices")


class KubeRayConfig(StrictModel):
    """KubeRay's RayClusters and RayJobs as AI demand."""

    enabled: bool = Field(
        default=False,
        description=(
            "Read RayClusters and RayJobs as AI demand (head and worker GPUs not yet in "
            "pods; pods already created count as pods). Needs KubeRay's CRDs."
        ),
    )
