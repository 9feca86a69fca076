"""Power contracts in backtests and dry-runs: the alert series and demand-response event
calendars, and the contract's lines of the ledger (energy at the contract price, resale
of unused contracted energy, demand charges on the realised monthly peak, coincident-peak
charges on the realised draw in the alerted intervals, demand-response availability and
energy payments and shortfall penalties). Formulas: docs/contracts.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from orchestrator import economics as econ
from orchestrator.backtest.recorded import read_series
from orchestrator.backtest.tables import evaluate, ident, open_table, to_utc, zone_of
from orchestrator.engine.contracts import (
    AlertSeries,
    ContractBook,
    EventCalendar,
    LiveBook,
    hours_in_month,
)
from orchestrator.errors import DataError
from orchestrator.models.config import HashpivotConfig, base_dir
from orchestrator.models.contract import DemandResponse, FixedPrice
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


_EVENTS: dict[tuple[str, str, str], EventCalendar] = {}


def load_events(config: HashpivotConfig) -> dict[str, EventCalendar]:
    """Each site's demand-response event calendar, by site name. A row without a start
    or end, with a stamp that is not a time, ending before it starts or called after it
    ends is a DataError naming the file, line, column and the site's field."""
    root = base_dir(config)
    out: dict[str, EventCalendar] = {}
    for site in config.sites:
        dr = None if site.contract is None else site.contract.demand_response
        if dr is None:
            continue
        key = (str(root), site.name, dr.model_dump_json())
        if key not in _EVENTS:
            _EVENTS[key] = _read_events(
                f"sites.{site.name}.contract.demand_response.events", dr, root)
        out[site.name] = _EVENTS[key]
    return out


def _read_events(name: str, dr: DemandResponse, root: Path) -> EventCalendar:
    """One site's calendar, its rows checked, as merged event windows (`name`: the site's
    field, which errors name)."""
    src = dr.events
    zone = zone_of(src.timezone, f"{name}.timezone")
    columns = [src.start_column, src.end_column, *([src.called_column] if src.called_column
                                                     else [])]
    table = open_table(src, root, f"events {name}", columns)
    try:
        fields = {"s": f"{name}.start_column", "e": f"{name}.end_column",
                  "c": f"{name}.called_column"}
        exprs: dict[str, tuple[str, Literal["time"]]] = {
            "s": (ident(src.start_column), "time"), "e": (ident(src.end_column), "time")}
        table.require(src.start_column, fields["s"])
        table.require(src.end_column, fields["e"])
        if src.called_column:
            table.require(src.called_column, fields["c"])
            exprs["c"] = (ident(src.called_column), "time")
        cols, _, files, rows = evaluate(table, exprs, decimal=src.decimal,
                                        time_format=src.time_format, field_of=fields)
        start, end = cols["s"], cols["e"]
        idx = np.flatnonzero(~(start.null & end.null))  # a blank line is no event

        def fail(i: int, column: str, message: str) -> DataError:
            path, line, note = table.where(int(files[i]), int(rows[i]))
            return DataError(f"{message}{note} ({name})", source=path, line=line,
                             column=column)

        def times(key: str, column: str, optional: bool = False) -> F64:
            col = cols[key]
            bad = col.bad[idx] | (col.null[idx] & (not optional))
            if bad.any():
                i = int(idx[np.flatnonzero(bad)[0]])
                raise fail(i, column, "missing time" if col.null[i] else "not a time")
            known = idx[~col.null[idx]]
            out = np.full(idx.shape[0], np.nan)
            out[~col.null[idx]] = to_utc(col, known, zone, src.ambiguous,
                                         lambda i, m: fail(i, column, m))
            return out

        start_s = times("s", src.start_column)
        end_s = times("e", src.end_column)
        called_s = start_s - dr.notice_min * 60.0
        if src.called_column:
            given = times("c", src.called_column, optional=True)
            called_s = np.where(np.isnan(given), called_s, given)
        for j in range(idx.shape[0]):
            if end_s[j] <= start_s[j]:
                raise fail(int(idx[j]), src.end_column, "the event ends before (or when) it starts")
            if called_s[j] >= end_s[j]:
                raise fail(int(idx[j]), src.called_column or src.start_column,
                           "the event is called after it ends")
    finally:
        table.close()
    return EventCalendar.of(start_s, end_s, called_s, dr.response_min * 60.0)


