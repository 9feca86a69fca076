"""Configuration of ASIC fleets read and curtailed through their firmware's API (docs/asic.md).

ASICs are not Kubernetes nodes: hashpivot finds them by address range, reads them with
pyasic and curtails them in ramp-limited steps, sharing each site's power cap with the
GPU nodes there.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from orchestrator.models.base import StrictModel


def parse_address_range(text: str) -> list[str]:
    """Addresses of one range: `10.0.0.7`, `10.0.0.0/28` (hosts only) or `10.0.0.5-10.0.0.9`.

    Raises ValueError on anything else, so config errors name the bad range.
    """
    text = text.strip()
    if "-" in text:
        first_text, last_text = (part.strip() for part in text.split("-", 1))
        first = ipaddress.ip_address(first_text)
        last = ipaddress.ip_address(last_text)
        if first.version != last.version or int(last) < int(first):
            raise ValueError(f"address range {text!r} runs backwards or mixes IPv4 and IPv6")
        count = int(last) - int(first) + 1
        if count > MAX_ADDRESSES_PER_RANGE:
            raise ValueError(f"address range {text!r} holds {count} addresses, most is "
                             f"{MAX_ADDRESSES_PER_RANGE}")
        return [str(ipaddress.ip_address(int(first) + k)) for k in range(count)]
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        if net.num_addresses > MAX_ADDRESSES_PER_RANGE:
            raise ValueError(f"network {text!r} holds {net.num_addresses} addresses, most is "
                             f"{MAX_ADDRESSES_PER_RANGE}")
        hosts = list(net.hosts())
        return [str(a) for a in hosts] if hosts else [str(net.network_address)]
    return [str(ipaddress.ip_address(text))]


MAX_ADDRESSES_PER_RANGE = 65_536


class AsicRange(StrictModel):
    """Miners at a set of addresses, all in one site."""

    addresses: list[str] = Field(
        min_length=1,
        description="Addresses, networks (10.0.0.0/24) or ranges (10.0.0.5-10.0.0.90).",
    )
    site: str = Field(default="default", description="Site (power envelope) of these miners.")
    profile: str | None = Field(
        default=None,
        description="Hardware profile for every miner here; None: from the model pyasic "
        "reports, through `model_profiles` and the built-in catalog.",
    )
    rpc_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="cgminer-style API port when not 4028 (port forwarding); discovery "
        "still probes 4028, so set `firmware` too.",
    )
    web_port: int | None = Field(
        default=None, ge=1, le=65535, description="HTTP API port when not 80."
    )
    firmware: str | None = Field(
        default=None,
        description="Skip discovery and build this pyasic firmware family directly: "
        "'antminer', 'luxos', 'vnish', 'braiins', 'whatsminer' (needed with custom ports).",
    )
    model: str | None = Field(
        default=None, description="With `firmware`: the model, e.g. 'Antminer S19 XP'."
    )
    populated: bool | None = Field(
        default=None,
        description="Every address here holds a miner: one that has not answered since the "
        "controller started is counted at its nameplate draw (unreachable, never "
        "commanded) instead of being left out. Default: on when `firmware` is given, off "
        "for discovery ranges (an address where nothing answers is not a miner).",
    )

    @property
    def every_address_a_miner(self) -> bool:
        return self.firmware is not None if self.populated is None else self.populated

    @field_validator("addresses")
    @classmethod
    def _ranges_parse(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_address_range(text)
        return v

    def expand(self) -> list[str]:
        out: list[str] = []
        for text in self.addresses:
            out.extend(parse_address_range(text))
        return list(dict.fromkeys(out))


class RampConfig(StrictModel):
    """How fast the site's ASIC draw may move: both limits hold over any `window_s`."""

    max_kw_per_window: float | None = Field(
        default=500.0, gt=0,
        description="Most kW of miners curtailed plus resumed per window (None: no limit).",
    )
    max_miners_per_window: int | None = Field(
        default=200, ge=1,
        description="Most miners curtailed plus resumed per window (None: no limit).",
    )
    window_s: float = Field(default=60.0, gt=0, description="The window both limits apply to, s.")
    step_s: float = Field(
        default=10.0, gt=0,
        description="Seconds between ramp steps; each spends what is left of the window.",
    )


class AsicIoConfig(StrictModel):
    """Fan-out to the miners: bounded, time-limited, retried."""

    concurrency: int = Field(
        default=256, ge=1, le=10_000, description="Miners talked to at once per site actor."
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Per call to one miner, s.")
    retries: int = Field(default=1, ge=0, le=10, description="Extra tries after a failure.")
    retry_backoff_s: float = Field(default=0.5, ge=0, description="Wait before a retry, s.")
    rediscover_s: float = Field(
        default=3600.0, gt=0,
        description="Addresses that answered nothing are probed again this often, s.",
    )
    read_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Longest the controller waits for a site's readings; late sites keep "
        "their previous readings, marked stale.",
    )


class AsicConfig(StrictModel):
    """ASIC miners read and curtailed through their firmware API (pyasic)."""

    ranges: list[AsicRange] = Field(default_factory=list, description="Where the miners are.")
    model_profiles: dict[str, str] = Field(
        default_factory=dict,
        description="pyasic model name (e.g. 'Antminer S19 XP') → hardware profile, added "
        "to the built-in mapping by catalog name.",
    )
    opt_out: list[str] = Field(
        default_factory=list,
        description="Addresses hashpivot reads but never commands (manual control).",
    )
    protected: list[str] = Field(
        default_factory=list,
        description="Addresses never curtailed (hosting contracts); resumed when asleep.",
    )
    curtailed_watts: float = Field(
        default=15.0, ge=0, description="Draw of a sleeping miner when it reports none, W."
    )
    verify_after_s: float = Field(
        default=120.0, gt=0,
        description="A miner still hashing this long after a curtail ignored it: reported, "
        "counted at full draw, and the command is sent again.",
    )
    io: AsicIoConfig = Field(default_factory=AsicIoConfig)
    ramp: RampConfig = Field(default_factory=RampConfig)
    use_ray: bool = Field(
        default=True,
        description="One Ray actor per site does the I/O; off: an in-process event loop.",
    )

    @field_validator("opt_out", "protected")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for text in v:
            out.extend(parse_address_range(text))
        return out

    @model_validator(mode="after")
    def _no_overlap(self) -> AsicConfig:
        seen: dict[str, int] = {}
        for i, r in enumerate(self.ranges):
            if (r.model is not None) and r.firmware is None:
                raise ValueError(f"ranges[{i}]: model needs firmware")
            for address in r.expand():
                if address in seen:
                    raise ValueError(
                        f"address {address} is in ranges[{seen[address]}] and ranges[{i}]"
                    )
                seen[address] = i
        return self

    def sites(self) -> set[str]:
        return {r.site for r in self.ranges}
