"""Live deadlines: a pending pod's or Kueue Workload's `hashpivot.io/start-by` annotation
(RFC 3339) becomes the job's deadline, and reaches a policy as `ctx.demand.jobs.deadline_s`
beside its duration and submission time; an unreadable one is no deadline, not an error."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from orchestrator.models.demand import DemandSummary
from tests.doubles.k8s import FakeKube
from tests.unit.test_k8s_fleet_demand import CFG, H100, sources
from tests.unit.test_k8s_kueue import K8S, Objects, demand_of, setup_queue, wl_path, workload

START_BY = "2026-12-07T18:30:00Z"
START_BY_S = datetime(2026, 12, 7, 18, 30, tzinfo=UTC).timestamp()


def test_pod_deadline_reaches_the_policy_columns() -> None:
    kube = FakeKube()
    kube.add_pod("t", "urgent", gpus=8, node_selector={"nvidia.com/gpu.product": H100},
                 annotations={CFG.deadline_annotation: START_BY, CFG.duration_annotation: "3"})
    kube.add_pod("t", "garbled", gpus=8, node_selector={"nvidia.com/gpu.product": H100},
                 annotations={CFG.deadline_annotation: "tomorrow-ish"})
    kube.add_pod("t", "patient", gpus=8, node_selector={"nvidia.com/gpu.product": H100})
    _, demand = sources(kube)
    snap = demand.demand(1_800_000_000.0)
    jobs = {j.id: j for j in snap.pending}
    assert jobs["t/urgent"].deadline_at == datetime.fromtimestamp(START_BY_S, UTC)
    assert jobs["t/garbled"].deadline_at is None and jobs["t/patient"].deadline_at is None
    summary = DemandSummary.from_jobs(snap.pending, ("H100_80GB_SXM5",))
    columns = summary.jobs
    order = [j.id for j in snap.pending]
    k = order.index("t/urgent")
    assert columns.deadline_s[k] == START_BY_S and columns.expected_duration_h[k] == 3.0
    assert sum(math.isnan(d) for d in columns.deadline_s.tolist()) == 2


def test_workload_deadline() -> None:
    objects = Objects()
    setup_queue(objects, {"h100": 0})
    wl = workload("train", annotations={K8S.deadline_annotation: START_BY})
    objects.put(wl_path(wl), wl)
    plain = workload("later")
    objects.put(wl_path(plain), plain)
    jobs = demand_of(objects)["jobs"]
    assert jobs["workload:team-a/job-train-1a2b3"].deadline_at == datetime.fromtimestamp(
        START_BY_S, UTC)
    assert [j.deadline_at for i, j in jobs.items() if "later" in i] == [None]
