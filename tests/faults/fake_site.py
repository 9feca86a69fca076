"""A four-node GPU site on the in-memory Kubernetes API (`FakeKube`), decided by the real
`DecisionCycle` (journal, guards, `KubeActuator`) on a test clock.

For faults that do not need a real control plane (feeds, clocks, disks): every pass is
one call, so the scenario is exact. A tiny "scheduler" binds pending tenants to nodes
whose mode is AI and that carry no mining taint; `run_daemonset_controller` does the
miner's DaemonSet. `observe()` samples draw and states into a `NodeHistory`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.adapters.k8s import KubeActuator, KubeDemandSource, KubeFleetSource
from orchestrator.adapters.k8s.objects import (
    DECISION_ANNOTATION,
    GPU_RESOURCE,
    MINING_TAINT,
    MINING_TAINT_KEY,
    MODE_LABEL,
    SINCE_ANNOTATION,
    STATE_ANNOTATION,
    TARGET_ANNOTATION,
    format_time,
    labels_of,
    pod_gpus,
)
from orchestrator.adapters.k8s.watch import ListingSource
from orchestrator.framework.registry import load_policy
from orchestrator.models.build import profile_catalog
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.market import MarketSnapshot, Observed
from orchestrator.ports import MarketSource
from orchestrator.runtime.cycle import CycleDeps, CycleOutcome, DecisionCycle
from orchestrator.runtime.journal import JournalError, JsonlJournal, read_journal
from tests.doubles.k8s import FakeKube
from tests.faults.checks import (
    NodeHistory,
    check_journal,
    check_leases,
    planned_power_ok,
)
from tests.faults.ledger import HALF_SWITCHED, POWER_CAP, FaultRun

NS = "hashpivot"
MINER = "hashpivot-miner"
MANAGED = {"hashpivot.io/managed": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
SCRIPTED = "tests.faults.scripted:Scripted"
WATTS = {"idle": 1160.0, "mine": 5080.0, "ai": 7100.0}
CAP_KW = 25.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STEP_S = 60.0
SWITCH_TIMEOUT_S = 1800.0


class TestClock:
    """Wall time of the test: moved by the test, jumps included."""

    def __init__(self, t: float = START) -> None:
        self.t = t

    def now_s(self) -> float:
        return self.t


class FixedMarket:
    """A market whose values are always fresh (observed at the moment asked)."""

    def snapshot(self, now_s: float) -> MarketSnapshot:
        at = datetime.fromtimestamp(now_s, UTC)

        def obs(v: float) -> Observed:
            return Observed(value=v, source="fixed", observed_at=at)

        return MarketSnapshot(
            btc_usd=obs(97_000.0),
            difficulty=obs(1.1e14),
            fees_btc_per_block=obs(0.1),
            subsidy_btc=obs(3.125),
            power_usd_mwh={"default": obs(40.0)},
            gpu_usd_per_gpu_hour={"H100_80GB_SXM5": obs(2.0)},
        )

    def history(self, now_s: float) -> Any:
        from orchestrator.framework.context import MarketHistory

        return MarketHistory.empty()


def site_config(**over: Any) -> HashpivotConfig:
    values: dict[str, Any] = {
        "sites": [{"name": "default", "power_cap_kw": CAP_KW}],
        "policy": {"name": SCRIPTED, "params": {}},
        "guards": {"min_dwell_s": 0, "max_fleet_switch_share_per_hour": 1.0,
                   "max_switches_per_node_per_day": 1000},
        "controller": {"mode": "live"},
        "kubernetes": {"namespace": NS, "miner_daemonset": MINER,
                       "switch_timeout_s": SWITCH_TIMEOUT_S},
    }
    values.update(over)
    return HashpivotConfig(**values)


class FakeSite:
    def __init__(
        self,
        tmp: Path,
        *,
        market: MarketSource | None = None,
        config: HashpivotConfig | None = None,
        modes: tuple[str, ...] = ("mine", "mine", "mine", "mine"),
        clock: TestClock | None = None,
    ) -> None:
        self.kube = FakeKube()
        self.clock = clock or TestClock()
        self.config = config or site_config()
        self.names = [f"n{i}" for i in range(len(modes))]
        for name, mode in zip(self.names, modes, strict=True):
            self.kube.add_node(name, labels=MANAGED, gpus=8)
            self.settle(name, mode)
        self.kube.run_daemonset_controller(NS, MINER)
        k8s = self.config.kubernetes
        listing = ListingSource(self.kube, k8s)
        catalog = profile_catalog(self.config)
        self.actuator = KubeActuator(self.kube, k8s, nodes=listing, pods=listing,
                                     clock=self.clock.now_s, settle_s=0.0)
        self.folder = tmp / "journal"
        self.journal = JsonlJournal(self.folder)
        self.deps = CycleDeps(
            clock=self.clock,
            market=market or FixedMarket(),
            demand=KubeDemandSource(listing, k8s, catalog),
            fleet=KubeFleetSource(listing, listing, k8s, catalog, self.config.sites),
            actuator=self.actuator,
            journal=self.journal,
        )
        self.cycle = DecisionCycle(self.config, "live", load_policy(SCRIPTED, {}), self.deps)
        self.history = NodeHistory(WATTS, CAP_KW * 1000.0)
        #: Time as the site lives it (never jumps): what half-switched spans are timed by.
        self.elapsed = 0.0
        self.cycles = 0
        self.journal_failures = 0
        self.protected: set[str] = set()
        self.observe()

    # -- the world -------------------------------------------------------------------------

    def settle(self, name: str, mode: str) -> None:
        state = {"mine": "MINING", "ai": "AI", "idle": "IDLE"}[mode]

        def mutate(node: dict[str, Any]) -> None:
            node["metadata"]["labels"][MODE_LABEL] = mode
            node["metadata"]["annotations"].update({
                STATE_ANNOTATION: state, TARGET_ANNOTATION: mode,
                SINCE_ANNOTATION: format_time(self.clock.now_s() - 7200),
                DECISION_ANNOTATION: "setup",
            })
            others = [t for t in node["spec"]["taints"] if t.get("key") != MINING_TAINT_KEY]
            node["spec"]["taints"] = others + ([] if mode == "ai" else [dict(MINING_TAINT)])

        self.kube.set_node(name, mutate)

    def tenant(self, name: str, *, gpus: int = 4, interruptible: bool = True,
               lease_h: float | None = None, node: str | None = None) -> None:
        labels = {"hashpivot.io/interruptible": "true"} if interruptible else {}
        notes = {}
        if lease_h is not None:
            notes["hashpivot.io/lease-until"] = format_time(self.clock.now_s() + lease_h * 3600)
        if not interruptible or lease_h is not None:
            self.protected.add(name)
        self.kube.add_pod("t", name, gpus=gpus, node=node, labels=labels, annotations=notes)

    def finish(self, name: str) -> None:
        self.kube.delete_pod("t", name)

    def schedule(self) -> None:
        """Bind pending tenants to AI nodes without the mining taint, first fit."""
        for key, pod in sorted(self.kube.pods.items()):
            if pod["spec"].get("nodeName") or not key.startswith("t/"):
                continue
            need = pod_gpus(pod)
            for name in self.names:
                node = self.kube.nodes[name]
                tainted = any(t.get("key") == MINING_TAINT_KEY for t in node["spec"]["taints"])
                if labels_of(node).get(MODE_LABEL) != "ai" or tainted:
                    continue
                used = sum(pod_gpus(p) for p in self.kube.pods.values()
                           if p["spec"].get("nodeName") == name and p["metadata"]["namespace"]
                           == "t")
                if used + need <= float(node["status"]["allocatable"][GPU_RESOURCE]):
                    ns, pname = key.split("/", 1)
                    self.kube.set_pod(ns, pname, lambda p, n=name: (
                        p["spec"].__setitem__("nodeName", n),
                        p["status"].__setitem__("phase", "Running")))
                    break

    def states(self) -> dict[str, str | None]:
        return {n: self.kube.nodes[n]["metadata"]["annotations"].get(STATE_ANNOTATION)
                for n in self.names}

    def running(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for pod in self.kube.pods.values():
            node = pod["spec"].get("nodeName")
            if node and pod["metadata"]["namespace"] == "t":
                out.setdefault(node, []).append(pod["metadata"]["name"])
        return out

    def observe(self) -> None:
        miners = {p["spec"]["nodeName"] for p in self.kube.pods.values()
                  if p["metadata"].get("ownerReferences") and p["spec"].get("nodeName")}
        self.history.observe(self.elapsed, self.states(), miners, set(self.running()))

    def world(self) -> None:
        """What the cluster does by itself between passes: the DaemonSet, the scheduler."""
        self.kube.run_daemonset_controller(NS, MINER)
        self.schedule()
        self.observe()

    # -- the controller --------------------------------------------------------------------

    def use_policy(self, policy: Any) -> None:
        """Decide with `policy` from the next cycle on (wherever the cycle keeps it: a
        cycle may hand its policy to the decision step it runs)."""
        self.cycle.policy = policy
        step = getattr(self.cycle, "step", None)
        if step is not None:
            step.policy = policy

    def want(self, mode: str | None = None, **targets: str) -> None:
        self.use_policy(load_policy(SCRIPTED, {"mode": mode, "targets": targets}))

    def step(self, count: int = 1, dt: float = STEP_S) -> list[CycleOutcome]:
        """`count` cycles, `dt` apart, each followed by the cluster's reaction and a
        reconcile pass (as the controller's loop does between cycles)."""
        outcomes = []
        for _ in range(count):
            self.clock.t += dt
            self.elapsed += dt
            try:
                outcomes.append(self.cycle.run_once())
                self.cycles += 1
            except JournalError:
                self.journal_failures += 1  # the controller skips the cycle: nothing acted
            self.world()
            self.actuator.reconcile()
            self.world()
        return outcomes

    def run_until(self, done: Any, what: str, limit: int = 60, dt: float = STEP_S) -> int:
        for i in range(limit):
            if done():
                return i
            self.step(dt=dt)
        raise AssertionError(f"not {what} after {limit} cycles: states {self.states()}, "
                             f"tenants {self.running()}")

    # -- invariants ------------------------------------------------------------------------

    def check(self, run: FaultRun, *, torn_allowed: int = 0) -> None:
        records = list(read_journal(self.folder))
        planned_ok, planned = planned_power_ok(records, CAP_KW)
        seen_ok, seen = self.history.power()
        run.check(POWER_CAP, planned_ok and seen_ok, f"{planned}; {seen}")
        evicted = [k.split("/", 1)[1] for k in self.kube.evictions]
        check_leases(run, self.protected, evicted)
        ok, detail = self.history.half_switched(self.elapsed, SWITCH_TIMEOUT_S)
        run.check(HALF_SWITCHED, ok, detail)
        decisions = [self.kube.nodes[n]["metadata"]["annotations"].get(DECISION_ANNOTATION)
                     for n in self.names]
        check_journal(run, self.folder, cycles=self.cycles, torn_allowed=torn_allowed,
                      decisions_on_nodes=[d for d in decisions if d])
