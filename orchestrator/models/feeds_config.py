"""Configuration of the live market feeds (adapters/market reads it)."""

from __future__ import annotations

from pydantic import Field

from orchestrator.models.base import StrictModel


class LiveMarketConfig(StrictModel):
    """Where live prices come from and how long each value may be trusted."""

    power_usd_mwh_fixed: float | None = Field(
        default=None, description="Fixed tariff, USD/MWh, when no power price feed is used."
    )
    gpu_usd_per_gpu_hour_fixed: dict[str, float] = Field(
        default_factory=dict, description="Fixed rental price per GPU model, USD/GPU-hour."
    )
