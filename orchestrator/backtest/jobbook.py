"""The simulated site's AI jobs: a FIFO queue and the running set, over the trace's jobs.

Each trace job is one row of fixed arrays (GPUs, work left, node, start); the queue and
the running set are ordered lists of row numbers. A backtest advances them every step,
so each operation is one compiled pass instead of a few dozen array copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.backtest.jobs import JobStream
from orchestrator.framework.jit import compiled

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.intp]
B = npt.NDArray[np.bool_]

#: Work an evicted job keeps at least (s): a restart is never free.
MIN_REMAINING_S = 60.0


@dataclass(frozen=True, slots=True)
class QueuedJobs:
    """The jobs waiting for GPUs, front of the queue first."""

    submit_s: F64
    gpus: F64
    remaining_s: F64
    interruptible: B

    def __len__(self) -> int:
        return int(self.submit_s.shape[0])


class JobBook:
    """Queue and running jobs. Jobs wait FIFO (evicted ones go back to the front), run
    on one node each, and leave when done or when they waited past `max_wait_s`."""

    def __init__(self, jobs: JobStream, n_nodes: int, max_wait_s: float):
        self.submit_s = np.ascontiguousarray(jobs.submit_s, dtype=np.float64)
        self.gpus = np.ascontiguousarray(jobs.gpus, dtype=np.float64)
        self.interruptible = np.ascontiguousarray(jobs.interruptible, dtype=bool)
        self.remaining_s = np.array(jobs.duration_s, dtype=np.float64)
        self.node = np.full(len(jobs), -1, dtype=np.intp)
        self.start_s = np.zeros(len(jobs))
        self.queue = np.empty(len(jobs), dtype=np.intp)
        self.running = np.empty(len(jobs), dtype=np.intp)
        #: [queued, running, next job to arrive]
        self.counts = np.zeros(3, dtype=np.intp)
        self.max_wait_s = max_wait_s
        self.n_nodes = n_nodes
        #: Nodes in the order the cluster fills them (fleet order unless told otherwise).
        self.fleet_order = np.arange(n_nodes, dtype=np.intp)

    def arrive(self, now_s: float) -> int:
        """Queue jobs submitted before `now_s`; drop those that waited too long. Returns
        the number dropped (SLA misses)."""
        return int(_arrive(self.submit_s, self.queue, self.counts, now_s, self.max_wait_s))

    def gpus_waiting_and_running(self) -> tuple[float, float]:
        pending, running = _gpu_totals(self.gpus, self.queue, self.running, self.counts)
        return float(pending), float(running)

    def queued(self) -> QueuedJobs:
        ids = self.queue[: self.counts[0]]
        return QueuedJobs(
            self.submit_s[ids], self.gpus[ids], self.remaining_s[ids], self.interruptible[ids]
        )

    def evict(
        self, leaving: B, now_s: float, gpu_price: F64, penalty_gpu_hours: float, penalty: F64
    ) -> int:
        """Stop the jobs on nodes `leaving` and requeue them at the front with the work
        they have left; add each node's eviction penalty to `penalty`. Returns how many."""
        return int(
            _evict(
                leaving,
                now_s,
                gpu_price,
                penalty_gpu_hours,
                self.gpus,
                self.remaining_s,
                self.node,
                self.start_s,
                self.queue,
                self.running,
                self.counts,
                penalty,
            )
        )

    def serve(
        self, accepting: B, node_gpus: F64, ready_at: F64, now_s: float, end_s: float,
        fill_order: I64 | None = None,
    ) -> tuple[int, F64]:
        """First-fit queued jobs (FIFO) onto accepting nodes with free GPUs, trying nodes
        in `fill_order` (default: fleet order); a job starts once its node is ready. Then
        run every job over [now_s, end_s) and retire the finished. Returns how many
        started and the busy GPU-hours per node."""
        gpu_h = np.zeros(self.n_nodes)
        started = _serve(
            accepting,
            self.fleet_order if fill_order is None else fill_order,
            node_gpus,
            ready_at,
            now_s,
            end_s,
            self.gpus,
            self.remaining_s,
            self.node,
            self.start_s,
            self.queue,
            self.running,
            self.counts,
            gpu_h,
        )
        return int(started), gpu_h

    def node_columns(self) -> tuple[F64, F64, B]:
        """Per node: GPUs busy, end of the latest protected (non-interruptible) job
        (0: none), and whether every job on it may be evicted."""
        busy = np.empty(self.n_nodes)
        lease = np.empty(self.n_nodes)
        interruptible = np.empty(self.n_nodes, dtype=bool)
        _node_columns(self.gpus, self.interruptible, self.remaining_s, self.node, self.start_s,
                      self.running, self.counts, busy, lease, interruptible)
        return busy, lease, interruptible


@compiled
def _arrive(
    submit_s: F64, queue: I64, counts: I64, now_s: float, max_wait_s: float
) -> int:
    q, nxt = counts[0], counts[2]
    while nxt < submit_s.shape[0] and submit_s[nxt] < now_s:
        queue[q] = nxt
        q += 1
        nxt += 1
    kept = 0
    for k in range(q):
        j = queue[k]
        if not now_s - submit_s[j] > max_wait_s:
            queue[kept] = j
            kept += 1
    counts[0], counts[2] = kept, nxt
    return int(q - kept)


