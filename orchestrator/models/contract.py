"""A site's power contract: how its energy is priced and which grid charges it pays.

Every field names its unit. The default contract is the market price series plus the
site's tariff adder (`price: spot`), with no demand or coincident-peak charge: a site
without a `contract:` block behaves exactly as before. See docs/contracts.md for the
formulas the score table and the backtest ledger apply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import AwareDatetime, Field, field_validator, model_validator

from orchestrator.models.base import StrictModel
from orchestrator.models.feeds_config import HeaderSecret, HttpSettings
from orchestrator.models.sources import SeriesSource, TableSource

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)


def _every_day() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class FixedPrice(StrictModel):
    """A fixed price per MWh for a contracted block of power, optionally resold at spot."""

    kind: Literal["fixed"] = "fixed"
    usd_mwh: float = Field(description="Contract price of each MWh, USD/MWh.")
    resale_at_spot: bool = Field(
        default=False,
        description="Energy of the contracted block the site does not use is sold back at "
        "the market (spot) price: using a MWh then costs what reselling it would have "
        "earned, and curtailing earns spot − contract.",
    )
    contracted_kw: float | None = Field(
        default=None,
        gt=0,
        description="Size of the contracted block, kW (paid for every hour, used or "
        "resold). Needed with resale_at_spot; default: the site's power_cap_kw.",
    )


class TimeOfUsePrice(StrictModel):
    """A weekly schedule of USD/MWh by local hour and weekday, in the site's timezone."""

    kind: Literal["time_of_use"] = "time_of_use"
    default_usd_mwh: float = Field(description="Price of hours no period covers, USD/MWh.")
    periods: list[TouPeriod] = Field(
        default_factory=list,
        description="Priced periods; where two overlap, the later one in the list wins.",
    )


class TouPeriod(StrictModel):
    """Local hours [start_hour, end_hour) on the listed weekdays priced at usd_mwh."""

    days: list[Weekday] = Field(
        default_factory=_every_day, min_length=1,
        description="Weekdays the period applies on (local time).",
    )
    start_hour: int = Field(ge=0, le=23, description="First local hour of the period (0-23).")
    end_hour: int = Field(ge=1, le=24, description="Local hour the period ends (1-24, exclusive).")
    usd_mwh: float = Field(description="Price in the period, USD/MWh.")

    @model_validator(mode="after")
    def _ordered(self) -> TouPeriod:
        if self.end_hour <= self.start_hour:
            raise ValueError(
                f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})"
            )
        return self


class CreditHours(StrictModel):
    """Local hours [start_hour, end_hour) on the listed weekdays."""

    days: list[Weekday] = Field(
        default_factory=_every_day, min_length=1,
        description="Weekdays the hours apply on (local time).",
    )
    start_hour: int = Field(ge=0, le=23, description="First local hour (0-23).")
    end_hour: int = Field(ge=1, le=24, description="Local hour they end (1-24, exclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> CreditHours:
        if self.end_hour <= self.start_hour:
            raise ValueError(
                f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})"
            )
        return self


class CurtailmentCredit(StrictModel):
    """An interruptible/curtailment credit: in the listed local hours, each MWh the site
    draws below `baseline_kw` earns `usd_mwh`."""

    usd_mwh: float = Field(ge=0, description="Credit per MWh curtailed, USD/MWh.")
    baseline_kw: float = Field(
        gt=0, description="The draw curtailment is measured from, kW (credit: baseline − "
        "draw, never below 0).")
    hours: list[CreditHours] = Field(
        min_length=1, description="Local hours the credit is paid in.")


class CoincidentPeak(StrictModel):
    """A coincident-peak transmission charge (e.g. ERCOT 4CP): a charge per kW of the
    site's average draw in the system's peak intervals of the season."""

    months: list[int] = Field(
        min_length=1, description="Months of the peak season (1-12), e.g. [6, 7, 8, 9]."
    )
    usd_per_kw: float = Field(
        ge=0,
        description="Charge per kW of the site's average draw over the season's peak "
        "intervals, USD/kW (a year's transmission charge for ERCOT 4CP).",
    )
    peak_intervals: int = Field(
        default=4, ge=1,
        description="Number of peak intervals whose average draw is charged (4 for 4CP).",
    )
    alert_interval_h: float = Field(
        default=1.0, gt=0,
        description="Length of each interval of the alert series, hours (a row's value "
        "holds until the next row; 1 for hourly alerts).",
    )
    alerts: SeriesSource | float = Field(
        description="Peak alerts: a recorded series (or a constant) of the probability, 0-1, "
        "that each interval is a peak interval; 0/1 for plain alerts.",
    )

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[int]) -> list[int]:
        bad = [m for m in value if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"months must be 1-12, got {bad}")
        return sorted(set(value))

    @field_validator("alerts")
    @classmethod
    def _probability(cls, value: SeriesSource | float) -> SeriesSource | float:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError(f"a constant alert probability must be in [0, 1], got {value}")
        return value


