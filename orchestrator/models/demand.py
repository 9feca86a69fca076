"""AI demand: pending jobs (pydantic, at the edges) and the per-model summary the engine uses."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrator.models.base import StrictModel, freeze_arrays


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
    deadline_at: datetime | None = Field(
        default=None, description="Latest start the tenant accepts; None: none known.")


class DemandSnapshot(StrictModel):
    """Pending AI jobs at one moment, with where the list came from."""

    pending: list[AIJob] = Field(default_factory=list)
    source: str = "none"
    observed_at: datetime | None = None


F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PendingJobs:
    """The waiting jobs themselves, one row each; columns are read-only.

    Front of the queue first where the source keeps a queue (the simulated site).
    """

    #: GPUs the job asks for (a scaled trace's jobs may ask for fractions).
    gpus: F64
    #: The GPU model it needs, as an index into `fleet.gpu_models`; -1: any model.
    gpu_model: npt.NDArray[np.int16]
    #: What it pays, USD per GPU-hour; NaN: the market rental price.
    offered_usd_per_gpu_hour: F64
    #: Expected run time, h (for a job evicted before: the work it has left); NaN: unknown.
    expected_duration_h: F64
    #: When it was submitted, seconds since epoch; NaN: unknown (see `waited_s`).
    submitted_s: F64
    #: Latest start, seconds since epoch: after it the job gives up waiting (a backtest's
    #: `demand.max_wait_h`; live, the `kubernetes.deadline_annotation`); NaN: none known.
    deadline_s: F64
    #: May be evicted (at a penalty) once running.
    interruptible: npt.NDArray[np.bool_]

    @property
    def n(self) -> int:
        """Number of waiting jobs."""
        return int(self.gpus.shape[0])

    def waited_s(self, now_s: float) -> F64:
        """How long each job has waited at `now_s`, s (NaN: submission time unknown)."""
        return np.asarray(now_s - self.submitted_s, dtype=np.float64)

    @staticmethod
    def of(gpus: F64, gpu_model: npt.NDArray[np.int16], offered: F64, duration_h: F64,
           submitted_s: F64, deadline_s: F64, interruptible: npt.NDArray[np.bool_]) -> (
            PendingJobs):
        """Columns made read-only, so a policy cannot change what the source keeps."""
        cols = (gpus, gpu_model, offered, duration_h, submitted_s, deadline_s, interruptible)
        for c in cols:
            c.flags.writeable = False
        return PendingJobs(*cols)

    @staticmethod
    def empty() -> PendingJobs:
        z = np.zeros(0)
        return PendingJobs.of(z.copy(), np.zeros(0, dtype=np.int16), z.copy(), z.copy(),
                              z.copy(), z.copy(), np.zeros(0, dtype=bool))


#: No job waiting (or none the source lists one by one).
NO_JOBS = PendingJobs.empty()


_DEMAND_ARRAYS = ("pending_gpus", "offered_usd_per_gpu_hour", "expected_gpus")


@dataclass(frozen=True, slots=True)
class DemandSummary:
    """Pending GPUs per GPU model (aligned with `FleetTable.gpu_models`) and their price.

    Running jobs are already on nodes (`FleetTable.ai_gpus_busy`); this is what waits.
    """

    #: GPUs waiting per GPU model (`fleet.gpu_models` order).
    pending_gpus: npt.NDArray[np.float64]
    #: GPU-weighted offered price per model; NaN where the market price applies.
    offered_usd_per_gpu_hour: npt.NDArray[np.float64]
    #: Pending GPUs that accept any model.
    pending_gpus_any_model: float = 0.0
    #: Smoothed recent demand (running + pending GPUs) per model, when the source tracks
    #: it: a queue that empties for a moment does not make AI nodes look worthless.
    expected_gpus: npt.NDArray[np.float64] | None = None
    #: The same smoothed level where the demand accepts any GPU model.
    expected_gpus_any_model: float = 0.0
    #: The waiting jobs, or how to list them on first use (a backtest lists its queue
    #: only for a policy that reads it); read them as `jobs`.
    job_list: PendingJobs | Callable[[], PendingJobs] = NO_JOBS

    def __post_init__(self) -> None:
        # A policy reads these arrays through the context: it cannot write them.
        freeze_arrays(self, _DEMAND_ARRAYS)

    @property
    def jobs(self) -> PendingJobs:
        """The waiting jobs one by one (GPUs, model, price, duration, wait, deadline),
        beside the totals above: the same jobs, where the source lists them."""
        listed = self.job_list
        if isinstance(listed, PendingJobs):
            return listed
        jobs = listed()
        object.__setattr__(self, "job_list", jobs)  # listed once per decision
        return jobs

    def __reduce__(self) -> tuple[type[DemandSummary], tuple[object, ...]]:
        # Shipped (to a Ray actor) with its jobs listed, never with the source behind them.
        return (DemandSummary, (self.pending_gpus, self.offered_usd_per_gpu_hour,
                                self.pending_gpus_any_model, self.expected_gpus,
                                self.expected_gpus_any_model, self.jobs))

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
        listed: list[tuple[AIJob, int]] = []
        for job in jobs:
            if job.gpu_model is None:
                any_model += job.gpus
                listed.append((job, -1))
                continue
            i = index.get(job.gpu_model)
            if i is None:
                continue  # no node of that model: demand we cannot serve
            listed.append((job, i))
            pending[i] += job.gpus
            if job.offered_usd_per_gpu_hour is not None:
                paid[i] += job.gpus * job.offered_usd_per_gpu_hour
                priced_gpus[i] += job.gpus
        with np.errstate(invalid="ignore", divide="ignore"):
            offered = np.where(priced_gpus > 0, paid / priced_gpus, np.nan)
        return DemandSummary(pending, offered, any_model, job_list=_columns(listed))


def _seconds(at: datetime | None) -> float:
    return math.nan if at is None else at.timestamp()


def _columns(listed: list[tuple[AIJob, int]]) -> PendingJobs:
    if not listed:
        return NO_JOBS
    jobs = [j for j, _ in listed]
    return PendingJobs.of(
        np.array([j.gpus for j in jobs], dtype=np.float64),
        np.array([i for _, i in listed], dtype=np.int16),
        np.array([math.nan if j.offered_usd_per_gpu_hour is None
                  else j.offered_usd_per_gpu_hour for j in jobs], dtype=np.float64),
        np.array([j.expected_duration_h for j in jobs], dtype=np.float64),
        np.array([_seconds(j.submitted_at) for j in jobs], dtype=np.float64),
        np.array([_seconds(j.deadline_at) for j in jobs], dtype=np.float64),
        np.array([j.interruptible for j in jobs], dtype=bool),
    )


def smooth_demand(previous: float, current: float, dt_s: float, half_life_s: float) -> float:
    """Exponentially weighted demand level: decays toward `current` with a half-life."""
    if half_life_s <= 0:
        return current
    # A clock that steps back gives dt < 0: keep the level rather than extrapolate from it.
    keep = 0.5 ** (max(dt_s, 0.0) / half_life_s)
    return float(keep * previous + (1.0 - keep) * current)
