"""What one miner told us, and which hardware profile it is. Pure: no I/O here."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources

from orchestrator.models.hardware import HardwareKind, HardwareProfile, builtin_catalog


@dataclass(frozen=True, slots=True)
class MinerReading:
    """One miner at one moment. `None` means the firmware did not say."""

    address: str
    reachable: bool
    read_at_s: float
    #: Why the miner is unreachable or its reading unusable.
    error: str | None = None
    make: str | None = None
    model: str | None = None
    firmware: str | None = None
    hashrate_ths: float | None = None
    expected_hashrate_ths: float | None = None
    watts: float | None = None
    watts_limit: float | None = None
    temperature_c: float | None = None
    #: Errors the miner itself reports (failed boards, fans, …).
    errors: tuple[str, ...] = field(default=())
    #: The firmware's own mining flag (several firmwares always answer True).
    is_mining: bool | None = None

    @property
    def hashing(self) -> bool:
        """Whether the miner is working. Measured hashrate decides: firmwares' mining
        flags are wrong both ways (some always say True; a Whatsminer hashing 67 TH/s was
        seen saying False). Without a hashrate the flag is all there is; without either,
        the miner is taken as hashing, so its draw is never counted as free."""
        if self.hashrate_ths is not None:
            return self.hashrate_ths > 0.0
        return self.is_mining is not False

    @property
    def efficiency_j_per_th(self) -> float | None:
        if self.watts is None or not self.hashrate_ths:
            return None
        return self.watts / self.hashrate_ths

    @property
    def label(self) -> str:
        parts = [p for p in (self.make, self.model) if p]
        text = " ".join(parts) or "unknown model"
        return f"{text} ({self.firmware})" if self.firmware else text


#: Physically possible sensor values; outside them a reading is a firmware or sensor
#: fault (a −83 °C board, a 4-billion-watt draw) and is dropped, never averaged in.
TEMPERATURE_RANGE_C = (-40.0, 150.0)
#: Above any single machine sold (the largest hydro units are under 1,000 TH/s, 12 kW).
MAX_HASHRATE_THS = 5_000.0
MAX_WATTS = 30_000.0


def _within(value: float | None, low: float, high: float) -> float | None:
    return value if value is not None and low <= value <= high else None


def unreachable(address: str, now_s: float, why: str) -> MinerReading:
    return MinerReading(address=address, reachable=False, read_at_s=now_s, error=why)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", text.lower())


@cache
def _catalog_names(with_brand: bool = True) -> dict[str, str]:
    """Normalized catalog model name ('antminers19xp', or 's19xp' without the brand word)
    → profile id ('s19-xp')."""
    data = resources.files("orchestrator") / "data" / "hardware" / "asic_models.csv"
    with data.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if with_brand:
        return {_key(row["name"]): row["id"] for row in rows}
    return {_key(row["name"].split(" ", 1)[-1]): row["id"] for row in rows}


def profile_for_model(
    make: str | None, model: str | None, extra: dict[str, str] | None = None
) -> str | None:
    """The catalog profile of a pyasic make and model, or None.

    `extra` (config `model_profiles`) wins. Otherwise the catalog entry whose name is the
    longest prefix of "make model": pyasic's 'WhatsMiner M30S++ V20' is 'Whatsminer
    M30S++' in the catalog, and variants share their base model's nameplate.
    """
    if not model:
        return None
    full = f"{make or ''} {model}"
    for text in (model, full):
        if extra and text in extra:
            return extra[text]
    if extra:
        keyed = {_key(k): v for k, v in extra.items()}
        for text in (model, full):
            if _key(text) in keyed:
                return keyed[_key(text)]
    for text, names in ((full, _catalog_names(True)), (model, _catalog_names(False))):
        k = _key(text)
        hits = [name for name in names if k.startswith(name)]
        if hits:
            return names[max(hits, key=len)]
    return None


def adhoc_profile(reading: MinerReading) -> HardwareProfile | None:
    """A profile from the miner's own nameplate figures when the catalog has no match."""
    rate = reading.expected_hashrate_ths or reading.hashrate_ths
    watts = reading.watts_limit or reading.watts
    if not rate or not watts:
        return None
    name = "asic-" + (_key(reading.label) or "unknown")
    idle = builtin_catalog()["s19-xp"].watts_idle
    return HardwareProfile(name=name, kind=HardwareKind.ASIC, mine_hashrate=rate,
                           watts_mine=watts, watts_idle=min(idle, watts))


def from_pyasic(address: str, data: object, now_s: float) -> MinerReading:
    """Convert a pyasic `MinerData` (duck-typed: pyasic ships no type hints)."""
    from pyasic.device.algorithm.hashrate.unit.sha256 import SHA256Unit

    def ths(value: object) -> float | None:
        if value is None:
            return None
        try:
            into = getattr(value, "into", None)
            return float(into(SHA256Unit.TH)) if callable(into) else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, AttributeError):
            return None

    def number(value: object) -> float | None:
        try:
            return None if value is None else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    errors = tuple(
        str(getattr(e, "error_message", None) or getattr(e, "error_code", None) or e)
        for e in (getattr(data, "errors", None) or [])
    )
    lo_c, hi_c = TEMPERATURE_RANGE_C
    hashboards = getattr(data, "hashboards", None) or []
    temps = [t for hb in hashboards
             if (t := _within(number(getattr(hb, "temp", None)), lo_c, hi_c)) is not None]
    temperature = (sum(temps) / len(temps) if temps
                   else _within(number(getattr(data, "env_temp", None)), lo_c, hi_c))
    flag = getattr(data, "is_mining", None)
    reading = MinerReading(
        address=address,
        reachable=True,
        read_at_s=now_s,
        make=_text(getattr(data, "make", None)),
        model=_text(getattr(data, "model", None)),
        firmware=_text(getattr(data, "firmware", None)),
        hashrate_ths=_within(ths(getattr(data, "hashrate", None)), 0.0, MAX_HASHRATE_THS),
        expected_hashrate_ths=_positive(
            _within(ths(getattr(data, "expected_hashrate", None)), 0.0, MAX_HASHRATE_THS)),
        watts=_positive(_within(number(getattr(data, "wattage", None)), 0.0, MAX_WATTS)),
        watts_limit=_positive(
            _within(number(getattr(data, "wattage_limit", None)), 0.0, MAX_WATTS)),
        temperature_c=temperature,
        errors=errors,
        is_mining=flag if isinstance(flag, bool) else None,
    )
    if reading.hashrate_ths is None and reading.watts is None:
        if reading.is_mining is False:
            # Asleep: stock Antminer firmware gives no usable summary in sleep mode, but
            # its configuration says so. A sleeping miner is not a lost one: it can be
            # resumed, and it draws its idle power.
            return replace(reading, hashrate_ths=0.0)
        # pyasic swallows decode errors and returns an empty record (the model comes from
        # its class, not the miner): that is no reading.
        return replace(unreachable(address, now_s, "miner answered without usable data"),
                       make=reading.make, model=reading.model, firmware=reading.firmware)
    return reading


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None
