"""AI demand: pending jobs (pydantic, at the edges) and the per-model summary the engine uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrator.models.base import StrictModel


class AIJob(StrictModel):
    """One AI job waiting for GPUs (a pending pod, or a job from a recorded trace)."""

    id: str = Field(min_length=1)
    gpus: int = Field(ge=1, description="GPUs requested.")
    gpu_model: str | None = Field(default=None, description="Required GPU model; None: any.")
    offered_usd_per_gpu_hour: float | None = Field(
        default=None, ge=0, description="Price the tenant pays; None: the market rental price."
    )
    expected_duration_h: float = Field(default=1.0, gt=0, description="Expected run time, hours.")
    interruptible: bool = Field(default=False, description="May be evicted (at a penalty).")
    submitted_at: datetime | None = None
    priority: int | None = Field(default=None, description="Scheduler priority (Kueue).")
    queue: str | None = Field(default=None, description="Queue it waits in ('ns/LocalQueue').")


class DemandSnapshot(StrictModel):
    """Pending AI jobs at one moment, with where the list came from."""

    pending: list[AIJob] = Field(default_factory=list)
    source: str = "none"
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DemandSummary:
    """Pending GPUs per GPU model (aligned with `FleetTable.gpu_models`) and their price.

    Running jobs are already on nodes (`FleetTable.ai_gpus_busy`); this is what waits.
    """

    pending_gpus: npt.NDArray[np.float64]
    #: GPU-weighted offered price per model; NaN where the market price applies.
    offered_usd_per_gpu_hour: npt.NDArray[np.float64]
    #: Pending GPUs that accept any model.
    pending_gpus_any_model: float = 0.0
    #: Smoothed recent demand (running + pending GPUs) per model, when the source tracks
    #: it: a queue that empties for a moment does not make AI nodes look worthless.
    expected_gpus: npt.NDArray[np.float64] | None = None
    expected_gpus_any_model: float = 0.0

    @staticmethod
    def empty(n_gpu_models: int) -> DemandSummary:
        return DemandSummary(
            pending_gpus=np.zeros(n_gpu_models),
            offered_usd_per_gpu_hour=np.full(n_gpu_models, np.nan),
        )

    @staticmethod
    def from_jobs(jobs: list[AIJob], gpu_models: tuple[str, ...]) -> DemandSummary:
        index = {m: i for i, m in enumerate(gpu_models)}
        pending = np.zeros(len(gpu_models))
        paid = np.zeros(len(gpu_models))
        priced_gpus = np.zeros(len(gpu_models))
        any_model = 0.0
        for job in jobs:
            if job.gpu_model is None:
                any_model += job.gpus
                continue
            i = index.get(job.gpu_model)
            if i is None:
                continue  # no node of that model: demand we cannot serve
            pending[i] += job.gpus
            if job.offered_usd_per_gpu_hour is not None:
                paid[i] += job.gpus * job.offered_usd_per_gpu_hour
                priced_gpus[i] += job.gpus
        with np.errstate(invalid="ignore", divide="ignore"):
            offered = np.where(priced_gpus > 0, paid / priced_gpus, np.nan)
        return DemandSummary(pending, offered, any_model)


def smooth_demand(previous: float, current: float, dt_s: float, half_life_s: float) -> float:
    """Exponentially weighted demand level: decays toward `current` with a half-life."""
    if half_life_s <= 0:
        return current
    # A clock that steps back gives dt < 0: keep the level rather than extrapolate from it.
    keep = 0.5 ** (max(dt_s, 0.0) / half_life_s)
    return float(keep * previous + (1.0 - keep) * current)
