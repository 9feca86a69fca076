"""Moves nodes toward a plan's modes through the Kubernetes API (design §4).

Level-based: each pass reads the nodes and pods as they are and takes every node one
step further (`lifecycle.plan_step`); nothing is remembered that a restarted controller
would need. Writes are JSON merge patches conditional on the node's resourceVersion (a
409 is re-read and retried once), evictions go through the Eviction API (a 429 from a
disruption budget waits for the next pass), every write takes a token from a rate limiter,
and nodes are served highest plan gain first so a short budget goes to what pays most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from orchestrator.adapters.k8s.api import (
    CONFLICT,
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    ApiError,
    KubeOps,
    Obj,
)
from orchestrator.adapters.k8s.fleet import PodsByNode, group_pods
from orchestrator.adapters.k8s.lifecycle import STEADY, Step, effective_target, plan_step
from orchestrator.adapters.k8s.objects import (
    MINING_TAINT,
    MINING_TAINT_EFFECT,
    MINING_TAINT_KEY,
    MODE_LABEL,
    NodeView,
    Provenance,
    mode_of,
    name_of,
    node_view,
    pod_view,
    resource_version_of,
)
from orchestrator.adapters.k8s.ratelimit import TokenBucket
from orchestrator.adapters.k8s.watch import ListingSource, NodeSource, PodSource
from orchestrator.engine.plan import Plan
from orchestrator.framework.reasons import Reason
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.fleet import FleetTable
from orchestrator.models.modes import Mode, NodeState
from orchestrator.ports import ActuationResult

log = logging.getLogger("hashpivot.k8s.actuator")

RECONCILE_DECISION = "reconcile"
POWER_WAIT = "waiting for power headroom"
#: Key of `ActuationResult.errors` for failures not tied to one node.
CLUSTER = "(cluster)"


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """One node's planned mode, with what the switch is worth and why it was decided."""

    name: str
    mode: Mode
    #: Plan gain of the switch, USD/h: higher goes first when writes are scarce.
    gain_per_h: float = 0.0
    reason: str = Reason.UNCHANGED.name
    #: The engine held the node at its committed mode because it is mid-switch.
    held_in_transition: bool = False


def _reason_name(code: int) -> str:
    try:
        return Reason(code).name
    except ValueError:
        return str(code)


def targets_from_plan(plan: Plan) -> list[NodeTarget]:
    """Per-node targets of a plan, with gains from its score table."""
    gain = plan.scores.gain_per_h(plan.current, plan.target)
    gain = np.where(np.isfinite(gain), gain, 0.0)
    return [
        NodeTarget(
            name=str(plan.node_names[i]),
            mode=Mode(int(plan.target[i])),
            gain_per_h=float(gain[i]),
            reason=_reason_name(int(plan.reason[i])),
            held_in_transition=int(plan.reason[i]) == Reason.GUARD_IN_TRANSITION,
        )
        for i in range(plan.target.shape[0])
    ]


@dataclass(slots=True)
class ActuatorReport:
    """Details of the last pass beyond `ActuationResult`: for logs, metrics and tests."""

    decision_id: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    patches: int = 0
    evicted: list[str] = field(default_factory=list)
    #: Evictions a disruption budget refused (429), pod key → message.
    refused: dict[str, str] = field(default_factory=dict)
    conflicts: int = 0
    rate_limited: int = 0
    not_leader: bool = False


@dataclass(slots=True)
class _Memo:
    """Our last write to a node: used until the cache catches up with it."""

    based_on: str
    obj: Obj
    at: float


#: The workload a node in each state may be running, so what it is counted to draw: a
#: miner that is stopping still runs, tenants that are draining still run.
_DRAW_MODE: dict[NodeState, Mode] = {
    NodeState.IDLE: Mode.IDLE,
    NodeState.MINING: Mode.MINE,
    NodeState.STARTING_MINE: Mode.MINE,
    NodeState.STOPPING_MINE: Mode.MINE,
    NodeState.AI: Mode.AI,
    NodeState.STARTING_AI: Mode.AI,
    NodeState.DRAINING_AI: Mode.AI,
}


