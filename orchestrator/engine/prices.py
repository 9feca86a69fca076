"""Align a market snapshot with a fleet's lookup tables: what one live cycle decides on."""

from __future__ import annotations

import numpy as np

from orchestrator import economics as econ
from orchestrator.errors import DataError
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import SHA256
from orchestrator.models.market import (
    MarketPrices,
    MarketSnapshot,
    Observed,
    ObservedTimes,
    no_finite_mining_price,
)


def snapshot_to_prices(snapshot: MarketSnapshot, fleet: FleetTable) -> MarketPrices:
    """Align a pydantic snapshot with a fleet's lookup tables (live and dry-run cycles)."""
    btc = snapshot.btc_usd.value
    with np.errstate(over="ignore", invalid="ignore"):  # checked below
        hp_th = econ.hashprice_usd_per_th_day(
            snapshot.difficulty.value,
            btc,
            snapshot.subsidy_btc.value,
            snapshot.fees_btc_per_block.value,
        )
    at = _seconds
    btc_at = at(snapshot.btc_usd)
    sha_at = min(btc_at, at(snapshot.difficulty), at(snapshot.fees_btc_per_block),
                 at(snapshot.subsidy_btc))
    unit = np.zeros(len(fleet.algorithms))
    unit_at = np.full(len(fleet.algorithms), np.nan)
    for j, alg in enumerate(fleet.algorithms):
        if alg == SHA256:
            unit[j], unit_at[j] = hp_th, sha_at
        elif alg in snapshot.hashpower_btc_per_unit_day:
            hashpower = snapshot.hashpower_btc_per_unit_day[alg]
            unit[j], unit_at[j] = hashpower.value * btc, min(at(hashpower), btc_at)
    if np.isinf(unit).any():
        # Each value in its range, yet together no real price: not decided on.
        raise DataError(f"the market {no_finite_mining_price(btc, snapshot.difficulty.value)}")
    gpu = np.array(
        [
            snapshot.gpu_usd_per_gpu_hour[m].value if m in snapshot.gpu_usd_per_gpu_hour else np.nan
            for m in fleet.gpu_models
        ]
    )
    gpu_at = np.array([at(snapshot.gpu_usd_per_gpu_hour[m])
                       if m in snapshot.gpu_usd_per_gpu_hour else np.nan
                       for m in fleet.gpu_models])
    power, power_at = [], []
    for site in fleet.sites:
        o = snapshot.power_usd_mwh.get(site.name, snapshot.power_usd_mwh.get("default"))
        if o is None:
            raise DataError(f"market snapshot has no power price for site {site.name!r}")
        power.append(o.value)
        power_at.append(at(o))
    return MarketPrices(
        btc_usd=btc,
        difficulty=snapshot.difficulty.value,
        fees_btc_per_block=snapshot.fees_btc_per_block.value,
        subsidy_btc=snapshot.subsidy_btc.value,
        usd_per_unit_day=unit,
        gpu_usd_per_gpu_hour=gpu,
        power_usd_mwh=np.array(power),
        oldest_observed_s=snapshot.oldest_observed_at().timestamp(),
        observed_source=ObservedTimes(
            btc_at, at(snapshot.difficulty), at(snapshot.fees_btc_per_block),
            at(snapshot.subsidy_btc), unit_at, gpu_at, np.array(power_at, dtype=np.float64)),
    )


def _seconds(value: Observed) -> float:
    return value.observed_at.timestamp()
