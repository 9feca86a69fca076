"""Bitcoin mining and GPU rental economics, in USD (design §1).

Every function is pure and accepts floats or numpy arrays (broadcasting), so the
same formula serves one node in a unit test and a million in a decision cycle.
Rates are per hour unless the name says otherwise.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TypeVar

import numpy as np
import numpy.typing as npt

FloatLike = TypeVar("FloatLike", float, npt.NDArray[np.float64])
#: A scalar or an array that broadcasts against the first argument.
Operand = float | npt.NDArray[np.float64]

TWO_POW_32 = float(2**32)
TARGET_BLOCK_SECONDS = 600.0
SECONDS_PER_DAY = 86_400.0
HALVING_INTERVAL_BLOCKS = 210_000
INITIAL_SUBSIDY_BTC = 50.0
BLOCKS_PER_DAY = SECONDS_PER_DAY / TARGET_BLOCK_SECONDS  # 144
DIFFICULTY_ADJUSTMENT_BLOCKS = 2016
MAX_DIFFICULTY_ADJUSTMENT_FACTOR = 4.0

# Dates of the halving blocks (UTC) from the chain: heights 210k, 420k, 630k, 840k.
HALVING_DATES: tuple[date, ...] = (
    date(2012, 11, 28),
    date(2016, 7, 9),
    date(2020, 5, 11),
    date(2024, 4, 20),
)
# Used only to extrapolate the next halving date when no block height is known.
_NEXT_HALVING_ESTIMATE = date(2028, 4, 17)


def network_hashrate_hs(difficulty: FloatLike) -> FloatLike:
    """Expected network hashrate (H/s) implied by a difficulty: D × 2^32 / 600."""
    return difficulty * TWO_POW_32 / TARGET_BLOCK_SECONDS


def subsidy_btc_at_height(height: int) -> float:
    """Block subsidy at a block height: 50 BTC halved every 210,000 blocks (0 after 64 halvings)."""
    if height < 0:
        raise ValueError(f"block height must be >= 0, got {height}")
    halvings = height // HALVING_INTERVAL_BLOCKS
    if halvings >= 64:
        return 0.0
    return INITIAL_SUBSIDY_BTC / (1 << halvings)


def subsidy_btc_on_date(day: date | datetime) -> float:
    """Block subsidy in force on a UTC date, from the recorded halving dates.

    The day of a halving counts as the new era; recorded daily data mixes both on that day.
    """
    if isinstance(day, datetime):
        day = (day.astimezone(UTC) if day.tzinfo else day).date()
    halvings = sum(1 for d in (*HALVING_DATES, _NEXT_HALVING_ESTIMATE) if day >= d)
    return INITIAL_SUBSIDY_BTC / (1 << halvings)


def hashprice_usd_per_th_day(
    difficulty: FloatLike,
    btc_usd: FloatLike,
    subsidy_btc: FloatLike,
    fees_btc_per_block: FloatLike,
) -> FloatLike:
    """Expected revenue of 1 TH/s for one day, USD.

    = 1e12 × 86400 × (subsidy + fees) × price / (D × 2^32).
    """
    return (
        1e12
        * SECONDS_PER_DAY
        * (subsidy_btc + fees_btc_per_block)
        * btc_usd
        / (difficulty * TWO_POW_32)
    )


def hashprice_usd_per_ph_day(
    difficulty: FloatLike,
    btc_usd: FloatLike,
    subsidy_btc: FloatLike,
    fees_btc_per_block: FloatLike,
) -> FloatLike:
    """Hashprice in the unit the industry quotes: USD per PH/s per day."""
    return hashprice_usd_per_th_day(difficulty, btc_usd, subsidy_btc, fees_btc_per_block) * 1000.0


def hashpower_usd_per_unit_day(btc_per_unit_day: FloatLike, btc_usd: FloatLike) -> FloatLike:
    """Price of selling one unit of an algorithm's hashpower for a day, USD.

    GPUs "mine" by selling hashpower (NiceHash-style) or mining another coin; both come
    down to BTC per unit per day, so ASIC SHA-256 and GPU algorithms share one formula.
    """
    return btc_per_unit_day * btc_usd


def mining_revenue_usd_per_hour(
    hashrate_units: FloatLike, usd_per_unit_day: FloatLike, pool_fee: FloatLike
) -> FloatLike:
    """Mining revenue of a node per hour: hashrate × price-per-unit-day / 24 × (1 − pool fee)."""
    return hashrate_units * usd_per_unit_day / 24.0 * (1.0 - pool_fee)


def ai_revenue_usd_per_hour(
    gpus: FloatLike, usd_per_gpu_hour: FloatLike, fill: FloatLike, platform_fee: FloatLike
) -> FloatLike:
    """AI rental revenue per hour for the GPUs real demand fills (fill in [0, 1])."""
    return gpus * usd_per_gpu_hour * fill * (1.0 - platform_fee)


def power_cost_usd_per_hour(
    watts: FloatLike, usd_per_mwh: FloatLike, adder_usd_per_mwh: Operand = 0.0
) -> FloatLike:
    """Power cost per hour: W / 1e6 × (price + tariff adders) USD/MWh."""
    return watts / 1e6 * (usd_per_mwh + adder_usd_per_mwh)  # type: ignore[return-value]


def breakeven_power_price_usd_mwh(
    hashprice_usd_ph_day: FloatLike, efficiency_j_per_th: FloatLike, pool_fee: float = 0.0
) -> FloatLike:
    """Power price at which a SHA-256 miner's revenue equals its power cost, USD/MWh.

    revenue/h per TH = hp/1000/24; power MWh/h per TH = eff/1e6 → 41.67 × hp / eff.
    """
    return hashprice_usd_ph_day * (1.0 - pool_fee) / 1000.0 / 24.0 * 1e6 / efficiency_j_per_th


def switching_cost_usd(
    downtime_h: FloatLike,
    lost_value_usd_per_h: FloatLike,
    wear_usd: Operand = 0.0,
    checkpoint_loss_usd: Operand = 0.0,
    lease_penalty_usd: Operand = 0.0,
) -> FloatLike:
    """One-off cost of a switch: output lost while draining/warming up plus the fixed losses.

    `lost_value_usd_per_h` is what the node would have earned in its new mode during the
    downtime (negative values are clipped: standing still never earns by itself).
    """
    lost = downtime_h * np.maximum(lost_value_usd_per_h, 0.0)
    return lost + wear_usd + checkpoint_loss_usd + lease_penalty_usd  # type: ignore[no-any-return]


def amortized_usd_per_hour(one_off_usd: FloatLike, expected_stay_h: float) -> FloatLike:
    """Spread a one-off switching cost over the hours the node is expected to stay."""
    return one_off_usd / max(expected_stay_h, 1e-9)


# --- power contracts (docs/contracts.md) ------------------------------------------------


def demand_charge_usd(peak_kw: FloatLike, usd_per_kw_month: float) -> FloatLike:
    """A month's demand charge: the month's highest hourly average draw (kW) × USD/kW-month."""
    return peak_kw * usd_per_kw_month


def demand_charge_marginal_usd_mwh(usd_per_kw_month: float, hours_in_month: float) -> float:
    """A MWh's share of the demand charge while the site draws at its month-to-date peak,
    USD/MWh: the charge per kW spread evenly over the month's hours, × 1000 per MWh.

    A site that holds its peak all month is charged the whole demand charge this way; a
    site below its peak adds nothing to the charge by drawing (the peak is already set),
    so the term applies only at or near the peak.
    """
    return usd_per_kw_month * 1000.0 / max(hours_in_month, 1.0)


def coincident_peak_expected_usd_mwh(
    probability: FloatLike, usd_per_kw: float, peak_intervals: int, interval_h: float
) -> FloatLike:
    """Expected coincident-peak cost of a MWh drawn in an interval, USD/MWh.

    The charge is usd_per_kw × the site's average draw over `peak_intervals` intervals,
    so each kW drawn in a peak interval adds usd_per_kw / peak_intervals; an interval of
    `interval_h` hours that is a peak with `probability` costs, per kWh drawn in it,
    probability × usd_per_kw / peak_intervals / interval_h (× 1000 per MWh).
    """
    return probability * usd_per_kw / peak_intervals / interval_h * 1000.0


def coincident_peak_charge_usd(
    kw: npt.NDArray[np.float64],
    probability: npt.NDArray[np.float64],
    usd_per_kw: float,
    peak_intervals: int,
) -> float:
    """A season's coincident-peak charge: usd_per_kw × the site's draw (kW) in its peak
    intervals, averaged over `peak_intervals` (each interval weighted by its probability
    of being a peak: 0/1 alerts give the plain average draw in the alerted intervals)."""
    return float(usd_per_kw * np.sum(np.asarray(kw) * np.asarray(probability)) / peak_intervals)


def resale_usd(unused_mwh: FloatLike, spot_usd_mwh: FloatLike) -> FloatLike:
    """Revenue from contracted energy the site did not use, sold back at spot."""
    return unused_mwh * spot_usd_mwh
