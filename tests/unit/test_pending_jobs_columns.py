"""The waiting jobs a live source lists (pending pods, Kueue Workloads) become the policy's
job columns beside the per-model totals, in the order listed, with the same jobs counted."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from orchestrator.models.demand import AIJob, DemandSummary

MODELS = ("A100_80GB", "H100_80GB_SXM5")
SUBMITTED = datetime(2025, 3, 1, 12, tzinfo=UTC)
DEADLINE = datetime(2025, 3, 1, 18, tzinfo=UTC)


def _jobs() -> list[AIJob]:
    return [
        AIJob(id="ns/a", gpus=4, gpu_model="H100_80GB_SXM5", offered_usd_per_gpu_hour=3.0,
              expected_duration_h=5.0, submitted_at=SUBMITTED, deadline_at=DEADLINE),
        AIJob(id="ns/b", gpus=2, gpu_model=None, interruptible=True),
        AIJob(id="ns/c", gpus=8, gpu_model="B200"),  # no node of that model: not listed
        AIJob(id="ns/d", gpus=1, gpu_model="A100_80GB", offered_usd_per_gpu_hour=1.5,
              expected_duration_h=0.5, submitted_at=SUBMITTED),
    ]


def test_jobs_are_listed_beside_the_totals() -> None:
    summary = DemandSummary.from_jobs(_jobs(), MODELS)
    jobs = summary.jobs
    assert jobs.n == 3
    assert jobs.gpus.tolist() == [4.0, 2.0, 1.0]
    assert jobs.gpu_model.tolist() == [1, -1, 0]
    assert jobs.offered_usd_per_gpu_hour[0] == 3.0 and math.isnan(
        jobs.offered_usd_per_gpu_hour[1])
    assert jobs.expected_duration_h.tolist() == [5.0, 1.0, 0.5]
    assert jobs.deadline_s[0] == DEADLINE.timestamp() and np.isnan(jobs.deadline_s[1:]).all()
    assert jobs.interruptible.tolist() == [False, True, False]
    now = SUBMITTED.timestamp() + 5400.0
    waited = jobs.waited_s(now)
    assert waited[0] == 5400.0 and math.isnan(waited[1]) and waited[2] == 5400.0
    # The totals count the same jobs.
    for m in range(len(MODELS)):
        assert summary.pending_gpus[m] == jobs.gpus[jobs.gpu_model == m].sum()
    assert summary.pending_gpus_any_model == jobs.gpus[jobs.gpu_model == -1].sum()


def test_job_columns_are_read_only() -> None:
    jobs = DemandSummary.from_jobs(_jobs(), MODELS).jobs
    with pytest.raises(ValueError, match="read-only"):
        jobs.gpus[0] = 0.0
    assert DemandSummary.from_jobs([], MODELS).jobs.n == 0
