"""The plan file: a site (a site config, extended in place), a candidate conversion,
financing, the sizes to try and the market scenarios.

Errors name the plan file and the field, like the site config's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from orchestrator.errors import ConfigError
from orchestrator.models.base import StrictModel
from orchestrator.models.config import (
    HashpivotConfig,
    format_validation_error,
    load_config,
    read_yaml,
)

# Availability of each Uptime Institute tier (share of the year a tenant's capacity is up):
# the figures operators and tenants quote for Tier I-IV.
TIER_AVAILABILITY = {1: 0.99671, 2: 0.99741, 3: 0.99982, 4: 0.99995}


class Conversion(StrictModel):
    """What one converted MW becomes and what it costs."""

    gpu_profile: str = Field(
        default="h100-sxm-8x", description="Hardware profile of the new GPU nodes."
    )
    gpus_per_mw: float = Field(
        default=800.0, gt=0, description="GPUs one converted MW of interconnect hosts."
    )
    capex_per_gpu_usd: float = Field(default=30_000.0, ge=0, description="GPU price, USD.")
    capex_per_mw_usd: float = Field(
        default=6_500_000.0, ge=0, description="Conversion works per MW: power, cooling, hall."
    )
    tier: Literal[1, 2, 3, 4] = Field(default=3, description="Uptime tier built to.")
    tier_capex_per_mw_usd: float = Field(
        default=1_000_000.0, ge=0, description="Redundancy the tier adds per MW, USD."
    )
    tier_opex_per_mw_year_usd: float = Field(
        default=150_000.0, ge=0, description="Running cost of the tier per MW and year, USD."
    )
    build_months: float = Field(
        default=9.0, ge=0, description="Months the converted MW earns nothing while it is built."
    )

    @property
    def availability(self) -> float:
        return TIER_AVAILABILITY[self.tier]


class Financing(StrictModel):
    discount_rate: float = Field(default=0.12, gt=-1, lt=10, description="Per year.")
    horizon_years: float = Field(default=5.0, gt=0, le=50, description="Years evaluated.")
    gpu_life_years: float = Field(
        default=5.0, gt=0, description="Straight-line depreciation of GPUs to zero."
    )
    asic_resale_usd_per_th: float = Field(
        default=4.0, ge=0, description="Cash for an ASIC sold when its MW is converted, per TH/s."
    )
    asic_residual_share: float = Field(
        default=0.0, ge=0, le=1, description="Kept ASICs' worth at the horizon, share of resale."
    )
    facility_residual_share: float = Field(
        default=0.0, ge=0, le=1, description="Conversion works' worth at the horizon, share."
    )


#: Sizes one plan runs at most (each is a backtest per scenario).
MAX_SIZES = 500


class Sizes(StrictModel):
    step_mw: float | None = Field(default=None, gt=0, description="0 … all MW in these steps.")
    mw: list[float] | None = Field(
        default=None,
        description="Or the sizes themselves, MW; 0 (the hall as it is, which every size "
        "is set against) always runs.",
    )

    @field_validator("mw")
    @classmethod
    def _non_negative(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(x < 0 for x in v)):
            raise ValueError("sizes are a non-empty list of MW >= 0")
        if v is not None and len(set(v)) + 1 > MAX_SIZES:
            raise ValueError(f"at most {MAX_SIZES} sizes")
        return None if v is None else sorted({0.0, *v})

    @model_validator(mode="after")
    def _one_of(self) -> Sizes:
        if (self.step_mw is None) == (self.mw is None):
            raise ValueError("set exactly one of step_mw and mw")
        return self


class Stress(StrictModel):
    """A recorded window with markets changed by factors (1 = as recorded)."""

    name: str = Field(min_length=1)
    start: datetime | None = Field(default=None, description="Window start; default: first.")
    hashprice: float = Field(default=1.0, gt=0, description="Factor on hashprice.")
    gpu_rent: float = Field(default=1.0, gt=0, description="Factor on GPU rent.")
    power: float = Field(default=1.0, gt=0, description="Factor on the power price.")
    load_factor: float | None = Field(
        default=None, gt=0, le=1, description="AI demand as a share of the site's GPUs."
    )


class Bootstrap(StrictModel):
    draws: int = Field(default=200, ge=0, le=100_000, description="0: no bootstrap.")
    block_days: int = Field(default=30, ge=1, description="Days of history per block.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1,
                      description="Seed of the draws (the same seed, the same draws).")


class Scenarios(StrictModel):
    starts: list[datetime] = Field(
        default_factory=list, validate_default=True,
        description="Start of each recorded window replayed.",
    )
    window_days: int = Field(
        default=365, ge=1, description="Length of each window, whole days (its days are "
        "repeated over the horizon)."
    )
    stresses: list[Stress] = Field(default_factory=list)
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)

    @field_validator("starts")
    @classmethod
    def _utc(cls, v: list[datetime]) -> list[datetime]:
        if not v:
            raise ValueError("name at least one window start")
        return [d if d.tzinfo else d.replace(tzinfo=UTC) for d in v]


class Valuations(StrictModel):
    """Market valuations per MW the plan's own figures are set beside."""

    mining_usd_per_mw: float = Field(default=4_500_000.0, ge=0)
    ai_usd_per_mw: float = Field(default=20_000_000.0, ge=0)


