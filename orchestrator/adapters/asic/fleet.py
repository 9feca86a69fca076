"""Miners as fleet-table rows, one table with the GPU nodes, and plans back to miners.

Pure functions, no I/O:

- `asic_fleet`: statuses → `FleetTable` rows. Measured hashrate and watts replace the
  catalog's nameplate where the miner reported them (`hashrate_measured`, and
  `AsicFleetView.watts_measured`, say which); otherwise nameplate stays, flagged. A
  sleeping miner keeps the figures it last showed while hashing, so a worn miner is
  restored after healthy ones.
  Unreachable miners count as mining at full draw and are marked unreachable, so the
  engine leaves them alone and never counts their power as headroom. A miner whose model
  maps to no profile is never left out: it stays at its last known draw (else what it
  reports, else the largest nameplate draw of the catalog's ASICs), opted out of
  commands, and is listed in `unknown_models`; every unreachable one in `unreadable`.
  A configured miner that has not answered since the controller started is a row too:
  at its range's profile or model's nameplate, else the largest nameplate draw of the
  catalog's ASICs, unreachable (so never commanded), and listed in `unreadable`.
- `concat_fleets`: GPU nodes and miners in one table, under one cap per site.
- `plan_subset`: the rows of a plan an actuator owns.
- `miner_targets`: a plan's targets for the miners, with value per watt for ramp order
  and the power headroom each site has for resumptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.adapters.asic.readings import adhoc_profile, profile_for_model
from orchestrator.adapters.asic.site import MinerStatus, MinerTarget
from orchestrator.engine.plan import Plan
from orchestrator.engine.scoring import group_cumsum_before
from orchestrator.framework.context import ScoreTable
from orchestrator.models.fleet import NO_GPU_MODEL, FleetTable
from orchestrator.models.hardware import HardwareKind, HardwareProfile
from orchestrator.models.modes import Mode
from orchestrator.models.site import Site

B = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AsicFleetView:
    """The miners' rows and what the table cannot say itself."""

    fleet: FleetTable
    #: `watts_mine` (mining) or `watts_idle` (asleep) is the miner's own measurement.
    watts_measured: B
    #: Addresses whose model maps to no profile: kept at a stand-in draw, never commanded.
    unknown_models: dict[str, str]
    statuses: tuple[MinerStatus, ...]
    #: Addresses that could not be read this cycle → why (counted at full draw).
    unreadable: dict[str, str] = field(default_factory=dict)


