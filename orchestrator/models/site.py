"""Sites: the power envelope and the fees that apply to every node in them."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from orchestrator.models.base import StrictModel
from orchestrator.models.contract import FixedPrice, PowerContract


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

    contract: PowerContract | None = Field(
        default=None,
        description="The site's power contract: fixed or time-of-use price, demand and "
        "coincident-peak charges (docs/contracts.md). Default: spot price plus the adder.",
    )

    @model_validator(mode="after")
    def _contracted_block(self) -> Site:
        price = None if self.contract is None else self.contract.price
        if (isinstance(price, FixedPrice) and price.resale_at_spot
                and price.contracted_kw is None and self.power_cap_kw is None):
            raise ValueError(
                "contract.price.contracted_kw: resale_at_spot needs the contracted block "
                "size (contracted_kw) or the site's power_cap_kw"
            )
        return self

    @property
    def contracted_kw(self) -> float:
        """Size of a fixed-price block resold at spot, kW (0: none)."""
        price = None if self.contract is None else self.contract.price
        if not isinstance(price, FixedPrice) or not price.resale_at_spot:
            return 0.0
        return float(price.contracted_kw or self.power_cap_kw or 0.0)

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
