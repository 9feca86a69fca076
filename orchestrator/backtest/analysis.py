"""What a backtest's ledgers say beyond their totals: money per month, drawdown and the
worst day, exposure to power-price spikes, curtailed node-hours. Pure numpy over the
per-step ledger, so the report, summary.json and tests read the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

#: Steps whose power price is at or above this quantile of the period count as spikes.
SPIKE_QUANTILE = 0.99


@dataclass(frozen=True, slots=True)
class RunAnalysis:
    """One run's ledger, read for the report."""

    #: Net USD per calendar month (UTC), "YYYY-MM" → USD.
    net_by_month: dict[str, float]
    #: Largest fall of cumulative net from a previous peak, USD (≥ 0).
    max_drawdown_usd: float
    #: The UTC day with the lowest net and that net, USD.
    worst_day: str
    worst_day_usd: float
    #: Steps at or above the period's spike price, the power paid then and the net made then.
    spike_price_usd_mwh: float
    spike_steps: int
    spike_power_cost_usd: float
    spike_net_usd: float
    #: Node-hours spent idle (curtailed or parked).
    idle_node_hours: float

    def as_dict(self) -> dict[str, object]:
        return {
            "net_by_month_usd": self.net_by_month,
            "max_drawdown_usd": self.max_drawdown_usd,
            "worst_day": self.worst_day,
            "worst_day_usd": self.worst_day_usd,
            "spike_price_usd_mwh": self.spike_price_usd_mwh,
            "spike_steps": self.spike_steps,
            "spike_power_cost_usd": self.spike_power_cost_usd,
            "spike_net_usd": self.spike_net_usd,
            "idle_node_hours": self.idle_node_hours,
        }


def max_drawdown(net: F64) -> float:
    """Largest peak-to-trough fall of the cumulative net (the start counts as a peak at 0)."""
    if net.size == 0:
        return 0.0
    cumulative = np.concatenate([[0.0], np.cumsum(net)])
    return float(np.max(np.maximum.accumulate(cumulative) - cumulative))


def sums_by(labels: npt.NDArray[np.str_], values: F64) -> dict[str, float]:
    """Values summed per label, labels in order of first appearance (time order)."""
    keys, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=keys.shape[0])
    order = np.argsort(first, kind="stable")
    return {str(keys[i]): float(sums[i]) for i in order}


def analyse(times_s: F64, net: F64, power_cost: F64, modes: npt.NDArray[np.int64],
            power_usd_mwh: F64, step_s: float) -> RunAnalysis:
    """`power_usd_mwh`: the realized price per step (the highest site's, for spikes)."""
    stamps = times_s.astype("datetime64[s]")
    by_month = sums_by(np.datetime_as_string(stamps, unit="M"), net)
    by_day = sums_by(np.datetime_as_string(stamps, unit="D"), net)
    worst = min(by_day.items(), key=lambda kv: kv[1]) if by_day else ("", 0.0)
    finite = power_usd_mwh[np.isfinite(power_usd_mwh)]
    spike_price = float(np.quantile(finite, SPIKE_QUANTILE)) if finite.size else float("inf")
    spike = power_usd_mwh >= spike_price
    return RunAnalysis(
        net_by_month=by_month,
        max_drawdown_usd=max_drawdown(net),
        worst_day=worst[0],
        worst_day_usd=float(worst[1]),
        spike_price_usd_mwh=spike_price,
        spike_steps=int(np.count_nonzero(spike)),
        spike_power_cost_usd=float(power_cost[spike].sum()),
        spike_net_usd=float(net[spike].sum()),
        idle_node_hours=float(modes[:, 0].sum() * step_s / 3600.0),
    )
