"""The waiting jobs a live source lists (pending pods, Kueue Workloads) become the policy's
job columns beside the per-model totals, in the order listed, with the same jobs counted."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from orchestrator.models.demand import AIJob, DemandSummary, PendingJobs

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


def test_lazy_jobs_and_observation_times_ship_resolved() -> None:
    """A backtest lists jobs and works out observation times only when asked; shipped to
    another process (a Ray actor), both travel as values, never as the source behind them."""
    import pickle

    from orchestrator.models.market import MarketPrices, ObservedTimes

    listed = DemandSummary.from_jobs(_jobs(), MODELS).jobs
    calls: list[int] = []

    def list_jobs() -> PendingJobs:
        calls.append(1)
        return listed

    lazy = DemandSummary(np.zeros(2), np.full(2, np.nan), job_list=list_jobs)
    assert not calls
    copy = pickle.loads(pickle.dumps(lazy))  # a local function cannot be pickled itself
    assert calls == [1] and copy.jobs.gpus.tolist() == listed.gpus.tolist()
    assert lazy.jobs is listed and calls == [1]  # listed once

    seen = ObservedTimes(1.0, 2.0, 3.0, 4.0, np.zeros(1), np.zeros(0), np.array([5.0]))
    prices = MarketPrices(1.0, 1.0, 0.0, 3.125, np.zeros(1), np.zeros(0), np.ones(1), 1.0,
                          lambda: seen)
    again = pickle.loads(pickle.dumps(prices))
    assert again.observed is not None and again.observed.power_usd_mwh.tolist() == [5.0]
    assert prices.observed is seen
