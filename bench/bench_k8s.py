"""Kubernetes actuation at scale: 1,000 KWOK GPU nodes adopted to mine, then half to AI.

Starts its own control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK;
see docs/k8s-testenv.md), creates the fake GPU nodes and the miner DaemonSet, then drives
the real `KubeActuator` over a watching `ClusterCache`, pass after pass as the controller
loop would, under a write budget (token bucket, `--qps`/`--burst`):

1. adoption: every node from unmanaged to MINING (label + taint, then the miner pod runs);
2. half of them MINING → STOPPING_MINE → IDLE → STARTING_AI → AI (the miner pod leaves).

Every HTTP call of the actuator and the cache is counted (writes, reads, full LISTs,
watch requests); write times are checked against the budget over every window:
writes in [t0, t1] ≤ qps·(t1 - t0) + burst. The cluster is deleted at the end, also on
Ctrl-C, SIGTERM or an error.

    python -m bench.bench_k8s [--nodes 1000 | --quick] [--qps 50 --burst 100]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

from bench.summary import record
from orchestrator.adapters.k8s import (
    ApiError,
    ClusterCache,
    CountingApiClient,
    KubeActuator,
    KubeClient,
    NodeTarget,
    TokenBucket,
    ensure_miner_daemonset,
    miner_daemonset_manifest,
)
from orchestrator.adapters.k8s.api import Obj
from orchestrator.adapters.k8s.client import WRITE_METHODS
from orchestrator.adapters.k8s.objects import STATE_ANNOTATION, node_view
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.modes import Mode, NodeState
from tests.tier2.cluster import (
    NODE_PREFIX_LABEL,
    KwokCluster,
    KwokClusterError,
    add_gpu_nodes,
    find_testenv_bin,
    node_is_ready,
)

NAMESPACE = "hashpivot-bench"
PREFIX = "bench"
MINER = "hashpivot-miner"
IMAGE = "registry.k8s.io/pause:3.10"  # KWOK never pulls it
BETA_OS_LABEL = "beta.kubernetes.io/os"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
GOAL = {Mode.MINE: NodeState.MINING, Mode.AI: NodeState.AI}


# -- counting ------------------------------------------------------------------------------


def _kind(method: str, query: str) -> str:
    """write, list (first page of a LIST), page (a further page), watch or get."""
    if method in WRITE_METHODS:
        return "write"
    params = parse_qs(query)
    if params.get("watch") == ["true"]:
        return "watch"
    if "limit" in params:  # KubeClient pages every LIST
        return "page" if "continue" in params else "list"
    return "get"


class Traffic(CountingApiClient):
    """A CountingApiClient that also sorts GETs (LIST, watch, GET) and times every write."""

    def __init__(self, configuration: Any = None, **kwargs: Any) -> None:
        super().__init__(configuration, **kwargs)
        self.kinds: Counter[str] = Counter()
        self.write_times: list[float] = []

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kind = _kind(method.upper(), urlsplit(url).query)
        with self._count_lock:
            self.kinds[kind] += 1
            if kind == "write":
                self.write_times.append(time.monotonic())
        return super().call_api(method, url, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class Patch:
    node: str
    #: Lifecycle state the patch writes ("-" when it leaves the state annotation alone).
    state: str
    status: int
    seconds: float


class RecordingKube(KubeClient):
    """KubeClient that notes each node patch: which node, which state, the answer."""

    def __init__(self, api: client.ApiClient, **kwargs: Any) -> None:
        super().__init__(api, **kwargs)
        self.patches: list[Patch] = []

    def patch_node(self, name: str, patch: Obj) -> Obj:
        notes = (patch.get("metadata") or {}).get("annotations") or {}
        state = str(notes.get(STATE_ANNOTATION, "-"))
        t = time.monotonic()
        try:
            answer = super().patch_node(name, patch)
        except ApiError as exc:
            self.patches.append(Patch(name, state, exc.status, time.monotonic() - t))
            raise
        self.patches.append(Patch(name, state, 200, time.monotonic() - t))
        return answer


class Waits:
    """The rate limiter's sleep, timed: how long writes waited for the budget."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Rig:
    """The actuator under test and what watches it."""

    actuator: KubeActuator
    cache: ClusterCache
    traffic: Traffic
    kube: RecordingKube
    waits: Waits


