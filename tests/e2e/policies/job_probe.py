"""A policy that reads the waiting jobs one by one: it puts the GPU nodes into AI once a
job has waited longer than `patience_h`. It writes the jobs it was shown to
`jobs_seen.jsonl` beside itself, so a test can check them against the job trace (a test
probe: real policies do no I/O)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams
from orchestrator.models.modes import Mode

SEEN = Path(__file__).with_name("jobs_seen.jsonl")


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


class JobProbeParams(PolicyParams):
    patience_h: float = Field(default=2.5, gt=0, description="Longest wait tolerated, h.")


class JobProbe(Policy):
    name: ClassVar[str] = "job-probe"
    Params = JobProbeParams
    WAITED: ClassVar[int] = 130
    reasons: ClassVar[dict[int, str]] = {WAITED: "a job has waited too long: GPUs to AI"}

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, JobProbeParams)
        jobs = ctx.demand.jobs
        waited = jobs.waited_s(ctx.now_s)
        with SEEN.open("a") as out:
            out.write(json.dumps({
                "now": ctx.now_s, "gpus": jobs.gpus.tolist(),
                "gpu_model": jobs.gpu_model.tolist(),
                "offered": _floats(jobs.offered_usd_per_gpu_hour),
                "duration_h": _floats(jobs.expected_duration_h),
                "submitted": _floats(jobs.submitted_s), "deadline": _floats(jobs.deadline_s),
                "interruptible": jobs.interruptible.tolist(), "waited": _floats(waited),
            }) + "\n")
        impatient = bool(jobs.n) and float(np.nanmax(waited)) >= p.patience_h * 3600.0
        to_ai = (ctx.fleet.gpus > 0) & impatient
        target = np.where(to_ai, Mode.AI, ctx.current).astype(np.int8)
        reason = np.where(to_ai & (ctx.current != Mode.AI), self.WAITED, 0)
        return PolicyDecision(target=target, reason=reason.astype(np.int16))