@dataclass(frozen=True, slots=True)
class PowerBudget:
    """Each node's site and full-load watts per mode, and each site's cap (the last plan's).

    The plan fits the cap once every switch is done; on the way, a node leaving for AI may
    still drain its tenants while another starts mining. The actuator therefore lets a node
    leave IDLE for a mode that draws more only when the site, as its nodes are now, has
    room for it.
    """

    nodes: dict[str, tuple[int, tuple[float, float, float]]]
    cap_w: tuple[float, ...]

    @staticmethod
    def of(plan: Plan, fleet: FleetTable) -> PowerBudget | None:
        cap = np.asarray(plan.site_cap_w, dtype=np.float64)
        n = plan.target.shape[0]
        if fleet.n != n or not np.isfinite(cap).any():
            return None
        w = plan.scores.watts
        names = [str(x) for x in plan.node_names]
        rows = zip(names, fleet.site.tolist(), w[0].tolist(), w[1].tolist(), w[2].tolist(),
                   strict=True)
        return PowerBudget(
            {name: (int(site), (idle, mine, ai)) for name, site, idle, mine, ai in rows},
            tuple(float(c) for c in cap),
        )

    def draw(self, name: str, state: NodeState) -> float:
        known = self.nodes.get(name)
        return 0.0 if known is None else known[1][_DRAW_MODE[state]]


class _Pass:
    """State of one apply pass: the result, the report, the write gate and the power
    each site draws as its nodes are now (updated with every write of the pass)."""

    def __init__(self, decision_id: str, deadline: float) -> None:
        self.result = ActuationResult()
        self.report = ActuatorReport(decision_id=decision_id)
        self.deadline = deadline
        self.halted: str | None = None
        self.budget: PowerBudget | None = None
        self.site_draw: dict[int, float] = {}
        self.counted: dict[str, float] = {}

    def count_power(self, budget: PowerBudget | None, views: Sequence[NodeView]) -> None:
        self.budget = budget
        if budget is None:
            return
        for view in views:
            known = budget.nodes.get(view.name)
            if known is not None:
                self.recount(view.name, view.state)

    def recount(self, name: str, state: NodeState) -> None:
        if self.budget is None or name not in self.budget.nodes:
            return
        site = self.budget.nodes[name][0]
        watts = self.budget.draw(name, state)
        self.site_draw[site] = self.site_draw.get(site, 0.0) + watts - self.counted.get(name, 0.0)
        self.counted[name] = watts

    def power_gate(self, name: str) -> Callable[[NodeState, NodeState], str | None] | None:
        budget = self.budget
        if budget is None or name not in budget.nodes:
            return None
        site = budget.nodes[name][0]
        cap = budget.cap_w[site] if site < len(budget.cap_w) else float("inf")

        def gate(state: NodeState, nxt: NodeState) -> str | None:
            # Only leaving IDLE starts drawing more; every other edge keeps or lowers it.
            if state != NodeState.IDLE or nxt == NodeState.IDLE:
                return None
            total = self.site_draw.get(site, 0.0) - self.counted.get(name, 0.0)
            total += budget.draw(name, nxt)
            if total <= cap + 1e-6:
                return None
            return (
                f"{POWER_WAIT}: the site would draw {total / 1e3:.1f} kW, "
                f"its cap is {cap / 1e3:.1f} kW"
            )

        return gate


