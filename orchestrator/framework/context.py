"""What a policy sees (`DecisionContext`) and what it returns (`PolicyDecision`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from orchestrator.framework.jit import at_mode, mode_argmax
from orchestrator.models.base import freeze_arrays
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices, ObservedTimes
from orchestrator.models.modes import Mode

F64 = npt.NDArray[np.float64]

#: Half-life of a node's switch count: the per-node budget counts switches over about a day.
SWITCH_LOAD_HALF_LIFE_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ScoreTable:
    """Node × mode values in USD/h, with the terms that made them. Arrays are (3, n).

    `value = revenue − power_cost`. Switching into mode m from the node's current mode
    costs `switch_cost_usd[m]` once, or `switch_cost_per_h[m]` amortized over the
    expected stay; both are 0 for the current mode.
    """

    #: Revenue per mode, USD/h: mining at the hashprice less the pool fee; AI for the GPUs
    #: demand fills, less the platform fee.
    revenue: F64
    #: Power cost per mode, USD/h: the mode's watts at the site's price plus its adders.
    power_cost: F64
    #: Net value per mode, USD/h: `revenue − power_cost`.
    value: F64
    #: One-off cost of switching into each mode from the current one, USD (0 for the
    #: current mode): output lost while draining and warming up, wear, eviction penalties.
    switch_cost_usd: F64
    #: `switch_cost_usd` amortized over `expected_stay_h`, USD/h.
    switch_cost_per_h: F64
    #: Share of the node's GPUs that real demand would fill in AI mode, (n,): demand for
    #: a model fills that model's nodes; demand for any model fills the GPUs that net
    #: the most per hour first, where the simulated cluster places it.
    ai_fill: F64
    #: Conservative wall power per mode (full load), W, (3, n): what the power cap counts.
    watts: F64
    #: Hours a node is expected to stay in a new mode (amortizes switching costs).
    expected_stay_h: float

    @property
    def n(self) -> int:
        """Number of nodes (columns)."""
        return int(self.value.shape[1])

    def gain_per_h(
        self,
        current: npt.NDArray[np.int8],
        target: npt.NDArray[np.int8],
        nodes: npt.NDArray[np.intp] | None = None,
    ) -> F64:
        """USD/h gained by moving nodes from `current` to `target`, after switching cost.

        `nodes` names the rows when `current`/`target` cover a subset of the fleet.
        """
        idx = np.arange(self.n) if nodes is None else nodes
        return (
            self.value[target, idx] - self.value[current, idx] - self.switch_cost_per_h[target, idx]
        )


def _column(values: F64, rows: int) -> F64:
    """`values` when it has a row per history row, else NaN (not recorded)."""
    return values if values.shape[0] == rows else np.full(rows, np.nan)


@dataclass(frozen=True, slots=True)
class MarketHistory:
    """Market series as published at or before `now` (no look-ahead), oldest first.

    One row per interval some site has published a power price for (hourly where every
    site's price is constant). A row is published (`known_at_s`) with its first site
    price; the history holds only rows with `known_at_s <= now`, and each site's price
    in them only once published. Built by whoever knows the past:
    the recorded source (backtest, dry-run), the feed actor's cache when live (one row
    per poll, then one per later hour a day-ahead feed has published). A value the
    source does not record is NaN.
    """

    #: When each row's interval starts, seconds since epoch, oldest first.
    times_s: F64
    #: Hashprice, USD per PH/s per day, from the BTC price, difficulty, fees and subsidy
    #: known when the row was published.
    hashprice_usd_ph_day: F64
    #: Power price of the first site (`fleet.sites[0]`), USD/MWh: the same values as
    #: `site_power_usd_mwh[:, 0]` (NaN in a row only another site has published yet).
    power_usd_mwh: F64
    #: Power price of each site, USD/MWh, (rows, sites) in `fleet.sites` order: the
    #: price of the row's interval, NaN while that site's price for it is not published.
    site_power_usd_mwh: F64 = field(default_factory=lambda: np.zeros((0, 0)))
    #: BTC price, USD, known when the row was published (the one its hashprice used).
    btc_usd: F64 = field(default_factory=lambda: np.zeros(0))
    #: Network difficulty known when the row was published (the one its hashprice used).
    difficulty: F64 = field(default_factory=lambda: np.zeros(0))
    #: When each row was published, seconds since epoch: its first site price (later
    #: than `times_s` by the feed's lag; earlier for day-ahead prices).
    known_at_s: F64 = field(default_factory=lambda: np.zeros(0))
    #: Site names of the `site_power_usd_mwh` columns as the source keyed them ('default'
    #: serves any site); the decision step aligns them with `fleet.sites`.
    site_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rows = self.times_s.shape[0]
        sites = self.site_power_usd_mwh
        if sites.ndim != 2 or sites.shape[0] != rows:
            object.__setattr__(self, "site_power_usd_mwh", self.power_usd_mwh.reshape(rows, 1))
        object.__setattr__(self, "btc_usd", _column(self.btc_usd, rows))
        object.__setattr__(self, "difficulty", _column(self.difficulty, rows))
        if self.known_at_s.shape[0] != rows:
            object.__setattr__(self, "known_at_s", self.times_s)
        freeze_arrays(self, ("times_s", "hashprice_usd_ph_day", "power_usd_mwh",
                             "site_power_usd_mwh", "btc_usd", "difficulty", "known_at_s"))

    @staticmethod
    def empty() -> MarketHistory:
        z = np.zeros(0)
        return MarketHistory(z, z, z)

    def rows(self, lo: int, hi: int) -> MarketHistory:
        """Rows `lo` to `hi` (a slice; columns are views)."""
        return MarketHistory(
            self.times_s[lo:hi], self.hashprice_usd_ph_day[lo:hi], self.power_usd_mwh[lo:hi],
            self.site_power_usd_mwh[lo:hi], self.btc_usd[lo:hi], self.difficulty[lo:hi],
            self.known_at_s[lo:hi], self.site_names,
        )

    def after(self, now_s: float) -> MarketHistory:
        """The rows for intervals after `now_s`: values published ahead (day-ahead prices)
        that were already known at `now_s`, the only future a policy can see."""
        lo = int(np.searchsorted(self.times_s, now_s, side="right"))
        return self.rows(lo, self.times_s.shape[0])

    def for_sites(self, sites: tuple[str, ...]) -> MarketHistory:
        """The history with one power column per site of `sites`, in that order: the
        column keyed by the site's name, else the one keyed 'default', else NaN."""
        if not self.site_names or self.site_names == sites:
            return self
        rows = self.times_s.shape[0]
        cols = {name: k for k, name in enumerate(self.site_names)}
        power = np.full((rows, len(sites)), np.nan)
        for j, site in enumerate(sites):
            k = cols.get(site, cols.get("default"))
            if k is not None:
                power[:, j] = self.site_power_usd_mwh[:, k]
        first = power[:, 0] if sites else np.full(rows, np.nan)
        return MarketHistory(self.times_s, self.hashprice_usd_ph_day, first, power,
                             self.btc_usd, self.difficulty, self.known_at_s, sites)


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Read-only inputs to one decision. Policies must not mutate it or do I/O."""

    #: The decision's time, seconds since epoch (UTC). The only clock a policy reads.
    now_s: float
    #: BTC price, difficulty, fees, subsidy; per algorithm USD per hashrate unit per day;
    #: per GPU model USD per GPU-hour; per site USD/MWh (`fleet.sites` order).
    prices: MarketPrices
    #: GPUs waiting per GPU model and their offered price, plus the smoothed demand level.
    demand: DemandSummary
    #: The nodes as read-only columns: profile, site, mode, lifecycle state, since, lease,
    #: GPUs busy, watts and hashrate (measured where telemetry has them).
    fleet: FleetTable
    #: Node × mode value table in USD/h with the terms behind it (see ScoreTable).
    scores: ScoreTable
    #: Seconds each node has been in its current mode.
    dwell_s: F64
    #: The engine's min-dwell guard (s); policies may use it to avoid futile proposals.
    min_dwell_s: float
    #: The market data is older than its time-to-live: every change will be held.
    stale: bool
    #: Per-site power cap in W (inf: none), aligned with `fleet.sites`.
    site_power_cap_w: F64
    #: Market series published at or before `now` (see `MarketHistory`), for a policy
    #: with `uses_history = True`; empty for the others.
    history: MarketHistory = field(default_factory=MarketHistory.empty)
    #: What this policy returned as `state` last cycle (empty on the first, and restored
    #: from the journal after a controller restart). Numeric arrays only.
    policy_state: Mapping[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    #: Seconds between decisions as configured (controller interval, backtest step).
    interval_s: float = 0.0
    #: Decisions missed since the last one (a controller down, a market unusable): 0 when
    #: this decision follows the last one by one interval.
    skipped_cycles: int = 0
    #: Each node's switch count as of its last switch, decaying with a 24 h half-life
    #: (see `switches_24h`; empty when the runner keeps no switch history).
    switch_load: F64 = field(default_factory=lambda: np.zeros(0))
    #: The per-node switch budget: most switches a node may make per day (guards).
    max_switches_per_node_per_day: float = math.inf
    #: The fleet switch budget: most nodes that may start a switch per hour (guards).
    fleet_switches_per_hour: int = 0

    @property
    def site_power_w(self) -> F64:
        """Power each site draws now, W: every node at its current mode's full-load watts,
        as the power cap counts it (`fleet.sites` order)."""
        idx = np.arange(self.fleet.n)
        draw = self.scores.watts[self.fleet.mode.astype(np.intp), idx]
        return np.bincount(self.fleet.site, weights=draw,
                           minlength=max(len(self.fleet.sites), 1)).astype(np.float64)

    @property
    def site_headroom_w(self) -> F64:
        """W each site may still add before its cap (inf: no cap; negative: over it)."""
        return self.site_power_cap_w - self.site_power_w

    @property
    def switches_24h(self) -> F64:
        """Each node's switches over the last day as the per-node budget counts them (a
        count decaying with a 24 h half-life); zeros when no history is kept."""
        if self.switch_load.shape != (self.fleet.n,):
            return np.zeros(self.fleet.n)
        return self.switch_load * np.exp2(-np.maximum(self.dwell_s, 0.0)
                                          / SWITCH_LOAD_HALF_LIFE_S)

    @property
    def observed_s(self) -> ObservedTimes:
        """When each value in `prices` was observed, seconds since epoch (per site, GPU
        model and algorithm as in `prices`); `now_s - ctx.observed_s.power_usd_mwh` is
        each site's price age. Where the source does not say, every value reads
        `prices.oldest_observed_s`."""
        if self.prices.observed is not None:
            return self.prices.observed
        p, oldest = self.prices, self.prices.oldest_observed_s
        return ObservedTimes(oldest, oldest, oldest, oldest,
                             np.full(p.usd_per_unit_day.shape, oldest),
                             np.full(p.gpu_usd_per_gpu_hour.shape, oldest),
                             np.full(p.power_usd_mwh.shape, oldest))

    @property
    def known_future(self) -> MarketHistory:
        """Values already published for intervals after `now_s` (day-ahead prices), and
        nothing later: the history holds only what was known at `now_s`."""
        return self.history.after(self.now_s)

    @property
    def current(self) -> npt.NDArray[np.int8]:
        """Each node's current mode (`fleet.mode`)."""
        return self.fleet.mode

    def local_time(self, site: int = 0) -> datetime:
        """`now` on site `site`'s wall clock (its `timezone`; clock changes included)."""
        zone = self.fleet.sites[site].zone if self.fleet.sites else UTC
        return datetime.fromtimestamp(self.now_s, zone)

    def node_local_time(self) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
        """Per node: the local hour (0–23) and weekday (0 = Monday) at its site."""
        n_sites = max(len(self.fleet.sites), 1)
        hours = np.empty(n_sites, dtype=np.int8)
        weekdays = np.empty(n_sites, dtype=np.int8)
        for k in range(n_sites):
            local = self.local_time(k)
            hours[k], weekdays[k] = local.hour, local.weekday()
        return hours[self.fleet.site], weekdays[self.fleet.site]


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """Target mode and reason code per node; optional state handed back next cycle."""

    #: Mode per node: 0 idle, 1 mine, 2 AI (int8).
    target: npt.NDArray[np.int8]
    #: Reason code per node (int16): a `Reason`.
    reason: npt.NDArray[np.int16]
    #: Numeric arrays handed back as `ctx.policy_state` next cycle, kept across restarts.
    state: Mapping[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    #: Numbers per node, one float array of fleet length per name, that the policy's own
    #: reason texts show: `{price:.0f}` in a text reads `values["price"][node]`.
    values: Mapping[str, F64] = field(default_factory=dict)

    @staticmethod
    def keep(ctx: DecisionContext) -> PolicyDecision:
        return PolicyDecision(
            target=ctx.fleet.mode.copy(), reason=np.zeros(ctx.fleet.n, dtype=np.int16)
        )


def best_mode(
    scores: ScoreTable, *, allow_ai: npt.NDArray[np.bool_] | None = None
) -> tuple[npt.NDArray[np.int8], F64]:
    """Mode of highest net value per node (ties prefer idle, then mine) and that value."""
    value = scores.value
    if allow_ai is not None:
        value = value.copy()
        value[Mode.AI, ~allow_ai] = -np.inf
    best = mode_argmax(value)
    return best, at_mode(value, best)