# Write times are taken at the HTTP call, a moment after the token: one write of slack.
SLACK = 1.0


def peak_excess(times: Sequence[float], qps: float) -> float:
    """Max over every window [t_i, t_j] of (writes in it) - qps·(t_j - t_i).

    The budget holds iff this is ≤ burst.
    """
    best, low = 0.0, math.inf
    for j, t in enumerate(times):
        low = min(low, j - qps * t)
        best = max(best, j - qps * t - low + 1)
    return best


# -- one flip ------------------------------------------------------------------------------


@dataclass(slots=True)
class Flip:
    name: str
    nodes: int
    passes: int = 0
    writes: int = 0
    reads: int = 0
    lists: int = 0
    pages: int = 0
    watches: int = 0
    gets: int = 0
    events: int = 0
    seconds: float = 0.0
    #: Seconds from the start of the flip to its last write.
    last_write_s: float = 0.0
    write_times: list[float] = field(default_factory=list)
    patches: list[Patch] = field(default_factory=list)
    conflicts: int = 0
    rate_limited: int = 0
    budget_wait_s: float = 0.0
    idle_pass_s: list[float] = field(default_factory=list)
    busy_pass_s: list[float] = field(default_factory=list)

    @property
    def per_node(self) -> float:
        return self.writes / self.nodes if self.nodes else 0.0

    @property
    def max_per_node(self) -> int:
        return max(Counter(p.node for p in self.patches).values(), default=0)

    def rate(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0


def at_goal(cache: ClusterCache, config: KubernetesConfig, goal: dict[str, NodeState]) -> int:
    """Nodes the cache shows in their goal state, recorded, with the label and taint of it."""
    done = 0
    for obj in cache.nodes():
        view = node_view(obj, config)
        want = goal.get(view.name)
        if want is not None and view.state == want and view.state_recorded:
            done += view.in_shape(want)
    return done


def run_flip(
    rig: Rig,
    name: str,
    targets: Sequence[NodeTarget],
    flipped: int,
    *,
    interval: float,
    timeout: float,
) -> Flip:
    """Apply `targets` pass after pass until the cache shows every node at its goal."""
    actuator, cache, traffic = rig.actuator, rig.cache, rig.traffic
    config = actuator.config
    goal = {t.name: GOAL[t.mode] for t in targets}
    flip = Flip(name, flipped)
    kinds0, writes0, patches0 = (
        Counter(traffic.kinds),
        len(traffic.write_times),
        len(rig.kube.patches),
    )
    caches = (cache.node_cache, cache.pod_cache)
    events0 = sum(c.events for c in caches)
    totals0 = Counter(actuator.totals)
    waited0 = rig.waits.seconds
    start = time.monotonic()
    deadline = start + timeout
    progress = start
    while True:
        t0 = time.monotonic()
        result = actuator.apply_targets(targets, name)
        took = time.monotonic() - t0
        flip.passes += 1
        (flip.busy_pass_s if result.writes else flip.idle_pass_s).append(took)
        if result.errors:
            first = next(iter(result.errors.items()))
            raise RuntimeError(f"{name}: pass {flip.passes} failed: {first}")
        done = at_goal(cache, config, goal)
        now = time.monotonic()
        if done == len(goal):
            break
        if now >= deadline:
            raise TimeoutError(f"{name}: {done}/{len(goal)} nodes at their goal after {timeout}s")
        if now - progress >= 10.0:
            progress = now
            print(f"   {name}: {now - start:5.0f}s, {done}/{len(goal)} at goal", flush=True)
        time.sleep(interval)
    flip.seconds = time.monotonic() - start
    kinds = traffic.kinds - kinds0
    flip.writes = kinds["write"]
    flip.lists, flip.pages = kinds["list"], kinds["page"]
    flip.watches, flip.gets = kinds["watch"], kinds["get"]
    flip.reads = flip.lists + flip.pages + flip.watches + flip.gets
    flip.events = sum(c.events for c in caches) - events0
    flip.write_times = traffic.write_times[writes0:]
    flip.last_write_s = flip.write_times[-1] - start if flip.write_times else 0.0
    flip.patches = rig.kube.patches[patches0:]
    totals = Counter(actuator.totals)
    totals.subtract(totals0)
    flip.conflicts, flip.rate_limited = totals["conflicts"], totals["rate_limited"]
    flip.budget_wait_s = rig.waits.seconds - waited0
    return flip


# -- setup ---------------------------------------------------------------------------------


def _settled(node: client.V1Node) -> bool:
    """kube-controller-manager has done its first pass over a new node: beta labels added,
    the not-ready taint (put on by the TaintNodesByCondition admission plugin) removed."""
    labels = (node.metadata and node.metadata.labels) or {}
    taints = (node.spec and node.spec.taints) or []
    return BETA_OS_LABEL in labels and not any(t.key == NOT_READY_TAINT for t in taints)


def wait_nodes(core: client.CoreV1Api, n: int, ok: Callable[[client.V1Node], bool]) -> None:
    """Poll (setup client, not counted) until `ok` holds for `n` of our nodes."""
    deadline = time.monotonic() + 900.0
    while True:
        nodes = core.list_node(label_selector=f"{NODE_PREFIX_LABEL}={PREFIX}").items
        done = sum(ok(x) for x in nodes)
        if done >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{n} nodes ready or settled after 900s")
        time.sleep(2.0)


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        load = os.getloadavg()
        return f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"


def check_final(
    setup: client.ApiClient, config: KubernetesConfig, names: Sequence[str], ai: set[str]
) -> list[str]:
    """Problems seen by plain LISTs (setup client, not counted): mode, taint, state, miners."""
    kube = KubeClient(setup)
    problems = []
    views = {}
    for obj in kube.list_nodes(config.node_selector)[0]:
        view = node_view(obj, config)
        views[view.name] = view
    for name in names:
        want = NodeState.AI if name in ai else NodeState.MINING
        v = views.get(name)
        if v is None or v.state != want or not v.state_recorded or not v.in_shape(want):
            got = (v.state.name, v.mode_label, v.tainted) if v else None
            problems.append(f"{name}: {got}, want {want.name}")
    pods = kube.list_pods(NAMESPACE, f"app.kubernetes.io/name={MINER}")[0]
    miners = {p["spec"].get("nodeName") for p in pods if not p["metadata"].get("deletionTimestamp")}
    if miners != set(names) - ai:
        problems.append(f"miner pods on {len(miners)} nodes, want {len(names) - len(ai)}")
    return problems


# -- report --------------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> str:
    return f"{1000 * statistics.median(values):.0f}" if values else "-"


def report(flips: Sequence[Flip], qps: float, burst: int, write_times: Sequence[float]) -> bool:
    """Print the tables; False if a limit (≤ 3 writes per node, the write budget) is broken."""
    ok = True
    head = (
        f"{'flip':<14}{'nodes':>6}{'passes':>7}{'writes':>7}{'w/node':>7}{'max':>4}"
        f"{'reads':>6}{'LISTs':>6}{'watch':>6}{'GET':>5}{'events':>7}{'conv s':>8}"
        f"{'last w s':>9}{'w/s':>7}{'≤ qps·t+b':>10}{'peak':>6}"
    )
    print(head)
    print("-" * len(head))
    for f in flips:
        bound = qps * f.seconds + burst
        peak = peak_excess(f.write_times, qps)
        print(
            f"{f.name:<14}{f.nodes:>6}{f.passes:>7}{f.writes:>7}{f.per_node:>7.2f}"
            f"{f.max_per_node:>4}{f.reads:>6}{f.lists:>6}{f.watches:>6}{f.gets:>5}"
            f"{f.events:>7}{f.seconds:>8.1f}{f.last_write_s:>9.1f}{f.rate():>7.1f}"
            f"{bound:>10.0f}{peak:>6.1f}"
        )
        ok = ok and f.per_node <= 3 and f.writes <= bound and peak <= burst + SLACK
    print(
        "\nw/node: API writes / nodes flipped (max: most PATCHes on one node);"
        " LISTs: full LIST calls\n(pages beyond the first not counted); watch: watch requests"
        " opened; events: node and pod\nwatch events received; last w s: time of the last write;"
        " w/s: writes / conv s;\npeak:"
        f" max over windows of writes - qps·dt (≤ burst={burst})"
    )
    print("\nwhere the writes go (state each node PATCH writes; status when refused):")
    for f in flips:
        states = Counter(p.state if p.status == 200 else f"{p.state}→{p.status}" for p in f.patches)
        detail = ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
        print(
            f"  {f.name:<14}{detail}; 409 conflicts {f.conflicts}\n"
            f"  {'':<14}writes put off to a later pass by the budget {f.rate_limited};"
            f" slept for the budget {f.budget_wait_s:.1f}s; PATCH latency median"
            f" {_ms([p.seconds for p in f.patches])} ms; pass median {_ms(f.busy_pass_s)} ms"
            f" writing, {_ms(f.idle_pass_s)} ms idle"
        )
        per_node = Counter(p.node for p in f.patches)
        over = [x for x, k in per_node.items() if k > 3]
        if over:
            refused = sum(1 for p in f.patches if p.node in over and p.status != 200)
            print(
                f"  !! {len(over)} node(s) took more than 3 writes; {refused} of those writes"
                " were refused (409: the node changed under the pass's read) and retried"
            )
        if f.per_node > 3:
            print(f"  !! {f.name}: {f.per_node:.2f} writes per node on average, over 3")
    peak = peak_excess(write_times, qps)
    print(
        f"\nall writes: {len(write_times)}, peak window excess {peak:.1f} (burst {burst}):"
        f" {'within' if peak <= burst + SLACK else 'OVER'} the budget qps={qps:g} burst={burst}"
    )
    return ok and peak <= burst + SLACK


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 nodes (smoke run)")
    parser.add_argument("--ai", type=int, default=None, help="nodes to flip to AI (nodes/2)")
    parser.add_argument("--qps", type=float, default=50.0, help="write budget, sustained")
    parser.add_argument("--burst", type=int, default=100, help="write budget, at once")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between passes")
    parser.add_argument(
        "--settle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for kube-controller-manager to finish with the new nodes before flipping",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per flip, seconds")
    args = parser.parse_args()
    n = 100 if args.quick else args.nodes
    n_ai = min(n, args.ai if args.ai is not None else n // 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if find_testenv_bin() is None:
        print("control-plane binaries missing: run `bash scripts/k8s-testenv.sh` first")
        sys.exit(2)

    print(f"machine: {os.cpu_count()} cores; {uptime()}")
    fresh = "settled nodes" if args.settle else "fresh nodes (--no-settle)"
    print(f"{n} nodes, {n_ai} to AI, {fresh}; write budget qps={args.qps:g} burst={args.burst}\n")
    t = time.monotonic()
    try:
        with KwokCluster() as cluster:
            print(f"cluster started in {time.monotonic() - t:.1f}s", flush=True)
            ok = bench(cluster, n, n_ai, args)
    except KeyboardInterrupt:
        print("\ninterrupted: cluster deleted")
        sys.exit(130)
    except KwokClusterError as exc:
        print(f"control plane failed: {exc}")
        sys.exit(1)
    print(f"\ncluster deleted; machine after: {uptime()}")
    if not ok:
        sys.exit(1)


def bench(cluster: KwokCluster, n: int, n_ai: int, args: argparse.Namespace) -> bool:
    setup = cluster.api_client()
    traffic = Traffic(setup.configuration)
    cache: ClusterCache | None = None
    try:
        core = client.CoreV1Api(setup)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        config = KubernetesConfig(
            namespace=NAMESPACE,
            node_selector=f"{NODE_PREFIX_LABEL}={PREFIX}",
            miner_daemonset=MINER,
            qps=args.qps,
            burst=args.burst,
        )
        body = miner_daemonset_manifest(config, IMAGE, node_selector={NODE_PREFIX_LABEL: PREFIX})
        ensure_miner_daemonset(KubeClient(setup), body)

        t = time.monotonic()
        names = add_gpu_nodes(setup, PREFIX, n)
        created = time.monotonic() - t
        wait_nodes(core, n, node_is_ready)
        ready = time.monotonic() - t
        print(
            f"{n} KWOK GPU nodes created in {created:.1f}s ({n / created:.0f}/s, one POST each,"
            f" setup client, not counted); all Ready after {ready:.1f}s",
            flush=True,
        )
        if args.settle:
            # Until then kube-controller-manager patches every node (conflicts for us) and
            # the not-ready taint keeps miner pods off: adopting long-standing nodes is the
            # usual case. --no-settle flips fresh nodes at once.
            wait_nodes(core, n, _settled)
            print(
                f"kube-controller-manager done with the new nodes after"
                f" {time.monotonic() - t:.1f}s (beta labels on, not-ready taint off)",
                flush=True,
            )

        kube = RecordingKube(traffic, field_manager=config.field_manager)
        t = time.monotonic()
        cache = ClusterCache(kube, config).start()
        if not cache.wait_synced(120.0):
            raise RuntimeError("node and pod caches did not sync")
        # Both watches open and every node seen: the flips start from a steady cache.
        until = time.monotonic() + 60.0
        while (len(cache.nodes()) < n or traffic.kinds["watch"] < 2) and time.monotonic() < until:
            time.sleep(0.1)
        print(
            f"cache synced in {time.monotonic() - t:.1f}s with {dict(traffic.kinds)}"
            " (the initial list + watch)\n",
            flush=True,
        )
        waits = Waits()
        limiter = TokenBucket(config.qps, config.burst, sleep=waits)  # as the actuator's own
        actuator = KubeActuator(kube, config, nodes=cache, pods=cache, limiter=limiter)
        rig = Rig(actuator, cache, traffic, kube, waits)
        ai = set(names[:n_ai])

        def flip(name: str, targets: Sequence[NodeTarget], k: int) -> Flip:
            return run_flip(rig, name, targets, k, interval=args.interval, timeout=args.timeout)

        flips = [flip("adopt→MINE", [NodeTarget(x, Mode.MINE) for x in names], n)]
        plan = [NodeTarget(x, Mode.AI if x in ai else Mode.MINE) for x in names]
        flips.append(flip("MINE→AI", plan, n_ai))
        extra = actuator.apply_targets(plan, "MINE→AI").writes
        print()
        ok = report(flips, args.qps, args.burst, traffic.write_times)
        for f in flips:
            per_node = f.writes / max(f.nodes, 1)
            record(f"k8s {f.name}, {f.nodes:,} nodes",
                   f"{per_node:.2f} writes/node, {f.lists} LISTs, {f.seconds:.0f} s",
                   f"<= 3 writes/node, qps {args.qps:g} burst {args.burst}", ok and per_node <= 3)
        print(f"one more pass after convergence: {extra} writes")
        problems = check_final(setup, config, names, ai)
        print(f"final state by a plain LIST: {'as planned' if not problems else problems[:5]}")
        return ok and not problems and extra == 0
    finally:
        if cache is not None:
            cache.stop()
        traffic.close()  # type: ignore[no-untyped-call]
        setup.close()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