def asic_fleet(
    statuses: Sequence[MinerStatus],
    sites: Sequence[Site],
    catalog: dict[str, HardwareProfile],
    *,
    model_profiles: dict[str, str] | None = None,
    curtailed_watts: float = 15.0,
) -> AsicFleetView:
    """Fleet rows of the miners (module docstring), ordered as given."""
    rows: list[MinerStatus] = []
    used: list[HardwareProfile] = []
    prof_idx: list[int] = []
    unknown: dict[str, str] = {}
    adhoc: dict[str, HardwareProfile] = {}
    for st in statuses:
        r = st.reading
        name = st.profile or profile_for_model(r.make, r.model, model_profiles)
        profile = catalog.get(name) if name else None
        if profile is None:
            made = adhoc_profile(r)
            if made is None:
                made = stand_in_profile(st, catalog)
                # One that never answered is unreadable: its model is unsaid, not unknown.
                if st.answered:
                    unknown[r.address] = (
                        f"no hardware profile for model {r.label!r}: counted at "
                        f"{made.watts_mine:.0f} W while it mines, never commanded"
                    )
            profile = adhoc.setdefault(made.name, made)
        if profile not in used:
            used.append(profile)
        prof_idx.append(used.index(profile))
        rows.append(st)
    site_index = {s.name: i for i, s in enumerate(sites)}
    fleet = FleetTable.build(
        used, sites, np.array(prof_idx, dtype=np.int32),
        names=[st.reading.address for st in rows],
        node_sites=np.array([site_index[st.site] for st in rows], dtype=np.int32),
        modes=np.array([Mode.MINE if st.mining else Mode.IDLE for st in rows], dtype=np.int8),
    )
    n = len(rows)
    hashrate = fleet.hashrate.copy()
    hash_measured = np.zeros(n, dtype=bool)
    watts_mine = fleet.watts_mine.copy()
    watts_idle = fleet.watts_idle.copy()
    watts_measured = np.zeros(n, dtype=bool)
    reachable = np.ones(n, dtype=bool)
    opt_out = np.zeros(n, dtype=bool)
    since = np.zeros(n)
    for i, st in enumerate(rows):
        r = st.reading
        since[i] = st.since_s
        reachable[i] = r.reachable
        # Protected miners may be resumed, never curtailed: opted out while they mine.
        # A miner of unknown model is not commanded: its worth per watt is unknown.
        opt_out[i] = st.opt_out or (st.protected and st.mining) or r.address in unknown
        # Mining figures: measured now, else last measured while hashing, else nameplate.
        if st.hashing_ths:
            hashrate[i] = st.hashing_ths
            hash_measured[i] = True
        if st.hashing_w:
            watts_mine[i] = st.hashing_w
            watts_measured[i] = bool(st.mining)
        if not r.reachable or st.pending is not None:
            continue  # no reading, or one taken before the command took effect
        if st.mining and r.hashing:
            if r.hashrate_ths:
                hashrate[i] = r.hashrate_ths
                hash_measured[i] = True
            if r.watts:
                watts_mine[i] = r.watts
                watts_measured[i] = True
        elif not st.mining:
            watts_idle[i] = r.watts if r.watts is not None else curtailed_watts
            watts_measured[i] = r.watts is not None
    watts_idle = np.minimum(watts_idle, watts_mine)
    fleet = fleet.with_columns(
        hashrate=hashrate, hashrate_measured=hash_measured, watts_mine=watts_mine,
        watts_idle=watts_idle, reachable=reachable, opt_out=opt_out, since=since,
    )
    unreadable = {st.reading.address: st.reading.error or "unreadable"
                  for st in rows if not st.reading.reachable}
    for i, st in enumerate(rows):
        if not st.answered:
            unreadable[st.reading.address] += (
                f"; nameplate {used[prof_idx[i]].name}, {watts_mine[i]:.0f} W")
    return AsicFleetView(fleet, watts_measured, unknown, tuple(rows), unreadable)


def stand_in_profile(st: MinerStatus, catalog: dict[str, HardwareProfile]) -> HardwareProfile:
    """A profile for a miner no profile fits and whose own figures do not make one: its
    last draw measured while hashing, else the draw it reports, else the largest ASIC
    nameplate of the catalog, so the power cap never counts it as less than it may be."""
    r = st.reading
    asics = [p for p in catalog.values() if p.kind == HardwareKind.ASIC]
    largest = max(asics, key=lambda p: p.watts_mine)
    watts = st.hashing_w or r.watts or r.watts_limit or largest.watts_mine
    rate = st.hashing_ths or r.hashrate_ths or r.expected_hashrate_ths or largest.mine_hashrate
    return HardwareProfile(
        name=f"asic-unknown-{watts:.0f}w-{rate:.0f}th", kind=HardwareKind.ASIC, mine_hashrate=rate,
        watts_mine=watts, watts_idle=min(largest.watts_idle, watts),
    )


def concat_fleets(a: FleetTable, b: FleetTable) -> FleetTable:
    """Rows of `a` then `b` in one table. Sites must match by name; lookups are merged."""
    if a.n == 0 and not b.profiles:
        return a
    if [s.name for s in a.sites] != [s.name for s in b.sites]:
        raise ValueError("fleets to join must share their sites, in the same order")
    names = np.concatenate([a.names, b.names])
    if np.unique(names).shape[0] != names.shape[0]:
        raise ValueError("a node name appears in both fleets")
    profiles = tuple(dict.fromkeys([*a.profiles, *b.profiles]))
    gpu_models = tuple(dict.fromkeys([*a.gpu_models, *b.gpu_models]))
    algorithms = tuple(dict.fromkeys([*a.algorithms, *b.algorithms]))

    def remap(values: npt.NDArray[np.int32], old: Sequence[object],
              new: Sequence[object]) -> npt.NDArray[np.int32]:
        table = np.array([list(new).index(x) for x in old] or [0], dtype=np.int32)
        return np.where(values >= 0, table[np.maximum(values, 0)], values).astype(np.int32)

    def gm(t: FleetTable) -> npt.NDArray[np.int32]:
        return np.where(t.gpu_model == NO_GPU_MODEL, NO_GPU_MODEL,
                        remap(t.gpu_model, t.gpu_models, gpu_models)).astype(np.int32)

    columns: dict[str, Any] = {}
    for f in ("hashrate", "hashrate_measured", "watts_mine", "watts_ai", "watts_idle", "gpus",
              "mode", "state", "since", "lease_until", "ai_gpus_busy", "ai_interruptible",
              "opt_out", "reachable", "site"):
        columns[f] = np.concatenate([getattr(a, f), getattr(b, f)])
    return FleetTable(
        names=names,
        profile=np.concatenate([remap(a.profile, a.profiles, profiles),
                                remap(b.profile, b.profiles, profiles)]),
        gpu_model=np.concatenate([gm(a), gm(b)]),
        algorithm=np.concatenate([remap(a.algorithm, a.algorithms, algorithms),
                                  remap(b.algorithm, b.algorithms, algorithms)]),
        profiles=profiles, sites=a.sites, gpu_models=gpu_models, algorithms=algorithms,
        **columns,
    )


