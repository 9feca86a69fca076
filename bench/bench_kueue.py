"""Kueue and KubeRay demand at scale: reading N Workloads and RayClusters into AI jobs.

What one pass of `KueueReader.pending` costs in Python once the objects are listed (the
list itself is the apiserver's work): parse every Workload (v1beta2 shape, as Kueue writes
it for a batch Job: one pod set, GPU limits, queue, priority class), price it from the
per-queue and per-priority maps, and the RayClusters (head + one GPU worker group) against
the GPUs of their existing pods. Also the owners-of-admitted-Workloads pass the actuator
makes before every drain. Fastest of three runs.

    python -m bench.bench_kueue [--workloads 10000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.summary import record
from orchestrator.adapters.k8s.kueue import (
    ModelResolver,
    Pricing,
    admitted_owners,
    gpus_by_owner,
    ray_jobs,
    ray_view,
    workload_jobs,
    workload_view,
)
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig, KubernetesConfig
from orchestrator.models.kueue_config import KueueConfig


def container(gpus: int) -> dict[str, Any]:
    return {"name": "main", "image": "trainer:1",
            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}


def workload(i: int) -> dict[str, Any]:
    admitted = i % 3 == 0
    obj: dict[str, Any] = {
        "metadata": {"name": f"job-{i}", "namespace": f"team-{i % 20}", "uid": f"wl-{i}",
                     "creationTimestamp": "2026-12-06T10:00:00Z",
                     "ownerReferences": [{"kind": "Job", "name": f"j{i}", "uid": f"job-{i}"}]},
        "spec": {"active": True, "queueName": f"q{i % 5}", "priority": i % 7,
                 "priorityClassRef": {"group": "kueue.x-k8s.io",
                                      "kind": "WorkloadPriorityClass", "name": f"p{i % 3}"},
                 "podSets": [{"name": "main", "count": 1 + i % 4, "template": {
                     "metadata": {"labels": {"app": "train"}},
                     "spec": {"containers": [container(1 + i % 8)]}}}]},
        "status": {},
    }
    if admitted:
        obj["status"] = {"admission": {"clusterQueue": "cq", "podSetAssignments": [
            {"name": "main", "flavors": {"nvidia.com/gpu": "h100"}}]}}
    return obj


def ray_cluster(i: int) -> dict[str, Any]:
    return {"kind": "RayCluster",
            "metadata": {"name": f"rc-{i}", "namespace": "ray", "uid": f"rc-{i}",
                         "creationTimestamp": "2026-12-06T10:00:00Z"},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [container(0)]}}},
                     "workerGroupSpecs": [{"groupName": "gpu", "replicas": 2, "numOfHosts": 1,
                                           "template": {"spec": {
                                               "containers": [container(8)]}}}]}}


def best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000)
    args = parser.parse_args()
    n = args.workloads
    k8s = KubernetesConfig()
    kueue = KueueConfig(enabled=True, queue_prices={f"q{i}": 1.0 + i for i in range(3)},
                        priority_prices={"p1": 2.5})
    pricing = Pricing(k8s, kueue)
    models = ModelResolver(k8s, profile_catalog(HashpivotConfig()),
                           {"h100": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}})
    objs = [workload(i) for i in range(n)]
    rays = [ray_cluster(i) for i in range(n // 10)]
    pods = [{"metadata": {"ownerReferences": [{"uid": f"rc-{i}"}]},
             "spec": {"containers": [container(8)]}, "status": {"phase": "Pending"}}
            for i in range(0, n // 10, 2)]
    out: dict[str, Any] = {}

    def demand() -> None:
        views = [workload_view(o) for o in objs]
        ray_views = [ray_view(o) for o in rays]
        jobs = workload_jobs(views, pricing, models)
        jobs += ray_jobs(ray_views, gpus_by_owner(pods), pricing, models, kueue_manages=True)
        out["jobs"] = jobs
        out["owners"] = admitted_owners(views, ray_views)

    seconds = best_of(3, demand)
    print(f"{n:,} Workloads + {len(rays):,} RayClusters -> {len(out['jobs']):,} pending jobs, "
          f"{len(out['owners']):,} admitted owners: {seconds * 1e3:.1f} ms per pass")
    record(f"Kueue demand pass, {n:,} Workloads + {len(rays):,} RayClusters",
           f"{seconds * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