class KubeActuator:
    """`Actuator` that labels, annotates and taints nodes and evicts interruptible pods.

    `nodes`/`pods` default to listing on every pass; pass a `watch.ClusterCache` to read
    from watches instead. `is_leader` (e.g. `LeaderElector.is_leader`) is asked before
    every write: a replica that is not the leader writes nothing.
    """

    def __init__(
        self,
        kube: KubeOps,
        config: KubernetesConfig,
        *,
        nodes: NodeSource | None = None,
        pods: PodSource | None = None,
        limiter: TokenBucket | None = None,
        is_leader: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        settle_s: float = 1.0,
        max_writes_per_node: int = 4,
    ) -> None:
        self.kube = kube
        self.config = config
        listing = ListingSource(kube, config)
        self.nodes: NodeSource = nodes if nodes is not None else listing
        self.pods: PodSource = pods if pods is not None else listing
        self.limiter = limiter or TokenBucket(config.qps, config.burst, clock=monotonic)
        self.is_leader = is_leader
        self.clock = clock
        self.monotonic = monotonic
        self.settle_s = settle_s
        self.max_writes_per_node = max_writes_per_node
        self.miner_managed = config.miner_daemonset is not None
        self.last_report = ActuatorReport()
        #: Running totals over every pass (patches, conflicts, evictions, refused_evictions,
        #: rate_limited): for metrics, and for tests that count actions, not calls.
        self.totals: Counter[str] = Counter()
        self._memo: dict[str, _Memo] = {}
        self._lock = threading.Lock()
        #: From the last plan applied: reconcile passes and frozen passes use it too.
        self.power_budget: PowerBudget | None = None
        #: Switches a reconcile pass began between cycles (a node held back for power
        #: headroom, released), node → when: the next plan's result reports them, so
        #: they count against the switch budgets and the node's dwell.
        self._began_between: dict[str, float] = {}

    # -- the port --------------------------------------------------------------------------

    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        """Move every node of the plan one pass toward its target."""
        if fleet is not None:
            self.power_budget = PowerBudget.of(plan, fleet)
        return self.apply_targets(targets_from_plan(plan), plan.decision_id)

    def apply_targets(self, targets: Sequence[NodeTarget], decision_id: str) -> ActuationResult:
        with self._lock:
            result = self._run(targets, decision_id, write=True).result
            if self._began_between:
                result.began_earlier.update(self._began_between)
                self._began_between = {}
            return result

    def reconcile(self) -> ActuationResult:
        """Carry on the switches under way (to their recorded targets) without a new plan,
        and put back a label or taint someone removed. Cheap between cycles."""
        with self._lock:
            targets = []
            try:
                nodes = self.nodes.nodes()
            except ApiError as exc:
                return ActuationResult(errors={CLUSTER: f"reading nodes: {exc}"})
            for obj in nodes:
                view = node_view(obj, self.config)
                if not view.state_recorded or view.opt_out:
                    continue
                # IDLE with another target: a switch held back for power headroom.
                under_way = view.state not in STEADY or view.state == NodeState.IDLE
                mode = view.target if under_way and view.target else None
                targets.append(NodeTarget(view.name, mode or mode_of(view.state)))
            result = self._run(targets, RECONCILE_DECISION, write=True).result
            now = self.clock()
            for name in result.started:
                self._began_between.setdefault(name, now)
            return result

    def preview(self, targets: Sequence[NodeTarget], decision_id: str) -> ActuatorReport:
        """What a pass would do now, writing nothing (shadow mode)."""
        with self._lock:
            return self._run(targets, decision_id, write=False).report

    # -- one pass --------------------------------------------------------------------------

    def _observed(self, obj: Obj) -> tuple[Obj, bool]:
        """The freshest copy we have of a node, and whether it is our own unsettled write."""
        name = name_of(obj)
        memo = self._memo.get(name)
        if memo is None:
            return obj, False
        if resource_version_of(obj) != memo.based_on:
            del self._memo[name]  # the cache has moved past our write (or someone else's)
            return obj, False
        return memo.obj, self.monotonic() - memo.at < self.settle_s

    def _run(self, targets: Sequence[NodeTarget], decision_id: str, *, write: bool) -> _Pass:
        now = self.clock()
        run = _Pass(decision_id, self.monotonic() + self.config.write_budget_s)
        try:
            nodes, pod_objs = self.nodes.nodes(), self.pods.pods()
        except ApiError as exc:  # listing (no cache) failed: report, change nothing
            run.result.errors[CLUSTER] = f"reading nodes and pods: {exc}"
            return run
        by_name = {name_of(obj): obj for obj in nodes}
        for gone in self._memo.keys() - by_name.keys():
            del self._memo[gone]
        pods = group_pods((pod_view(p, self.config) for p in pod_objs), self.config)
        run.count_power(
            self.power_budget,
            [node_view(self._observed(obj)[0] if write else obj, self.config) for obj in nodes],
        )
        work: list[tuple[tuple[int, float, str], NodeTarget, Obj]] = []
        for target in targets:
            obj = by_name.get(target.name)
            if obj is None:
                run.result.deferred[target.name] = "not found among the managed nodes"
                continue
            view = node_view(obj, self.config)
            # Switches under way first (half-done costs most), then new ones by gain, then upkeep.
            rank = 0 if view.state not in STEADY else 1 if mode_of(view.state) != target.mode else 2
            work.append(((rank, -target.gain_per_h, target.name), target, obj))
        work.sort(key=lambda item: item[0])
        for _, target, obj in work:
            self._drive(run, target, obj, pods, now, write=write)
        if write:
            self.last_report = run.report
            self.totals.update(
                patches=run.report.patches,
                conflicts=run.report.conflicts,
                evictions=len(run.report.evicted),
                refused_evictions=len(run.report.refused),
                rate_limited=run.report.rate_limited,
            )
        return run

    def _view(self, obj: Obj, pods: PodsByNode, *, fresh: bool) -> NodeView:
        return node_view(
            obj, self.config, has_ai_pods=bool(pods.ai.get(name_of(obj))), fresh_write=fresh
        )

    def _drive(
        self,
        run: _Pass,
        target: NodeTarget,
        obj: Obj,
        pods: PodsByNode,
        now: float,
        *,
        write: bool,
    ) -> None:
        name = target.name
        if write:
            # The pass may wait on the write budget for a while: take the watch's copy of
            # this node as it is now, not as it was when the pass began (fewer 409s).
            obj = self.nodes.node(name) or obj
        obj, fresh = self._observed(obj) if write else (obj, False)
        view = self._view(obj, pods, fresh=fresh)
        if view.opt_out:
            # Every pass says so: the journal records each cycle a node was left alone.
            run.result.deferred[name] = f"opted out, left alone: {view.override}"
            if self._taint_follows_label(run, view, write=write):
                run.result.deferred[name] += "; mining taint set to match its label"
            return
        mode = effective_target(view, target.mode, held_in_transition=target.held_in_transition)
        provenance = Provenance(run.report.decision_id, target.reason)
        gate = run.power_gate(name)
        ai, miner = pods.ai.get(name, []), pods.miner.get(name, [])
        start = view.state
        notes: list[str] = []
        retried = False

        def replan(view: NodeView, mode: Mode) -> Step:
            """The next step for this node from `view`, with this pass's fixed inputs."""
            return plan_step(view, mode, ai, miner, now_s=now, provenance=provenance,
                             miner_managed=self.miner_managed, power_gate=gate)

        step = replan(view, mode)
        if mode != target.mode and (step.waiting or "").startswith(POWER_WAIT):
            # The engine counts a switch under way at the mode its node is committed to, so
            # its plan can leave no room for where the switch was heading. End the switch
            # there instead of waiting on room that may never come; the next plan decides
            # the node again, counted as it really is.
            mode = target.mode
            step = replan(view, mode)
        run.report.steps[name] = step
        if not write:
            return
        for _ in range(self.max_writes_per_node):
            if step.patch is not None:
                refused = self._may_write(run)
                if refused is not None:
                    notes.append(refused)
                    break
                try:
                    answer = self.kube.patch_node(name, step.patch)
                except ApiError as exc:
                    run.result.writes += 1
                    if exc.status == CONFLICT and not retried:
                        # Someone changed the node since we read it: read it again and redo
                        # the step from what is there now (it may already be done).
                        run.report.conflicts += 1
                        retried = True
                        try:
                            obj = self.kube.get_node(name)
                        except ApiError as again:
                            run.result.errors[name] = f"re-read after conflict: {again}"
                            return
                        self._memo.pop(name, None)
                        view = self._view(obj, pods, fresh=False)
                        run.recount(name, view.state)
                        mode = effective_target(
                            view, target.mode, held_in_transition=target.held_in_transition
                        )
                        step = replan(view, mode)
                        continue
                    if exc.status == CONFLICT:
                        run.report.conflicts += 1
                        notes.append("conflict again: retry next pass")
                    elif exc.status == NOT_FOUND:
                        notes.append("node deleted")
                    else:
                        run.result.errors[name] = f"patch failed: {exc}"
                    break
                run.result.writes += 1
                run.report.patches += 1
                if step.new_switch and name not in run.result.started:
                    run.result.started.append(name)
                self._memo[name] = _Memo(view.resource_version, answer, self.monotonic())
                view = self._view(answer, pods, fresh=True)
                run.recount(name, view.state)
                step = replan(view, mode)
                run.report.steps[name] = step
                continue
            if step.evict:
                self._evict(run, name, step, notes)
            break
        if view.state != start and view.state == step.end and step.reaches_goal:
            run.result.completed.append(name)
        elif not step.reaches_goal or step.patch is not None:
            why = step.waiting or "write pending"
            if view.since_s and view.state not in STEADY:
                why += f" (switching for {(now - view.since_s) / 60.0:.0f} min)"
            run.result.deferred[name] = "; ".join([*notes, why])
        elif notes:
            run.result.deferred[name] = "; ".join(notes)

    def _taint_follows_label(self, run: _Pass, view: NodeView, *, write: bool) -> bool:
        """A mode label set by hand also gets the taint that mode needs: `ai` or `idle`
        without the mining taint (else AI pods cannot land there), `mine` with it. The
        node stays the operator's otherwise; True when the taint was written."""
        if not write or not (view.override or "").startswith(MODE_LABEL):
            return False
        want = view.mode_label == Mode.MINE.label
        if view.mode_label not in {m.label for m in Mode} or view.tainted == want:
            return False
        if self._may_write(run) is not None:
            return False
        others = [dict(t) for t in view.taints
                  if not (t.get("key") == MINING_TAINT_KEY
                          and t.get("effect") == MINING_TAINT_EFFECT)]
        patch: Obj = {"metadata": {"resourceVersion": view.resource_version},
                      "spec": {"taints": [*others, dict(MINING_TAINT)] if want else others}}
        try:
            self.kube.patch_node(view.name, patch)
        except ApiError as exc:  # a conflict or a refusal: the next pass tries again
            run.result.errors[view.name] = f"patch failed (taint to match a hand-set label): {exc}"
            return False
        run.result.writes += 1
        return True

    def _may_write(self, run: _Pass) -> str | None:
        """None when a write may go now, else why not."""
        if run.halted is None and self.is_leader is not None and not self.is_leader():
            run.halted = "not the leader: another replica acts"
            run.report.not_leader = True
        if run.halted is not None:
            return run.halted
        if not self.limiter.acquire(run.deadline):
            run.report.rate_limited += 1
            return "rate limited: next pass"
        return None

    def _evict(self, run: _Pass, name: str, step: Step, notes: list[str]) -> None:
        for pod in step.evict:
            refused = self._may_write(run)
            if refused is not None:
                notes.append(refused)
                return
            run.result.writes += 1
            try:
                self.kube.evict_pod(pod.namespace, pod.name, pod.uid or None)
            except ApiError as exc:
                if exc.status == TOO_MANY_REQUESTS:
                    msg = f"eviction of {pod.key} refused by a disruption budget: retry next pass"
                    run.report.refused[pod.key] = exc.message or "429"
                    notes.append(msg)
                elif exc.status in (NOT_FOUND, CONFLICT):
                    notes.append(f"{pod.key} already gone")
                else:
                    run.result.errors[name] = f"eviction of {pod.key} failed: {exc}"
                continue
            run.report.evicted.append(pod.key)
            notes.append(f"evicted {pod.key}")


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """What shadow mode decided and would have done in one cycle."""

    decision_id: str
    now_s: float
    #: node → the step a live controller would take (or the planned change, without a cluster).
    actions: dict[str, str]


