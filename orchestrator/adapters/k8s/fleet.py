"""The fleet as the cluster tells it: managed nodes, their modes and the AI pods on them."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.adapters.k8s.objects import (
    GPU_PRODUCT_LABEL,
    NodeView,
    PodView,
    mode_of,
    name_of,
    node_view,
    pod_view,
)
from orchestrator.adapters.k8s.watch import NodeSource, PodSource
from orchestrator.models.config import KubernetesConfig
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import HardwareKind, HardwareProfile
from orchestrator.models.modes import Mode, NodeState
from orchestrator.models.site import Site

log = logging.getLogger("hashpivot.k8s.fleet")


@dataclass(frozen=True, slots=True)
class PodsByNode:
    """Pods bound to nodes, split into tenants' AI pods and the miner's pods."""

    ai: Mapping[str, list[PodView]]
    miner: Mapping[str, list[PodView]]


def group_pods(pods: Iterable[PodView], config: KubernetesConfig) -> PodsByNode:
    ai: dict[str, list[PodView]] = defaultdict(list)
    miner: dict[str, list[PodView]] = defaultdict(list)
    for pod in pods:
        if not pod.node or pod.finished:
            continue
        if (
            config.miner_daemonset is not None
            and pod.daemonset == config.miner_daemonset
            and pod.namespace == config.namespace
        ):
            miner[pod.node].append(pod)
        elif pod.is_ai:
            ai[pod.node].append(pod)
    return PodsByNode(ai=dict(ai), miner=dict(miner))


def profile_name_of(labels: Mapping[str, str], config: KubernetesConfig) -> str | None:
    """The node's profile label, else its GPU product mapped by `gpu_product_profiles`."""
    named = labels.get(config.profile_label)
    if named:
        return named
    product = labels.get(GPU_PRODUCT_LABEL)
    return config.gpu_product_profiles.get(product) if product else None


class KubeFleetSource:
    """`FleetSource` over watched (or listed) nodes and pods.

    Nodes whose profile cannot be found are left out of the table (they cannot be valued)
    and named in `skipped`.
    """

    def __init__(
        self,
        nodes: NodeSource,
        pods: PodSource,
        config: KubernetesConfig,
        profiles: Mapping[str, HardwareProfile] | Sequence[HardwareProfile],
        sites: Sequence[Site] = (),
    ) -> None:
        self._nodes = nodes
        self._pods = pods
        self.config = config
        self.profiles: dict[str, HardwareProfile] = (
            dict(profiles) if isinstance(profiles, Mapping) else {p.name: p for p in profiles}
        )
        self.sites = tuple(sites) or (Site(),)
        self.skipped: dict[str, str] = {}

    def fleet(self, now_s: float) -> FleetTable:
        config = self.config
        grouped = group_pods((pod_view(p, config) for p in self._pods.pods()), config)
        rows: list[tuple[NodeView, HardwareProfile, int, list[PodView]]] = []
        skipped: dict[str, str] = {}
        site_index = {s.name: i for i, s in enumerate(self.sites)}
        for node in sorted(self._nodes.nodes(), key=name_of):
            name = name_of(node)
            ai_pods = grouped.ai.get(name, [])
            view = node_view(node, config, has_ai_pods=bool(ai_pods))
            pname = profile_name_of(view.labels, config)
            profile = self.profiles.get(pname) if pname else None
            if profile is None:
                product = view.labels.get(GPU_PRODUCT_LABEL)
                if pname:
                    skipped[name] = f"unknown hardware profile {pname!r}"
                elif product:
                    skipped[name] = f"GPU product {product!r} is not in gpu_product_profiles"
                else:
                    skipped[name] = f"no {config.profile_label} or {GPU_PRODUCT_LABEL} label"
                continue
            site_name = view.labels.get(config.site_label)
            site = site_index.get(site_name, 0) if site_name else 0
            rows.append((view, profile, site, ai_pods))
        if skipped.keys() != self.skipped.keys():
            for name, why in skipped.items():
                log.warning("node %s left out of the fleet: %s", name, why)
        self.skipped = skipped
        return self._table(rows, now_s)

    def _table(
        self,
        rows: list[tuple[NodeView, HardwareProfile, int, list[PodView]]],
        now_s: float,
    ) -> FleetTable:
        used = sorted({p.name for _, p, _, _ in rows})
        profiles = [self.profiles[n] for n in used]
        index = {n: i for i, n in enumerate(used)}
        n = len(rows)
        states = np.zeros(n, dtype=np.int8)
        modes = np.zeros(n, dtype=np.int8)
        since = np.zeros(n)
        lease = np.zeros(n)
        busy = np.zeros(n)
        interruptible = np.ones(n, dtype=bool)
        opt_out = np.zeros(n, dtype=bool)
        ready = np.ones(n, dtype=bool)
        gpus = np.zeros(n)
        for i, (view, profile, _, ai_pods) in enumerate(rows):
            state = view.state
            if profile.kind == HardwareKind.ASIC and mode_of(state) == Mode.AI:
                state = NodeState.IDLE  # mislabelled: an ASIC cannot serve AI
            states[i] = state
            modes[i] = mode_of(state)
            since[i] = view.since_s or 0.0
            active = [p for p in ai_pods if not p.finished]
            busy[i] = sum(p.gpus for p in active)
            lease[i] = max((p.lease_until for p in active), default=0.0)
            interruptible[i] = all(p.interruptible for p in active)
            opt_out[i] = view.opt_out
            ready[i] = view.ready
            gpus[i] = view.gpus if view.gpus is not None else float(profile.gpus)
        table = FleetTable.build(
            profiles,
            self.sites,
            [index[p.name] for _, p, _, _ in rows],
            names=[v.name for v, _, _, _ in rows],
            node_sites=[s for _, _, s, _ in rows],
            modes=modes,
        )
        return table.with_columns(
            state=states,
            since=since,
            lease_until=lease,
            ai_gpus_busy=busy,
            ai_interruptible=interruptible,
            opt_out=opt_out,
            reachable=ready,
            gpus=np.where(table.is_asic(), 0.0, gpus),
        )