def contract_book(config: HashpivotConfig, programs: bool = True) -> ContractBook | None:
    """The decision step's view of the sites' contracts (None: nothing to add).
    `programs=False`: the decision sees none of the contract's programs (they are
    still billed)."""
    if all(s.contract is None or s.contract.is_plain_spot for s in config.sites):
        return None
    return ContractBook.for_sites(config.sites, load_alerts(config), load_events(config),
                                  programs)


def contract_accounts(config: HashpivotConfig) -> ContractAccounts | None:
    """The ledger's contract lines for one run (None: every site pays spot)."""
    book = contract_book(config)
    return None if book is None else ContractAccounts(book)


@dataclass
class ProgramLines:
    """A run's demand-response and curtailment-credit lines per step (USD): availability
    and energy payments and curtailment credits (credits), shortfall penalties, and each
    site's average draw (kW) they come from."""

    site_names: tuple[str, ...]
    availability: F64
    energy: F64
    shortfall: F64
    curtailment: F64
    site_kw: F64  # (steps, sites)

    @staticmethod
    def zeros(steps: int, sites: tuple[str, ...]) -> ProgramLines:
        return ProgramLines(sites, np.zeros(steps), np.zeros(steps), np.zeros(steps),
                            np.zeros(steps), np.zeros((steps, len(sites))))

    def cost(self) -> F64:
        """Per step: what the programs add to the power bill (penalties less payments)."""
        cost: F64 = self.shortfall - self.availability - self.energy - self.curtailment
        return cost

    def totals(self) -> dict[str, float]:
        return {"dr_availability_payment_usd": float(self.availability.sum()),
                "dr_energy_payment_usd": float(self.energy.sum()),
                "dr_shortfall_penalty_usd": float(self.shortfall.sum()),
                "curtailment_credit_usd": float(self.curtailment.sum())}


