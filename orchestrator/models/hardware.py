"""Hardware profiles: what a node can earn and draw in each mode.

A profile is shared by many nodes (a fleet table stores the profile index per node).
The built-in catalog is seeded from recorded specs, see `orchestrator/data/SOURCES.md`.
"""

from __future__ import annotations

import csv
from enum import StrEnum
from functools import cache
from importlib import resources

from pydantic import Field, model_validator

from orchestrator.models.base import StrictModel

SHA256 = "sha256"


class HardwareKind(StrEnum):
    ASIC = "asic"
    GPU = "gpu"


class HardwareProfile(StrictModel):
    """One model of machine as hashpivot sees it. Units are in the field names."""

    name: str = Field(min_length=1, description="Profile name nodes refer to, e.g. 'antminer-s21'.")
    kind: HardwareKind = Field(description="asic (SHA-256 only, no AI) or gpu.")
    mine_algorithm: str = Field(
        default=SHA256,
        description="Algorithm the node mines or sells hashpower for (sha256 for ASICs).",
    )
    mine_hashrate: float = Field(
        ge=0,
        description="Hashrate when mining, in the algorithm's unit (TH/s for sha256; "
        "the unit the hashpower price is quoted in for other algorithms).",
    )
    watts_mine: float = Field(ge=0, description="Wall power when mining, W.")
    watts_ai: float = Field(default=0.0, ge=0, description="Wall power at full AI load, W.")
    watts_idle: float = Field(ge=0, description="Wall power when idle or curtailed, W.")
    gpus: int = Field(default=0, ge=0, description="GPUs per node (0 for ASICs).")
    gpu_model: str | None = Field(
        default=None, description="GPU model the rental price is keyed by, e.g. 'H100_80GB_SXM5'."
    )
    mine_start_s: float = Field(
        default=60.0, ge=0, description="Time for mining to reach full rate, s."
    )
    mine_stop_s: float = Field(default=30.0, ge=0, description="Time to stop the miner, s.")
    ai_start_s: float = Field(default=300.0, ge=0, description="Time until AI pods can run, s.")
    ai_drain_s: float = Field(
        default=600.0,
        ge=0,
        description="Typical time for interruptible AI work to checkpoint and leave, s.",
    )
    wear_usd_per_switch: float = Field(
        default=0.0, ge=0, description="Ramp wear and handling cost charged per switch, USD."
    )

    @model_validator(mode="after")
    def _check_kind(self) -> HardwareProfile:
        if self.kind == HardwareKind.GPU and (self.gpus <= 0 or not self.gpu_model):
            raise ValueError("a gpu profile needs gpus > 0 and a gpu_model")
        if self.kind == HardwareKind.ASIC and self.gpus:
            raise ValueError("an asic profile has no gpus")
        # Idle is every node's lowest draw: the power cap sheds towards it.
        if self.watts_idle > self.watts_mine:
            raise ValueError("watts_idle cannot exceed watts_mine")
        if self.kind == HardwareKind.GPU and self.watts_idle > self.watts_ai:
            raise ValueError("watts_idle cannot exceed watts_ai on a gpu profile")
        return self

    @property
    def efficiency_j_per_th(self) -> float | None:
        if self.mine_algorithm != SHA256 or self.mine_hashrate <= 0:
            return None
        return self.watts_mine / self.mine_hashrate


# GPU nodes: 8-GPU servers are the unit rented on the neoclouds our data comes from.
# Wall power = GPUs × TDP + host overhead; idle ~ 25% of TDP per GPU + host idle.
# Mining on GPUs is modeled as selling hashpower (design §1); the rate and the algorithm
# here are placeholders an operator overrides with their own measured numbers.
_GPU_NODE_SPECS: tuple[tuple[str, str, int, float], ...] = (
    # profile name, rental price key, GPUs, TDP per GPU (W) from the Epoch AI specs
    ("h100-sxm-8x", "H100_80GB_SXM5", 8, 700.0),
    ("h100-pcie-8x", "H100_80GB_PCIe", 8, 350.0),
    ("h200-sxm-8x", "H200_141GB", 8, 700.0),
    ("b200-8x", "B200_180GB", 8, 1000.0),
    ("a100-sxm-8x", "A100_80GB_SXM4", 8, 400.0),
)
_HOST_WATTS_BUSY = 1500.0
_HOST_WATTS_IDLE = 600.0
GPU_HASHPOWER_ALGORITHM = "gpu-hashpower"


@cache
def builtin_catalog() -> dict[str, HardwareProfile]:
    """Profiles for the ASIC models in the bundled catalog plus common 8-GPU servers."""
    catalog: dict[str, HardwareProfile] = {}
    data = resources.files("orchestrator") / "data" / "hardware" / "asic_models.csv"
    with data.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            watts = float(row["power_watts"])
            name = row["id"]
            catalog[name] = HardwareProfile(
                name=name,
                kind=HardwareKind.ASIC,
                mine_hashrate=float(row["hash_rate_ths"]),
                watts_mine=watts,
                watts_idle=min(15.0, watts),  # control board only when sleeping
                wear_usd_per_switch=0.05,
            )
    for name, model, gpus, tdp in _GPU_NODE_SPECS:
        catalog[name] = HardwareProfile(
            name=name,
            kind=HardwareKind.GPU,
            mine_algorithm=GPU_HASHPOWER_ALGORITHM,
            # One unit = one GPU's worth of hashpower; priced per GPU-day by the market.
            mine_hashrate=float(gpus),
            watts_mine=gpus * tdp * 0.8 + _HOST_WATTS_IDLE,
            watts_ai=gpus * tdp + _HOST_WATTS_BUSY,
            watts_idle=gpus * tdp * 0.1 + _HOST_WATTS_IDLE,
            gpus=gpus,
            gpu_model=model,
            wear_usd_per_switch=0.5,
        )
    return catalog