@compiled
def _gpu_totals(gpus: F64, queue: I64, running: I64, counts: I64) -> tuple[float, float]:
    pending = 0.0
    for k in range(counts[0]):
        pending += gpus[queue[k]]
    busy = 0.0
    for k in range(counts[1]):
        busy += gpus[running[k]]
    return pending, busy


@compiled
def _evict(
    leaving: B,
    now_s: float,
    gpu_price: F64,
    penalty_gpu_hours: float,
    gpus: F64,
    remaining_s: F64,
    node: I64,
    start_s: F64,
    queue: I64,
    running: I64,
    counts: I64,
    penalty: F64,
) -> int:
    evicted = np.empty(counts[1], dtype=np.intp)
    e = 0
    kept = 0
    for k in range(counts[1]):
        j = running[k]
        i = node[j]
        if leaving[i]:
            done = max(now_s - start_s[j], 0.0)
            remaining_s[j] = max(remaining_s[j] - done, MIN_REMAINING_S)
            penalty[i] += gpus[j] * gpu_price[i] * penalty_gpu_hours
            node[j] = -1
            evicted[e] = j
            e += 1
        else:
            running[kept] = j
            kept += 1
    if e:
        q = counts[0]
        queue[e : e + q] = queue[:q].copy()
        queue[:e] = evicted[:e]
        counts[0] = q + e
    counts[1] = kept
    return e


@compiled
def _place(
    accepting: B,
    fill_order: I64,
    node_gpus: F64,
    ready_at: F64,
    now_s: float,
    gpus: F64,
    node: I64,
    start_s: F64,
    queue: I64,
    running: I64,
    counts: I64,
) -> int:
    if counts[0] == 0:
        return 0
    n = accepting.shape[0]
    busy = np.zeros(n)
    for k in range(counts[1]):
        busy[node[running[k]]] += gpus[running[k]]
    free = np.empty(n)
    candidates = np.empty(n, dtype=np.intp)
    c = 0
    for o in range(n):
        i = fill_order[o]
        room = node_gpus[i] - busy[i]
        if accepting[i] and room > 0:
            candidates[c] = i
            free[c] = room
            c += 1
    most_free = free[:c].max() if c else 0.0
    r = counts[1]
    kept = 0
    full = False  # no candidate has a whole GPU left: the rest of the queue waits
    for k in range(counts[0]):
        j = queue[k]
        g = gpus[j]
        placed = False
        if g > most_free and most_free < 1.0:
            full = True
        if not full and g <= most_free:
            for slot in range(c):
                if free[slot] >= g:
                    had = free[slot]
                    free[slot] = had - g
                    i = candidates[slot]
                    node[j] = i
                    start_s[j] = max(now_s, ready_at[i])
                    running[r] = j
                    r += 1
                    placed = True
                    if had == most_free:
                        most_free = free[:c].max()
                    break
        if not placed:
            queue[kept] = j
            kept += 1
    started = r - counts[1]
    counts[0], counts[1] = kept, r
    return int(started)


@compiled
def _serve(
    accepting: B,
    fill_order: I64,
    node_gpus: F64,
    ready_at: F64,
    now_s: float,
    end_s: float,
    gpus: F64,
    remaining_s: F64,
    node: I64,
    start_s: F64,
    queue: I64,
    running: I64,
    counts: I64,
    gpu_h: F64,
) -> int:
    started = _place(
        accepting, fill_order, node_gpus, ready_at, now_s, gpus, node, start_s, queue, running,
        counts,
    )
    _run(now_s, end_s, gpus, remaining_s, node, start_s, running, counts, gpu_h)
    return started


@compiled
def _run(
    now_s: float,
    end_s: float,
    gpus: F64,
    remaining_s: F64,
    node: I64,
    start_s: F64,
    running: I64,
    counts: I64,
    gpu_h: F64,
) -> None:
    kept = 0
    for k in range(counts[1]):
        j = running[k]
        start = start_s[j]
        finish = start + remaining_s[j]
        began = max(start, now_s)
        ran_s = max(min(finish, end_s) - began, 0.0)
        gpu_h[node[j]] += gpus[j] * (ran_s / 3600.0)
        if finish <= end_s:
            node[j] = -1
            continue
        # Carried into the next step: its clock restarts at the step end.
        remaining_s[j] -= ran_s
        start_s[j] = max(start, end_s)
        running[kept] = j
        kept += 1
    counts[1] = kept


@compiled
def _node_columns(
    gpus: F64,
    interruptible: B,
    remaining_s: F64,
    node: I64,
    start_s: F64,
    running: I64,
    counts: I64,
    busy: F64,
    lease: F64,
    all_interruptible: B,
) -> None:
    busy[:] = 0.0
    lease[:] = 0.0
    all_interruptible[:] = True
    for k in range(counts[1]):
        j = running[k]
        i = node[j]
        busy[i] += gpus[j]
        if not interruptible[j]:
            lease[i] = max(lease[i], start_s[j] + remaining_s[j])
            all_interruptible[i] = False