def plan_subset(plan: Plan, rows: npt.NDArray[np.intp]) -> Plan:
    """The plan restricted to `rows` (site totals stay those of the whole plan)."""
    s = plan.scores
    scores = ScoreTable(
        revenue=s.revenue[:, rows], power_cost=s.power_cost[:, rows], value=s.value[:, rows],
        switch_cost_usd=s.switch_cost_usd[:, rows],
        switch_cost_per_h=s.switch_cost_per_h[:, rows], ai_fill=s.ai_fill[rows],
        watts=s.watts[:, rows], expected_stay_h=s.expected_stay_h,
    )
    return replace(plan, node_names=plan.node_names[rows], current=plan.current[rows],
                   target=plan.target[rows], reason=plan.reason[rows], scores=scores)


def miner_targets(
    plan: Plan, fleet: FleetTable, miners: B
) -> tuple[dict[str, MinerTarget], dict[str, float]]:
    """Targets of the rows in `miners`, and each site's headroom for resumptions, W.

    Headroom = cap − what every other node may draw while it switches (the larger of its
    current and target draw) − what the miners draw now.
    """
    idx = np.arange(fleet.n)
    watts = plan.scores.watts
    mine_w = watts[Mode.MINE]
    delta = np.maximum(mine_w - watts[Mode.IDLE], 0.0)
    priority = plan.scores.value[Mode.MINE] / np.maximum(mine_w, 1.0)
    now_w = watts[fleet.mode, idx]
    others_w = np.maximum(now_w, watts[plan.target, idx])
    draw = np.where(miners, now_w, others_w)
    used = np.bincount(fleet.site, weights=draw, minlength=len(fleet.sites))
    cap = fleet.site_power_cap_w()
    headroom = {site.name: float(cap[j] - used[j]) for j, site in enumerate(fleet.sites)}
    targets = {
        str(fleet.names[i]): MinerTarget(mine=bool(plan.target[i] == Mode.MINE),
                                          priority=float(priority[i]), delta_w=float(delta[i]))
        for i in np.flatnonzero(miners)
    }
    return targets, headroom



def gate_power_increases(plan: Plan, fleet: FleetTable, rows: npt.NDArray[np.intp]) -> B:
    """Which of `rows` must wait: their switch adds power the site does not have yet.

    Miners curtailed for them ramp down over minutes; until their draw is gone (the next
    reading shows it), a GPU node starting AI would push the site over its cap. Rows
    are admitted highest gain first while the power free *now* lasts; the rest wait
    for the next cycle. Returns a mask aligned with `rows`.
    """
    idx = np.arange(fleet.n)
    watts = plan.scores.watts
    now_w = watts[fleet.mode, idx]
    added = watts[plan.target, idx] - now_w
    cap = fleet.site_power_cap_w()
    free = cap - np.bincount(fleet.site, weights=now_w, minlength=cap.shape[0])
    rising = rows[(added[rows] > 0) & (plan.target[rows] != plan.current[rows])]
    hold = np.zeros(rows.shape[0], dtype=bool)
    if rising.size == 0:
        return hold
    gain = plan.scores.gain_per_h(plan.current[rising], plan.target[rising], rising)
    site = fleet.site[rising]
    order = np.lexsort((rising, -gain, site))
    cand, site = rising[order], site[order]
    before = group_cumsum_before(site, added[cand])
    late = cand[before + added[cand] > free[site] + 1e-6]
    hold[np.isin(rows, late)] = True
    return hold
