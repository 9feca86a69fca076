"""Power contracts in backtests and dry-runs: the alert series, and the contract's lines
of the ledger (energy at the contract price, resale of unused contracted energy, demand
charges on the realised monthly peak, coincident-peak charges on the realised draw in the
alerted intervals). Formulas: docs/contracts.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.backtest.recorded import read_series
from orchestrator.engine.contracts import AlertSeries, ContractBook, hours_in_month
from orchestrator.errors import DataError
from orchestrator.models.config import HashpivotConfig, base_dir
from orchestrator.models.contract import FixedPrice
from orchestrator.models.site import Site

if TYPE_CHECKING:
    from orchestrator.backtest.sim import Ledger

F64 = npt.NDArray[np.float64]

# Alert series are small and every policy run of a backtest reads the same ones.
_ALERTS: dict[tuple[str, str, str], AlertSeries] = {}


def load_alerts(config: HashpivotConfig) -> dict[str, AlertSeries]:
    """Each site's coincident-peak alert series, by site name; a value outside [0, 1] is a
    DataError naming the site's field and the file."""
    root = base_dir(config)
    out: dict[str, AlertSeries] = {}
    for site in config.sites:
        cp = None if site.contract is None else site.contract.coincident_peak
        if cp is None:
            continue
        if isinstance(cp.alerts, float | int):
            out[site.name] = AlertSeries(np.array([-np.inf]), np.array([float(cp.alerts)]),
                                         cp.alert_interval_h)
            continue
        name = f"sites.{site.name}.contract.coincident_peak.alerts"
        key = (str(root), site.name, cp.alerts.model_dump_json())
        if key not in _ALERTS:
            series = read_series(name, cp.alerts, root)
            bad = np.flatnonzero((series.values < 0) | (series.values > 1))
            if bad.size:
                raise DataError(
                    f"{name}: alert probabilities must be in [0, 1], got "
                    f"{series.values[bad[0]]:g}", source=series.source)
            _ALERTS[key] = AlertSeries(series.times_s, series.values, cp.alert_interval_h)
        out[site.name] = _ALERTS[key]
    return out


def contract_book(config: HashpivotConfig) -> ContractBook | None:
    """The decision step's view of the sites' contracts (None: nothing to add)."""
    if all(s.contract is None or s.contract.is_plain_spot for s in config.sites):
        return None
    return ContractBook.for_sites(config.sites, load_alerts(config))


def contract_accounts(config: HashpivotConfig) -> ContractAccounts | None:
    """The ledger's contract lines for one run (None: every site pays spot)."""
    book = contract_book(config)
    return None if book is None else ContractAccounts(book)


@dataclass
class ContractAccounts:
    """Per step and site: the energy drawn; at the end of the run, the charges."""

    book: ContractBook
    _energy: list[F64] = field(default_factory=list)
    _spot: list[F64] = field(default_factory=list)
    _times: list[float] = field(default_factory=list)
    _dt_s: float = 3600.0

    @property
    def sites(self) -> tuple[Site, ...]:
        return tuple(self.book.sites)

    def energy_prices(self, now_s: float, spot: F64) -> F64:
        """What each site pays per MWh it uses during the step (before the adder)."""
        out = np.array(spot, dtype=np.float64, copy=True)
        for j, site in enumerate(self.book.sites):
            if site.contract is not None and site.contract.price != "spot":
                local = datetime.fromtimestamp(now_s, site.zone)
                out[j] = self.book.energy_usd_mwh(j, local, float(spot[j]))
        return out

    def record(self, ledger: Ledger, k: int, now_s: float, dt_s: float,
               site_energy_wh: F64, spot: F64) -> None:
        """Keep the step's energy per site and book its resale of unused contracted
        energy; after the run's last step, book the demand and coincident-peak charges."""
        self._energy.append(site_energy_wh.copy())
        self._spot.append(np.array(spot, dtype=np.float64, copy=True))
        self._times.append(now_s)
        self._dt_s = dt_s
        dt_h = dt_s / 3600.0
        for j, site in enumerate(self.book.sites):
            price = None if site.contract is None else site.contract.price
            block_kw = site.contracted_kw
            if not isinstance(price, FixedPrice) or block_kw <= 0:
                continue
            unused_mwh = max(block_kw * dt_h / 1000.0 - site_energy_wh[j] / 1e6, 0.0)
            ledger.contract_unused_cost[k] += unused_mwh * price.usd_mwh
            ledger.resale_revenue[k] += float(econ.resale_usd(unused_mwh, float(spot[j])))
        if k == ledger.times_s.shape[0] - 1:
            self._close(ledger)

    def _close(self, ledger: Ledger) -> None:
        times = np.array(self._times)
        energy = np.array(self._energy)  # (steps, sites), Wh
        dt_s = self._dt_s
        kw = energy / (dt_s / 3600.0) / 1000.0  # average kW of each step
        for j, site in enumerate(self.book.sites):
            contract = site.contract
            if contract is None:
                continue
            local = [datetime.fromtimestamp(float(t), site.zone) for t in times]
            rate = contract.demand_charge_usd_per_kw_month
            if rate > 0:
                self._demand_charges(ledger, j, local, kw[:, j], rate, dt_s)
            cp = contract.coincident_peak
            if cp is not None:
                alerts = self.book.alerts.get(site.name)
                p = np.array([alerts.at(float(t)) if alerts is not None else 0.0
                              for t in times])
                season = np.array([t.month in cp.months for t in local])
                p = np.where(season, p, 0.0)
                ledger.coincident_peak_charge += cp.usd_per_kw * kw[:, j] * p / cp.peak_intervals

    @staticmethod
    def _demand_charges(ledger: Ledger, j: int, local: list[datetime], kw: F64, rate: float,
                        dt_s: float) -> None:
        """Per local month: rate × the month's highest hourly average draw, booked at the
        month's last step in the run and prorated by the share of the month the run
        covers (a run of ten days pays a third of a month's charge)."""
        hour_key = np.array([(t.year, t.month, t.day, t.hour) for t in local]) if dt_s < 3600 \
            else None
        months = [(t.year, t.month) for t in local]
        for month in dict.fromkeys(months):
            idx = np.array([i for i, m in enumerate(months) if m == month])
            if hour_key is None:
                hourly = kw[idx]
            else:
                # Steps shorter than an hour: the average of each clock hour's steps.
                keys = [tuple(hour_key[i]) for i in idx]
                groups: dict[tuple[int, ...], list[float]] = {}
                for key, value in zip(keys, kw[idx].tolist(), strict=True):
                    groups.setdefault(key, []).append(value)
                hourly = np.array([sum(v) / len(v) for v in groups.values()])
            month_h = hours_in_month(local[idx[0]])
            covered = min(idx.size * dt_s / 3600.0 / month_h, 1.0)
            charge = float(econ.demand_charge_usd(float(hourly.max()), rate)) * covered
            ledger.demand_charge[idx[-1]] += charge
