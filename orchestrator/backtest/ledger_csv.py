"""A ledger as CSV: one row per run and step (UTC times), for spreadsheets.

The backtest report, a dry-run (its simulated site's ledger, beside its journal) and a
journal replay (`hashpivot backtest --journal ... --report DIR`) write the same columns,
so their files compare line for line. No plotting library is loaded here: a controller
writes its ledger without one.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrator.backtest.contracts import ProgramLines

if TYPE_CHECKING:
    from orchestrator.backtest.sim import Ledger

CONTRACT_COLUMNS = ("contract_unused_energy_usd", "resale_revenue_usd", "demand_charge_usd",
                    "coincident_peak_charge_usd")
DR_COLUMNS = ("dr_availability_payment_usd", "dr_energy_payment_usd",
              "dr_shortfall_penalty_usd", "curtailment_credit_usd")


def write_ledgers_csv(runs: Sequence[tuple[str, bool, Ledger]], path: Path) -> None:
    """Each (name, baseline, ledger) run's ledger, one row per step."""
    columns: tuple[str, ...] = (
        "time", "policy", "baseline", "mine_revenue_usd", "ai_revenue_usd", "power_cost_usd",
        "switching_cost_usd", "net_usd", "switches", "evictions", "sla_misses", "jobs_served",
        "nodes_idle", "nodes_mine", "nodes_ai")
    # A power contract's lines follow, only when a site has one.
    contracts = any(ledger.contracts for _, _, ledger in runs)
    if contracts:
        columns += CONTRACT_COLUMNS
    # Demand-response lines and each site's average draw (kW) they come from follow, only
    # when a site has a program.
    dr_sites = next((ledger.programs.site_names for _, _, ledger in runs
                     if ledger.programs is not None), None)
    if dr_sites is not None:
        columns += (*DR_COLUMNS, *(f"site_kw:{name}" for name in dr_sites))
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for name, baseline, ledger in runs:
            lines = (ledger.contract_unused_cost, ledger.resale_revenue, ledger.demand_charge,
                     ledger.coincident_peak_charge)
            times = np.datetime_as_string(ledger.times_s.astype("datetime64[s]"), unit="s")
            for k in range(ledger.times_s.shape[0]):
                writer.writerow([
                    f"{times[k]}Z", name, baseline,
                    f"{ledger.mine_revenue[k]:.4f}", f"{ledger.ai_revenue[k]:.4f}",
                    f"{ledger.power_cost[k]:.4f}", f"{ledger.switching_cost[k]:.4f}",
                    f"{ledger.net[k]:.4f}", int(ledger.switches[k]), int(ledger.evictions[k]),
                    int(ledger.sla_misses[k]), int(ledger.jobs_served[k]),
                    *(int(x) for x in ledger.modes[k]),
                    *((f"{line[k]:.4f}" for line in lines) if contracts else ()),
                    *(_dr_cells(ledger.programs, k, len(dr_sites))
                      if dr_sites is not None else ()),
                ])


def _dr_cells(lines: ProgramLines | None, k: int, sites: int) -> list[str]:
    if lines is None:
        return [""] * (len(DR_COLUMNS) + sites)
    return [f"{lines.availability[k]:.4f}", f"{lines.energy[k]:.4f}",
            f"{lines.shortfall[k]:.4f}", f"{lines.curtailment[k]:.4f}",
            *(f"{kw:.4f}" for kw in lines.site_kw[k].tolist())]
