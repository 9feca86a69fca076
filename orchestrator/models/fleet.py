"""The columnar fleet table: one numpy column per attribute, one row per node.

A 1M-node fleet is a few dozen MB of arrays, not a million objects. Per-profile facts
(switching times, wear) live in the profile list and are looked up by index, so
policies and the engine work in whole-array operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.models.base import read_only_view
from orchestrator.models.hardware import SHA256, HardwareKind, HardwareProfile
from orchestrator.models.modes import STEADY_STATE_OF_MODE, Mode
from orchestrator.models.site import Site

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

NO_GPU_MODEL = -1


@dataclass(frozen=True, slots=True)
class FleetStatics:
    """Per-node facts derived from profiles and sites, computed once per fleet layout.

    Every decision cycle needs them; deriving them again each cycle is pure overhead.
    Arrays are read-only.
    """

    pool_fee: F64
    platform_fee: F64
    adder_usd_mwh: F64
    #: Seconds to stop each mode's workload / to start it, (3 modes, n).
    stop_s: F64
    start_s: F64
    wear_usd: F64
    is_gpu: B
    #: Per-site cap, W (inf: none).
    site_cap_w: F64
    #: Indices of GPU nodes (AI-capable), so AI terms are computed on those rows only.
    gpu_rows: npt.NDArray[np.intp]
    #: Full-load watts per mode, (3, n): what the power cap counts.
    watts_by_mode: F64
    #: Hours down when switching, per profile, from mode to mode (profiles, 3, 3): the old
    #: workload's stop time plus the new one's start time. Worked out once per profile so
    #: the score table does not divide per node and mode.
    downtime_h: F64

    @staticmethod
    def of(
        profile: I32,
        site: I32,
        gpu_model: I32,
        profiles: tuple[HardwareProfile, ...],
        sites: tuple[Site, ...],
        watts: tuple[F64, F64, F64],
    ) -> FleetStatics:
        def per_profile(attr: str) -> F64:
            table = np.array([float(getattr(p, attr)) for p in profiles], dtype=np.float64)
            return table[profile] if profiles else np.zeros(profile.shape[0])

        def per_site(attr: str) -> F64:
            table = np.array([float(getattr(x, attr)) for x in sites], dtype=np.float64)
            return table[site]

        def profile_table(attr: str) -> F64:
            return np.array([float(getattr(p, attr)) for p in profiles], dtype=np.float64)

        zeros = np.zeros(profile.shape[0])
        no_time = np.zeros(len(profiles))
        stop_by_profile = np.stack(
            [no_time, profile_table("mine_stop_s"), profile_table("ai_drain_s")], axis=1
        )
        start_by_profile = np.stack(
            [no_time, profile_table("mine_start_s"), profile_table("ai_start_s")], axis=1
        )
        is_gpu = np.not_equal(gpu_model, NO_GPU_MODEL)
        idle_w, mine_w, ai_w = watts
        out = FleetStatics(
            pool_fee=per_site("pool_fee"),
            platform_fee=per_site("ai_platform_fee"),
            adder_usd_mwh=per_site("tariff_adder_usd_mwh"),
            stop_s=np.stack([zeros, per_profile("mine_stop_s"), per_profile("ai_drain_s")]),
            start_s=np.stack([zeros, per_profile("mine_start_s"), per_profile("ai_start_s")]),
            wear_usd=per_profile("wear_usd_per_switch"),
            is_gpu=is_gpu,
            site_cap_w=np.array(
                [x.power_cap_kw * 1000.0 if x.power_cap_kw else np.inf for x in sites],
                dtype=np.float64,
            ),
            gpu_rows=np.flatnonzero(is_gpu),
            watts_by_mode=np.stack([idle_w, mine_w, np.where(is_gpu, ai_w, 0.0)]),
            downtime_h=(stop_by_profile[:, :, None] + start_by_profile[:, None, :]) / 3600.0,
        )
        for f in fields(out):
            getattr(out, f.name).flags.writeable = False
        return out


# Not slotted: a table derived from another (every backtest step makes one or two) is a
# copy of the instance dict, not 25 frozen-attribute writes.
@dataclass(frozen=True)
class FleetTable:
    """Nodes as columns. Build with `FleetTable.build`; change with `with_columns`."""

    names: npt.NDArray[np.object_]
    profile: I32
    site: I32
    #: Mining rate in the algorithm's unit (measured when telemetry has it, else nameplate).
    hashrate: F64
    hashrate_measured: B
    watts_mine: F64
    watts_ai: F64
    watts_idle: F64
    gpus: F64
    gpu_model: I32
    algorithm: I32
    #: The mode the node is committed to (its label).
    mode: I8
    #: Lifecycle state (`NodeState`): steady or on the way to `mode`.
    state: I8
    #: When `mode` last changed, seconds since epoch.
    since: F64
    #: End of a protected AI lease, seconds since epoch (0: none).
    lease_until: F64
    #: GPUs held by running AI pods.
    ai_gpus_busy: F64
    #: True when every AI pod on the node may be evicted.
    ai_interruptible: B
    #: Operator opt-out or manual override: hashpivot leaves the node alone.
    opt_out: B
    #: False when the node (or miner) did not answer: it is not counted as headroom.
    reachable: B
    profiles: tuple[HardwareProfile, ...] = field(default=())
    sites: tuple[Site, ...] = field(default=())
    gpu_models: tuple[str, ...] = field(default=())
    algorithms: tuple[str, ...] = field(default=(SHA256,))
    _statics: FleetStatics | None = field(default=None, repr=False, compare=False)
    #: Every column is a read-only array: `read_only()` has nothing to do. Not an init
    #: field, so a table made any other way (`dataclasses.replace` included) starts False.
    _read_only: bool = field(default=False, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.profile.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        # Unpickled arrays are writable again: a copy must not claim to be read-only.
        return {**self.__dict__, "_read_only": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def n(self) -> int:
        return int(self.profile.shape[0])

    @staticmethod
    def build(
        profiles: Sequence[HardwareProfile],
        sites: Sequence[Site],
        node_profiles: npt.ArrayLike,
        *,
        names: Sequence[str] | None = None,
        node_sites: npt.ArrayLike | None = None,
        modes: npt.ArrayLike | None = None,
        since_s: float = 0.0,
    ) -> FleetTable:
        """A fleet of nodes at nameplate values, all steady in `modes` (default idle)."""
        profiles = tuple(profiles)
        sites = tuple(sites) or (Site(),)
        prof = np.asarray(node_profiles, dtype=np.int32)
        n = prof.shape[0]
        if n and (prof.min() < 0 or prof.max() >= len(profiles)):
            raise ValueError("node profile index out of range")
        algorithms = tuple(dict.fromkeys([SHA256, *(p.mine_algorithm for p in profiles)]))
        gpu_models = tuple(dict.fromkeys(p.gpu_model for p in profiles if p.gpu_model))
        p_hash = np.array([p.mine_hashrate for p in profiles], dtype=np.float64)
        p_wm = np.array([p.watts_mine for p in profiles], dtype=np.float64)
        p_wa = np.array([p.watts_ai for p in profiles], dtype=np.float64)
        p_wi = np.array([p.watts_idle for p in profiles], dtype=np.float64)
        p_gpus = np.array([p.gpus for p in profiles], dtype=np.float64)
        p_gm = np.array(
            [gpu_models.index(p.gpu_model) if p.gpu_model else NO_GPU_MODEL for p in profiles],
            dtype=np.int32,
        )
        p_alg = np.array([algorithms.index(p.mine_algorithm) for p in profiles], dtype=np.int32)
        mode = (
            np.zeros(n, dtype=np.int8) if modes is None else np.asarray(modes, dtype=np.int8).copy()
        )
        if n and (mode.min() < 0 or mode.max() > max(Mode)):
            raise ValueError("node mode out of range")
        asic = np.array([p.kind == HardwareKind.ASIC for p in profiles])
        if n and np.any(asic[prof] & (mode == Mode.AI)):
            raise ValueError("an ASIC node cannot be in AI mode")
        state_of_mode = np.array([STEADY_STATE_OF_MODE[m] for m in Mode], dtype=np.int8)
        site_idx = (
            np.zeros(n, dtype=np.int32)
            if node_sites is None
            else np.asarray(node_sites, dtype=np.int32).copy()
        )
        if n and (site_idx.min() < 0 or site_idx.max() >= len(sites)):
            raise ValueError("node site index out of range")
        if names is None:
            name_arr = np.array([f"node-{i:07d}" for i in range(n)], dtype=object)
        else:
            name_arr = np.array(list(names), dtype=object)
            if name_arr.shape[0] != n:
                raise ValueError("names and node_profiles differ in length")
        return FleetTable(
            names=name_arr,
            profile=prof.copy(),
            site=site_idx,
            hashrate=p_hash[prof],
            hashrate_measured=np.zeros(n, dtype=bool),
            watts_mine=p_wm[prof],
            watts_ai=p_wa[prof],
            watts_idle=p_wi[prof],
            gpus=p_gpus[prof],
            gpu_model=p_gm[prof],
            algorithm=p_alg[prof],
            mode=mode,
            state=state_of_mode[mode],
            since=np.full(n, since_s, dtype=np.float64),
            lease_until=np.zeros(n, dtype=np.float64),
            ai_gpus_busy=np.zeros(n, dtype=np.float64),
            ai_interruptible=np.ones(n, dtype=bool),
            opt_out=np.zeros(n, dtype=bool),
            reachable=np.ones(n, dtype=bool),
            profiles=profiles,
            sites=sites,
            gpu_models=gpu_models,
            algorithms=algorithms,
        )

    @property
    def statics(self) -> FleetStatics:
        """Derived per-node facts (fees, switching times, caps), cached with the layout."""
        if self._statics is None:
            object.__setattr__(
                self,
                "_statics",
                FleetStatics.of(
                    self.profile,
                    self.site,
                    self.gpu_model,
                    self.profiles,
                    self.sites,
                    (self.watts_idle, self.watts_mine, self.watts_ai),
                ),
            )
        assert self._statics is not None
        return self._statics

    def with_columns(self, **columns: Any) -> FleetTable:
        """A new table sharing every column but the ones given (which must keep the length)."""
        n = self.n
        read_only = self._read_only
        for name, value in columns.items():
            if name not in _COLUMNS:
                raise TypeError(f"FleetTable has no column {name!r}")
            if isinstance(value, np.ndarray):
                if value.shape[0] != n:
                    raise ValueError(f"column {name} has {value.shape[0]} rows, fleet has {n}")
                read_only = read_only and not value.flags.writeable
            elif name in _ARRAY_FIELDS:
                read_only = False
        if _LAYOUT_COLUMNS.intersection(columns):
            columns["_statics"] = None
        columns["_read_only"] = read_only
        return self._evolve(columns)

    def read_only(self) -> FleetTable:
        """Views of every column that cannot be written: what policies receive."""
        if self._read_only:
            return self
        views: dict[str, Any] = {"_statics": self.statics, "_read_only": True}
        for name in _ARRAY_FIELDS:
            column = getattr(self, name)
            view = read_only_view(column)
            if view is not column:  # columns already read-only are shared as they are
                views[name] = view
        return self._evolve(views)

    def _evolve(self, changes: dict[str, Any]) -> FleetTable:
        # dataclasses.replace re-inspects the fields and runs __init__ on every call.
        new = object.__new__(FleetTable)
        fields_of_new = new.__dict__
        fields_of_new.update(self.__dict__)
        fields_of_new.update(changes)
        return new

    def profile_column(self, attribute: str) -> F64:
        """A per-node float column from a profile attribute (e.g. 'mine_hashrate')."""
        table = np.array([float(getattr(p, attribute)) for p in self.profiles], dtype=np.float64)
        return table[self.profile]

    def index_of(self, name: str) -> int:
        hits = np.flatnonzero(self.names == name)
        if hits.size == 0:
            raise KeyError(name)
        return int(hits[0])

    def is_asic(self) -> B:
        """True for ASIC miners, False for GPU nodes."""
        return ~self.statics.is_gpu

    def efficiency_j_per_unit(self) -> F64:
        """Energy per unit of hashrate when mining, J per unit (J/TH for SHA-256 ASICs;
        per the algorithm's unit for GPUs); inf where a node cannot mine."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(self.hashrate > 0, self.watts_mine / self.hashrate, np.inf)
        return out.astype(np.float64)

    def switch_hours(self, target: npt.ArrayLike) -> F64:
        """Hours each node would be out of service moving from its current mode to
        `target` (one mode for all, or one per node): stop plus start time; 0 where the
        target is the current mode."""
        to = np.broadcast_to(np.asarray(target, dtype=np.intp), (self.n,))
        hours = self.statics.downtime_h[self.profile, self.mode.astype(np.intp), to]
        return np.where(to == self.mode, 0.0, hours).astype(np.float64)

    def site_power_cap_w(self) -> F64:
        """Per-site cap in W (inf where uncapped), aligned with `sites`."""
        return self.statics.site_cap_w


_FIELDS = tuple(f.name for f in fields(FleetTable))
_COLUMNS = frozenset(_FIELDS) - {"_read_only"}
_LOOKUP_FIELDS = frozenset(
    {"profiles", "sites", "gpu_models", "algorithms", "_statics", "_read_only"}
)
_ARRAY_FIELDS = tuple(name for name in _FIELDS if name not in _LOOKUP_FIELDS)
_LAYOUT_COLUMNS = frozenset(
    {"profile", "site", "gpu_model", "profiles", "sites", "watts_idle", "watts_mine", "watts_ai"}
)