class ShadowActuator:
    """`Actuator` for shadow mode: computes and records, writes nothing.

    With a `KubeActuator` it previews against the live cluster (reads only) what each node's
    next step would be; without one it records the plan's changes.
    """

    def __init__(self, actuator: KubeActuator | None = None, *, keep: int = 100) -> None:
        self.actuator = actuator
        self.keep = keep
        self.records: list[ShadowRecord] = []

    def apply(self, plan: Plan, fleet: FleetTable | None = None) -> ActuationResult:
        result = ActuationResult()
        actions: dict[str, str] = {}
        if self.actuator is not None:
            report = self.actuator.preview(targets_from_plan(plan), plan.decision_id)
            for name, step in report.steps.items():
                if step.patch is None and not step.evict:
                    continue
                actions[name] = describe(step)
        else:
            for i in plan.changed:
                cur, tgt = Mode(int(plan.current[i])), Mode(int(plan.target[i]))
                actions[str(plan.node_names[i])] = f"{cur.label} → {tgt.label}"
        result.deferred = {name: f"shadow: would {what}" for name, what in actions.items()}
        self.records.append(ShadowRecord(plan.decision_id, plan.now_s, actions))
        del self.records[: -self.keep]
        return result


def describe(step: Step) -> str:
    """A short human line for a step (shadow records, logs)."""
    parts = []
    if step.patch is not None:
        path = " → ".join(s.name for s in (step.start, *step.path))
        parts.append(f"patch {path}")
    if step.evict:
        parts.append("evict " + ", ".join(p.key for p in step.evict))
    if step.waiting:
        parts.append(f"then wait: {step.waiting}")
    return "; ".join(parts) or "nothing"