class EventCalendarSource(TableSource):
    """A recorded calendar of demand-response events: one row per event, read like a
    recorded series (a path or `bundled:…`; stamps without a zone are read in
    `timezone`). Events that overlap or repeat are merged into one (docs/contracts.md)."""

    start_column: str = Field(
        default="start", description="Column with the time the event begins.")
    end_column: str = Field(default="end", description="Column with the time it ends.")
    called_column: str | None = Field(
        default=None,
        description="Column with the time the grid operator called the event; a blank "
        "cell (or no column) means `notice_min` before the start.",
    )


class DemandResponse(StrictModel):
    """A demand-response commitment: during a called event the site draws at most
    `max_draw_kw` (a firm service level), from `response_min` after the call (and not
    before the event's start) until its end."""

    program: str = Field(
        default="demand response", min_length=1,
        description="Name of the program, as explanations and the report show it.",
    )
    max_draw_kw: float = Field(
        ge=0, description="Firm service level: the site's draw during an event, kW, at most.")
    committed_kw: float = Field(
        gt=0, description="Reduction the program pays availability for, kW (the MW "
        "committed × 1000).")
    notice_min: float = Field(
        default=0.0, ge=0,
        description="Minutes between a call and the event's start, for calendar rows "
        "without a called time.")
    response_min: float = Field(
        default=10.0, ge=0,
        description="Minutes the site has after a call to be at max_draw_kw.")
    lead_min: float = Field(
        default=0.0, ge=0,
        description="Minutes before an event is due that decisions start holding the site "
        "at its level (never before the call): the time actuation needs to get there, "
        "e.g. the ASIC ramp's windows for the miners to shed. Default 0: the last "
        "decision before the due time sheds.")
    availability_usd_per_kw_month: float = Field(
        default=0.0, ge=0,
        description="Payment for being available, USD per committed kW per month "
        "(prorated by the hours of the month).")
    energy_usd_mwh: float = Field(
        default=0.0, ge=0,
        description="Payment per MWh of reduction below the baseline during an event, "
        "USD/MWh.")
    baseline_h: float = Field(
        default=1.0, gt=0,
        description="The baseline is the site's average draw over this many hours before "
        "the call, kW.")
    shortfall_usd_mwh: float = Field(
        default=0.0, ge=0,
        description="Penalty per MWh drawn above max_draw_kw during an event, USD/MWh.")
    events: EventCalendarSource = Field(description="The recorded event calendar.")
    over_leases: bool = Field(
        default=False,
        description="The commitment comes before AI leases: during an event, when shedding "
        "miners and unleased loads does not bring the site to the event's limit, the power "
        "cap allocation may shed protected AI leases too (least value per watt first). "
        "Default: leases are never shed and the shortfall is booked.")


class GridWebhook(StrictModel):
    """The controller accepts grid messages POSTed to `/grid/events` on its HTTP port
    (the metrics port), with `Authorization: Bearer TOKEN`."""

    token: HeaderSecret = Field(
        description="Where the bearer token is read from at each request (an environment "
        "variable or a file, e.g. a mounted Kubernetes Secret).")


class LiveSignals(StrictModel):
    """Live demand-response events and peak alerts for a site (docs/contracts.md, "Live
    signals"): a polled URL, a watched file and/or an authenticated webhook, each sending
    the JSON body `GridMessage` describes. What arrives is journaled and joins the
    recorded calendar and alert series."""

    url: str | None = Field(
        default=None, min_length=1, description="URL polled for a GridMessage (GET, JSON).")
    poll_s: float = Field(default=60.0, gt=0, description="Seconds between polls of url.")
    headers: dict[str, HeaderSecret] = Field(
        default_factory=dict, description="Request headers of the poll (API keys), read "
        "from an environment variable or file at each request.")
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(timeout_s=5.0, retries=0,
                                             max_response_bytes=1_000_000),
        description="Timeout, size limit and URL policy of the poll (a slow or silent "
        "source is given up on after timeout_s; the last known events stay).")
    file: str | None = Field(
        default=None, min_length=1,
        description="A file holding a GridMessage, re-read when it changes (relative "
        "to the config file's folder).")
    webhook: GridWebhook | None = Field(
        default=None, description="Accept GridMessages POSTed to the controller's port.")
    max_bytes: int = Field(
        default=1_000_000, ge=1024,
        description="Largest message read from the file or the webhook, bytes.")
    ack_url: str | None = Field(
        default=None, min_length=1,
        description="URL the controller POSTs a JSON acknowledgement to when an event "
        "starts or ends (best effort, same http settings).")

    @model_validator(mode="after")
    def _some(self) -> LiveSignals:
        if self.url is None and self.file is None and self.webhook is None:
            raise ValueError("give at least one of url, file or webhook")
        return self