class PlanFile(StrictModel):
    site: str = Field(description="Site config file (relative to the plan file).")
    site_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Merged over the site config (e.g. a larger fleet)."
    )
    site_name: str | None = Field(default=None, description="Site converted; default: first.")
    policy: str | None = Field(default=None, description="Policy run; default: the site's.")
    policy_params: dict[str, Any] | None = None
    conversion: Conversion = Field(default_factory=Conversion)
    financing: Financing = Field(default_factory=Financing)
    sizes: Sizes
    scenarios: Scenarios
    objective: Literal["mean", "worst"] = Field(
        default="mean", description="Pick the size with the best mean or worst-case NPV."
    )
    valuations: Valuations = Field(default_factory=Valuations)

    @model_validator(mode="after")
    def _horizon_covers_build(self) -> PlanFile:
        fin = self.financing
        # The cash flows are monthly: the horizon as the model counts it.
        months = round(fin.horizon_years * 12)
        if self.conversion.build_months >= months:
            raise ValueError(
                f"financing.horizon_years ({fin.horizon_years:g}, {months} whole months) must "
                f"be longer than conversion.build_months ({self.conversion.build_months:g} "
                "months)"
            )
        if fin.horizon_years > fin.gpu_life_years + 1e-9:
            raise ValueError(
                f"financing.horizon_years ({fin.horizon_years:g}) is longer than "
                f"financing.gpu_life_years ({fin.gpu_life_years:g}): the plan buys the GPUs "
                "once, so a longer horizon would have them earn past their life"
            )
        return self


class Plan:
    """A checked plan: the plan file, the site config it extends and where it came from."""

    def __init__(self, plan: PlanFile, site: HashpivotConfig, source: str):
        self.file = plan
        self.site = site
        self.source = source


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_plan(path: Path | str) -> Plan:
    """Read and check a plan file and the site config it names."""
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    try:
        plan = PlanFile(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, data)) from None
    site_path = (path.parent / plan.site).resolve()
    site = load_config(site_path)
    if plan.site_overrides:
        try:
            merged = HashpivotConfig(
                **_merge(site.model_dump(exclude_unset=True), plan.site_overrides)
            )
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{source}: site_overrides")) from None
        merged._base_dir = site_path.parent
        site = merged
    _check_against_site(plan, site, source)
    return Plan(plan, site, source)


def _check_against_site(plan: PlanFile, site: HashpivotConfig, source: str) -> None:
    from orchestrator.models.build import profile_catalog

    names = [s.name for s in site.sites]
    name = plan.site_name or names[0]
    if name not in names:
        raise ConfigError(
            f"no site {name!r} in the site config; sites: {names}", source=source, field="site_name"
        )
    target = site.sites[names.index(name)]
    if target.power_cap_kw is None:
        raise ConfigError(
            f"site {name!r} needs power_cap_kw: sizes are shares of its MW",
            source=source,
            field="site",
        )
    catalog = profile_catalog(site)
    conv = plan.conversion
    profile = catalog.get(conv.gpu_profile)
    if profile is None or profile.gpus == 0:
        gpu = sorted(n for n, p in catalog.items() if p.gpus > 0)
        raise ConfigError(
            f"{conv.gpu_profile!r} is not a GPU profile; GPU profiles: {gpu}",
            source=source,
            field="conversion.gpu_profile",
        )
    watts_per_mw = conv.gpus_per_mw / profile.gpus * profile.watts_ai
    if watts_per_mw > 1e6 * 1.0001:
        raise ConfigError(
            f"{conv.gpus_per_mw:g} GPUs of {conv.gpu_profile} draw {watts_per_mw / 1e6:.2f} MW "
            "per converted MW; lower gpus_per_mw",
            source=source,
            field="conversion.gpus_per_mw",
        )
    if site.market is None:
        raise ConfigError(
            "the site config needs recorded market data (market)", source=source, field="site"
        )
    if profile.gpu_model not in site.market.gpu_usd_per_gpu_hour:
        raise ConfigError(
            f"the site config prices no {profile.gpu_model} rental "
            "(market.gpu_usd_per_gpu_hour): converted MW would earn nothing from AI",
            source=source, field="conversion.gpu_profile")
    if site.demand is None:
        raise ConfigError("the site config needs an AI demand trace (demand): converted MW "
                          "earn from the jobs it brings", source=source, field="site")
    max_mw = target.power_cap_kw / 1000.0
    if plan.sizes.step_mw is not None and max_mw / plan.sizes.step_mw + 1 > MAX_SIZES:
        raise ConfigError(
            f"a step of {plan.sizes.step_mw:g} MW over the site's {max_mw:g} MW gives more "
            f"than {MAX_SIZES} sizes", source=source, field="sizes.step_mw")
    sizes = plan.sizes.mw or []
    if any(x > max_mw + 1e-9 for x in sizes):
        raise ConfigError(
            f"a size exceeds the site's {max_mw:g} MW", source=source, field="sizes.mw"
        )
    if plan.policy_params is not None and plan.policy is None:
        raise ConfigError("policy_params needs policy", source=source, field="policy_params")