def miner_daemonset_manifest(
    config: KubernetesConfig,
    image: str,
    *,
    args: Sequence[str] = (),
    wallet_secret: str | None = None,
    gpus: int = 0,
    node_selector: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """The miner DaemonSet: runs on `mode=mine` nodes and tolerates the mining taint.

    The chart renders the same object; a controller may create it when absent
    (`ensure_miner_daemonset`). `wallet_secret` names a Secret whose keys become env vars.
    """
    if config.miner_daemonset is None:
        raise ValueError("kubernetes.miner_daemonset is None: no miner DaemonSet is managed")
    name = config.miner_daemonset
    pod_labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "hashpivot"}
    container: Obj = {"name": "miner", "image": image, "args": list(args)}
    if wallet_secret:
        container["envFrom"] = [{"secretRef": {"name": wallet_secret}}]
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": {**pod_labels, **(labels or {})},
        },
        "spec": {
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "nodeSelector": {MODE_LABEL: Mode.MINE.label, **(node_selector or {})},
                    "tolerations": [
                        {
                            "key": MINING_TAINT_KEY,
                            "operator": "Exists",
                            "effect": MINING_TAINT_EFFECT,
                        }
                    ],
                    "containers": [container],
                    # A miner stops at once: nothing to checkpoint, the node waits for it.
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }


def ensure_miner_daemonset(kube: KubeOps, body: Obj) -> bool:
    """Create the miner DaemonSet unless it exists (the chart may own it). True if created."""
    namespace = str(body["metadata"]["namespace"])
    name = str(body["metadata"]["name"])
    try:
        kube.get_daemonset(namespace, name)
        return False
    except ApiError as exc:
        if exc.status != NOT_FOUND:
            raise
    try:
        kube.create_daemonset(namespace, body)
    except ApiError as exc:
        if exc.status == CONFLICT:  # created meanwhile by another replica
            return False
        raise
    return True
