"""The simulated site's job book, checked by hand on a few jobs."""

from __future__ import annotations

import numpy as np

from orchestrator.backtest.jobbook import MIN_REMAINING_S, JobBook
from orchestrator.backtest.jobs import JobStream

H = 3600.0


def book(n_nodes: int = 3, max_wait_h: float = 5.0) -> JobBook:
    # submit (s), GPUs, duration (s), interruptible
    jobs = JobStream(
        submit_s=np.array([0.0, 10.0, 20.0, 30.0, 5 * H]),
        gpus=np.array([4.0, 8.0, 2.0, 4.0, 1.0]),
        duration_s=np.array([2 * H, 1 * H, 10 * H, 3 * H, 1 * H]),
        interruptible=np.array([True, False, True, True, True]),
        offered_usd_per_gpu_hour=None,
        gpu_model=None,
    )
    return JobBook(jobs, n_nodes, max_wait_h * H)


def test_jobs_arrive_fifo_and_fit_first_come_first_served() -> None:
    b = book()
    assert b.arrive(H) == 0
    assert b.queued().gpus.tolist() == [4.0, 8.0, 2.0, 4.0]  # the 5 h job has not arrived
    accepting = np.array([True, True, False])
    node_gpus = np.array([8.0, 8.0, 8.0])
    # An empty interval: placement only.
    started, _ = b.serve(
        accepting, node_gpus, ready_at=np.array([0.0, 1.5 * H, 0.0]), now_s=H, end_s=H
    )
    # 4 → node 0; 8 → node 1; 2 → node 0 (first with room); 4 waits (node 0 has 2 left).
    assert started == 3
    assert b.queued().gpus.tolist() == [4.0]
    busy, lease, interruptible = b.node_columns()
    assert busy.tolist() == [6.0, 8.0, 0.0]
    # The 8-GPU job is protected and starts when node 1 is ready (1.5 h): lease to 2.5 h.
    assert lease.tolist() == [0.0, 2.5 * H, 0.0]
    assert interruptible.tolist() == [True, False, True]
    assert b.gpus_waiting_and_running() == (4.0, 14.0)


def test_running_accrues_gpu_hours_and_retires_finished_jobs() -> None:
    b = book()
    b.arrive(H)
    _, gpu_h = b.serve(
        np.array([True, True, False]), np.full(3, 8.0), np.array([0.0, 1.5 * H, 0.0]), H, 2 * H
    )
    # Node 0: 4 GPUs + 2 GPUs for the full hour; node 1: 8 GPUs from 1.5 h.
    assert gpu_h.tolist() == [6.0, 4.0, 0.0]
    _, gpu_h = b.serve(np.zeros(3, dtype=bool), np.full(3, 8.0), np.zeros(3), 2 * H, 3 * H)
    # Node 0's 4-GPU job (2 h) ends at 3 h, the 2-GPU job runs on; node 1's 1 h job ends at 2.5 h.
    assert gpu_h.tolist() == [6.0, 4.0, 0.0]
    busy, _, _ = b.node_columns()
    assert busy.tolist() == [2.0, 0.0, 0.0]


def test_eviction_requeues_at_the_front_with_the_work_left_and_charges_a_penalty() -> None:
    b = book()
    b.arrive(H)
    b.serve(np.array([True, False, False]), np.full(3, 8.0), np.zeros(3), H, 2 * H)
    penalty = np.zeros(3)
    leaving = np.array([True, False, False])
    evicted = b.evict(leaving, 2.5 * H, np.array([2.0, 2.0, 2.0]), 0.5, penalty)
    assert evicted == 2
    queued = b.queued()
    # Evicted jobs first (in the order they ran), then what waited before.
    assert queued.gpus.tolist() == [4.0, 2.0, 8.0, 4.0]
    # 4-GPU job: 2 h of work, ran 1.5 h → 0.5 h left; 2-GPU job: 10 h − 1.5 h.
    assert np.allclose(queued.remaining_s, [0.5 * H, 8.5 * H, 1 * H, 3 * H])
    assert penalty.tolist() == [(4.0 + 2.0) * 2.0 * 0.5, 0.0, 0.0]
    assert b.gpus_waiting_and_running() == (18.0, 0.0)


def test_an_evicted_job_keeps_a_minimum_of_work() -> None:
    b = book()
    b.arrive(H)
    b.serve(np.array([True, False, False]), np.full(3, 8.0), np.zeros(3), H, H)
    b.evict(np.array([True, False, False]), 100 * H, np.zeros(3), 0.0, np.zeros(3))
    assert b.queued().remaining_s[:2].tolist() == [MIN_REMAINING_S, MIN_REMAINING_S]


def test_jobs_that_wait_too_long_leave_as_sla_misses() -> None:
    b = book(max_wait_h=2.0)
    b.arrive(H)
    assert b.arrive(2 * H + 15.0) == 2  # submitted at 0 s and 10 s
    assert b.queued().submit_s.tolist() == [20.0, 30.0]


def test_placement_stops_once_no_node_has_a_whole_gpu() -> None:
    b = book()
    b.arrive(H)
    started, _ = b.serve(np.array([False, False, False]), np.full(3, 8.0), np.zeros(3), H, H)
    assert started == 0
    assert len(b.queued()) == 4