@dataclass
class ContractAccounts:
    """Per step and site: the energy drawn; at the end of the run, the charges."""

    book: ContractBook
    _energy: list[F64] = field(default_factory=list)
    _spot: list[F64] = field(default_factory=list)
    _times: list[float] = field(default_factory=list)
    _steps: list[int] = field(default_factory=list)
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
        self._programs(ledger, k, now_s, dt_s, site_energy_wh)
        self._energy.append(site_energy_wh.copy())
        self._spot.append(np.array(spot, dtype=np.float64, copy=True))
        self._times.append(now_s)
        self._steps.append(k)
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

    def _programs(self, ledger: Ledger, k: int, now_s: float, dt_s: float,
                  site_energy_wh: F64) -> None:
        """Book step `k`'s demand-response availability payment, and for the part of the
        step inside an event window its energy payment (reduction below the baseline) and
        shortfall penalty (draw above max_draw_kw), and a curtailment credit when the
        step's local hour is listed; all from the step's average draw."""
        sites = self.book.sites
        contracts = [s.contract for s in sites]
        if all(c is None or (c.demand_response is None and c.curtailment_credit is None)
               for c in contracts):
            return
        lines = ledger.programs
        if lines is None:
            lines = ProgramLines.zeros(ledger.times_s.shape[0], tuple(s.name for s in sites))
            ledger.programs = lines
        dt_h = dt_s / 3600.0
        kw_now = site_energy_wh / dt_h / 1000.0
        lines.site_kw[k] = kw_now
        for j, (site, contract) in enumerate(zip(sites, contracts, strict=True)):
            if contract is None:
                continue
            local = datetime.fromtimestamp(now_s, site.zone)
            credit = contract.curtailment_credit
            if credit is not None and self.book.credit_hour(j, local):
                lines.curtailment[k] += (credit.usd_mwh * max(credit.baseline_kw
                                                              - float(kw_now[j]), 0.0)
                                         * dt_h / 1000.0)
            dr = contract.demand_response
            if dr is None:
                continue
            lines.availability[k] += (dr.committed_kw * dr.availability_usd_per_kw_month
                                      * dt_h / hours_in_month(local))
            calendar = self._calendar(site)
            if calendar is None:
                continue
            kw = float(kw_now[j])
            for e in range(len(calendar)):
                inside_h = max(min(float(calendar.end_s[e]), now_s + dt_s)
                               - max(float(calendar.due_s[e]), now_s), 0.0) / 3600.0
                if inside_h <= 0:
                    continue
                limit_kw = calendar.limit(e, dr.max_draw_kw)
                lines.shortfall[k] += (dr.shortfall_usd_mwh * max(kw - limit_kw, 0.0)
                                       * inside_h / 1000.0)
                base = self._baseline_kw(lines, j, k, now_s, float(calendar.called_s[e]),
                                         dr.baseline_h * 3600.0, dt_s)
                if base is not None:
                    lines.energy[k] += (dr.energy_usd_mwh * max(base - kw, 0.0)
                                        * inside_h / 1000.0)

    def hear(self, books: Mapping[str, Mapping[str, Any]] | None) -> None:
        """The live events and alerts the decision being stepped saw (a cycle's journaled
        `grid_signals`): the step's lines bill them like the recorded calendar's."""
        self.book.live = {site: LiveBook.from_snapshot(book)
                          for site, book in (books or {}).items()}

    def _calendar(self, site: Site) -> EventCalendar | None:
        """Site's recorded and live events as one calendar (windows that overlap merged,
        as the decision's cap merges them), or None."""
        recorded = self.book.events.get(site.name)
        live = self.book.live_calendar(site)
        if live is None or len(live) == 0:
            return recorded
        if recorded is None or len(recorded) == 0:
            return live
        parts = (recorded, live)
        # Each window's due time already includes the response time: pass it as the start.
        return EventCalendar.of(
            np.concatenate([c.due_s for c in parts]), np.concatenate([c.end_s for c in parts]),
            np.concatenate([c.called_s for c in parts]), 0.0,
            np.concatenate([c.limit_kw if c.limit_kw is not None
                            else np.full(len(c), np.nan) for c in parts]),
            [c.label(e) for c in parts for e in range(len(c))])

    def _baseline_kw(self, lines: ProgramLines, j: int, k: int, now_s: float,
                     called_s: float, span_s: float, dt_s: float) -> float | None:
        """Site `j`'s average draw over [called_s − span_s, called_s), each step of the run
        so far (the one starting at `now_s` the last) weighted by its time inside (None:
        the run has no step there)."""
        starts = np.array([*self._times, now_s], dtype=np.float64)
        weight = np.clip(np.minimum(starts + dt_s, called_s)
                         - np.maximum(starts, called_s - span_s), 0.0, None)
        total = float(weight.sum())
        if total <= 0:
            return None
        kw = lines.site_kw[np.array([*self._steps, k], dtype=np.intp), j]
        return float((kw * weight).sum() / total)

    def _close(self, ledger: Ledger) -> None:
        times = np.array(self._times)
        # The ledger rows the recorded steps fill: a dry-run resumed from its journal
        # records only the steps since it resumed.
        rows = np.array(self._steps, dtype=np.intp)
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
                self._demand_charges(ledger, j, local, kw[:, j], rate, dt_s, rows)
            cp = contract.coincident_peak
            if cp is not None:
                alerts = self.book.alerts.get(site.name)
                p = np.array([alerts.at(float(t)) if alerts is not None else 0.0
                              for t in times])
                season = np.array([t.month in cp.months for t in local])
                p = np.where(season, p, 0.0)
                ledger.coincident_peak_charge[rows] += (
                    cp.usd_per_kw * kw[:, j] * p / cp.peak_intervals)

    @staticmethod
    def _demand_charges(ledger: Ledger, j: int, local: list[datetime], kw: F64, rate: float,
                        dt_s: float, rows: npt.NDArray[np.intp]) -> None:
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
            ledger.demand_charge[rows[idx[-1]]] += charge