class GridEvent(StrictModel):
    """One demand-response event of a GridMessage, keyed by `id`."""

    id: str = Field(min_length=1, max_length=200, description="The event's identifier.")
    start: AwareDatetime = Field(description="When the event begins (ISO 8601 with zone).")
    end: AwareDatetime = Field(description="When it ends (ISO 8601 with zone).")
    called_at: AwareDatetime | None = Field(
        default=None, description="When the grid operator called it (default: when the "
        "controller first receives it).")
    max_draw_kw: float | None = Field(
        default=None, ge=0, description="The site's draw during this event, kW, at most "
        "(default: the program's max_draw_kw).")
    status: Literal["active", "cancelled"] = Field(
        default="active", description="'cancelled' ends the event (see docs).")
    sent_at: AwareDatetime | None = Field(
        default=None, description="When this version was sent (default: the message's).")

    @model_validator(mode="after")
    def _ordered(self) -> GridEvent:
        if self.end <= self.start:
            raise ValueError(f"event {self.id!r}: end ({self.end}) must be after start "
                             f"({self.start})")
        return self


class GridAlert(StrictModel):
    """A peak alert: the probability (0-1) that the interval starting at `time` is a
    coincident-peak interval."""

    time: AwareDatetime
    probability: float = Field(ge=0, le=1)


class GridMessage(StrictModel):
    """The JSON body every live source sends (docs/contracts.md)."""

    site: str | None = Field(
        default=None, description="The site it is for (needed when several sites take "
        "webhook messages).")
    sent_at: AwareDatetime | None = Field(default=None, description="When it was sent.")
    events: list[GridEvent] = Field(default_factory=list, max_length=1000)
    alerts: list[GridAlert] = Field(default_factory=list, max_length=10_000)


def stamp(value: datetime | None) -> float | None:
    """Seconds since the epoch of an aware time (None stays None)."""
    return None if value is None else value.timestamp()


class PowerContract(StrictModel):
    """How a site pays for power (see docs/contracts.md)."""

    price: Literal["spot"] | FixedPrice | TimeOfUsePrice = Field(
        default="spot",
        description="'spot': the market power series plus the tariff adder; a fixed price "
        "(with or without resale at spot); or a time-of-use schedule.",
    )
    demand_charge_usd_per_kw_month: float = Field(
        default=0.0, ge=0,
        description="Charge per kW of the month's highest hourly average site draw, "
        "USD/kW-month.",
    )
    demand_near_peak_share: float = Field(
        default=0.02, ge=0, lt=1,
        description="The site counts as at its month-to-date peak (and its energy carries "
        "the demand charge's marginal cost) when its draw is within this share of the peak.",
    )
    coincident_peak: CoincidentPeak | None = Field(
        default=None, description="A coincident-peak program (e.g. ERCOT 4CP)."
    )
    demand_response: DemandResponse | None = Field(
        default=None, description="A demand-response commitment and its event calendar."
    )
    curtailment_credit: CurtailmentCredit | None = Field(
        default=None, description="An interruptible/curtailment credit in listed hours."
    )
    live: LiveSignals | None = Field(
        default=None, description="Live demand-response events and peak alerts (a polled "
        "URL, a watched file, a webhook), joining the recorded calendar and alerts.")

    @model_validator(mode="after")
    def _live_feeds_a_program(self) -> PowerContract:
        if self.live is not None and self.demand_response is None and self.coincident_peak is None:
            raise ValueError("live: live signals need a demand_response or a coincident_peak "
                             "program to apply to")
        return self

    @property
    def is_plain_spot(self) -> bool:
        """True when the contract changes nothing: spot price and no charges."""
        return (self.price == "spot" and self.demand_charge_usd_per_kw_month == 0.0
                and self.coincident_peak is None and self.demand_response is None
                and self.curtailment_credit is None)

    @property
    def has_programs(self) -> bool:
        """True when a program beyond the energy price applies: a demand charge, a
        coincident peak, demand response or a curtailment credit."""
        return (self.demand_charge_usd_per_kw_month > 0 or self.coincident_peak is not None
                or self.demand_response is not None or self.curtailment_credit is not None)


TimeOfUsePrice.model_rebuild()
