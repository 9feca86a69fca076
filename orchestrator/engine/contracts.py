"""Power contracts in the score table: the USD/MWh a site's marginal energy costs now.

The score pass prices every node's draw at one USD/MWh per site (plus the node's tariff
adder). For a site with a contract (`Site.contract`), that price is worked out here,
before the compiled pass, so every policy sees the contract through the power-cost term:

- the energy price: spot; a fixed price; spot again for a fixed block resold at spot
  (using a MWh forgoes selling it); or the time-of-use price of the local hour;
- plus the demand charge spread over the month's hours while the site draws at (or
  within `demand_near_peak_share` of) its month-to-date peak;
- plus the expected coincident-peak charge of the interval (alert probability ×
  usd_per_kw / peak_intervals per kWh of the interval).

The month-to-date peak is the highest site draw seen at a decision this month (local
time); `observe` keeps it. Pure: the alert series arrive as arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.models.contract import WEEKDAYS, FixedPrice, PowerContract, TimeOfUsePrice
from orchestrator.models.fleet import FleetTable
from orchestrator.models.site import Site

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AlertSeries:
    """Peak-alert probabilities (0-1) from `times_s` on, each for `interval_h` hours."""

    times_s: F64
    values: F64
    interval_h: float = 1.0

    def at(self, t_s: float) -> float:
        """The probability in force at `t_s` (0 before the first row)."""
        i = int(np.searchsorted(self.times_s, t_s, side="right")) - 1
        return float(self.values[i]) if i >= 0 else 0.0

    @staticmethod
    def constant(value: float) -> AlertSeries:
        return AlertSeries(np.array([-np.inf]), np.array([float(value)]))


def tou_schedule(price: TimeOfUsePrice) -> F64:
    """The weekly schedule as a (7, 24) table of USD/MWh, Monday first."""
    table = np.full((7, 24), float(price.default_usd_mwh))
    for period in price.periods:  # later periods override earlier ones
        for day in period.days:
            table[WEEKDAYS.index(day), period.start_hour:period.end_hour] = period.usd_mwh
    return table


def hours_in_month(local: datetime) -> float:
    """Hours of the local calendar month `local` falls in."""
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return (nxt - first).total_seconds() / 3600.0


@dataclass
class ContractBook:
    """Each site's contract and what it remembers (the month-to-date peak)."""

    sites: Sequence[Site]
    alerts: Mapping[str, AlertSeries] = field(default_factory=dict)
    _peak_kw: F64 = field(init=False, repr=False)
    _peak_month: list[tuple[int, int]] = field(init=False, repr=False)
    _tou: dict[int, F64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._peak_kw = np.zeros(len(self.sites))
        self._peak_month = [(0, 0)] * len(self.sites)
        self._tou = {
            j: tou_schedule(s.contract.price)
            for j, s in enumerate(self.sites)
            if s.contract is not None and isinstance(s.contract.price, TimeOfUsePrice)
        }

    @staticmethod
    def for_sites(sites: Sequence[Site], alerts: Mapping[str, AlertSeries]) -> ContractBook | None:
        """A book for `sites`, or None when no site's contract changes anything (the
        score pass then runs exactly as without contracts)."""
        if all(s.contract is None or s.contract.is_plain_spot for s in sites):
            return None
        return ContractBook(sites, alerts)

    def peaks_kw(self, now_s: float) -> list[float]:
        """Each site's month-to-date peak as it stands for a decision at `now_s` (0 for a
        site whose remembered peak is of another month), kW."""
        out = []
        for j, site in enumerate(self.sites):
            local = datetime.fromtimestamp(now_s, site.zone)
            same = self._peak_month[j] == (local.year, local.month)
            out.append(float(self._peak_kw[j]) if same else 0.0)
        return out

    def restore_peaks(self, now_s: float, peaks_kw: Sequence[float]) -> None:
        """Continue from the peaks `peaks_kw` (one per site) of `now_s`'s month: after a
        restart, or to decide a journaled cycle again."""
        if len(peaks_kw) != len(self.sites):
            return  # journaled for another set of sites: start afresh
        for j, site in enumerate(self.sites):
            local = datetime.fromtimestamp(now_s, site.zone)
            self._peak_month[j] = (local.year, local.month)
            self._peak_kw[j] = float(peaks_kw[j])

    def energy_usd_mwh(self, j: int, local: datetime, spot: float) -> float:
        """What site `j` pays per MWh it draws at `local` (before adders and charges)."""
        contract = self.sites[j].contract
        price = "spot" if contract is None else contract.price
        if isinstance(price, FixedPrice):
            return price.usd_mwh
        if isinstance(price, TimeOfUsePrice):
            return float(self._tou[j][local.weekday(), local.hour])
        return spot

    def score_prices(
        self, now_s: float, spot_usd_mwh: F64, fleet: FleetTable
    ) -> tuple[F64, tuple[str, ...]]:
        """Per site: the USD/MWh the score table prices a node's draw at, and a note
        naming each program that added to it ('' where none did). Updates the
        month-to-date peak with the site's draw now."""
        site_kw = site_draw_kw(fleet)
        out = np.array(spot_usd_mwh, dtype=np.float64, copy=True)
        notes: list[str] = []
        for j, site in enumerate(self.sites):
            contract = site.contract
            if contract is None or contract.is_plain_spot:
                notes.append("")
                continue
            local = datetime.fromtimestamp(now_s, site.zone)
            kw = float(site_kw[j]) if j < site_kw.shape[0] else 0.0
            self._observe(j, local, kw)
            price, note = self._site_price(j, contract, local, float(spot_usd_mwh[j]), kw, now_s)
            out[j] = price
            notes.append(note)
        return out, tuple(notes)

    def _observe(self, j: int, local: datetime, kw: float) -> None:
        month = (local.year, local.month)
        if self._peak_month[j] != month:
            self._peak_month[j], self._peak_kw[j] = month, 0.0
        self._peak_kw[j] = max(self._peak_kw[j], kw)

    def _site_price(self, j: int, contract: PowerContract, local: datetime, spot: float,
                    kw: float, now_s: float) -> tuple[float, str]:
        parts = []
        price = contract.price
        if isinstance(price, FixedPrice) and price.resale_at_spot:
            energy = spot
            parts.append(f"fixed {price.usd_mwh:g} USD/MWh resold at spot {spot:.2f}: "
                         f"using a MWh forgoes its resale")
        elif isinstance(price, FixedPrice):
            energy = price.usd_mwh
            parts.append(f"fixed contract {energy:g} USD/MWh")
        elif isinstance(price, TimeOfUsePrice):
            energy = self.energy_usd_mwh(j, local, spot)
            parts.append(f"time-of-use {energy:g} USD/MWh ({WEEKDAYS[local.weekday()]} "
                         f"{local.hour:02d}:00 local)")
        else:
            energy = spot
        total = energy
        rate = contract.demand_charge_usd_per_kw_month
        peak = float(self._peak_kw[j])
        if rate > 0 and peak > 0 and kw >= (1.0 - contract.demand_near_peak_share) * peak:
            add = econ.demand_charge_marginal_usd_mwh(rate, hours_in_month(local))
            total += add
            parts.append(f"demand charge at the month-to-date peak {peak:,.0f} kW "
                         f"(+{add:.2f} USD/MWh)")
        cp = contract.coincident_peak
        if cp is not None and local.month in cp.months:
            series = self.alerts.get(self.sites[j].name)
            p = series.at(now_s) if series is not None else 0.0
            if p > 0:
                interval_h = series.interval_h if series is not None else 1.0
                add = float(econ.coincident_peak_expected_usd_mwh(
                    p, cp.usd_per_kw, cp.peak_intervals, interval_h))
                total += add
                parts.append(f"coincident-peak alert p={p:.2f} (+{add:,.0f} USD/MWh, "
                             f"{add * kw / 1000.0:,.0f} USD/h at {kw:,.0f} kW)")
        note = "power cost includes " + "; ".join(parts) if parts else ""
        return total, note


def site_draw_kw(fleet: FleetTable) -> F64:
    """Each site's draw now, kW: every node at its current mode's watts."""
    watts = fleet.statics.watts_by_mode
    node_w = np.take_along_axis(watts, fleet.mode.astype(np.intp)[None, :], axis=0)[0]
    kw: F64 = np.bincount(fleet.site.astype(np.intp), weights=node_w,
                          minlength=len(fleet.sites)) / 1000.0
    return kw
