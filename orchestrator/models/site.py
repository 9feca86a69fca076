"""Sites: the power envelope and the fees that apply to every node in them."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from orchestrator.models.base import StrictModel


class Site(StrictModel):
    """One power envelope (a hall, a substation) shared by ASICs and GPU nodes."""

    name: str = Field(default="default", min_length=1)
    power_cap_kw: float | None = Field(
        default=None, gt=0, description="Most power the site may draw, kW (None: no cap)."
    )
    tariff_adder_usd_mwh: float = Field(
        default=0.0, description="Added to the market power price: transmission, fees, taxes."
    )
    pool_fee: float = Field(default=0.02, ge=0, lt=1, description="Mining pool fee (FPPS), share.")
    ai_platform_fee: float = Field(
        default=0.0, ge=0, lt=1, description="Share of AI rental revenue kept by the platform."
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of the site (e.g. America/Chicago): the local time policies "
        "read through DecisionContext.local_time.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'America/Chicago'"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
