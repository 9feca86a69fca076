"""ASIC config, model → profile mapping, miners as fleet rows, joining with GPU nodes."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.adapters.asic.fleet import asic_fleet, concat_fleets
from orchestrator.adapters.asic.readings import MinerReading, profile_for_model, unreachable
from orchestrator.adapters.asic.service import fleet_subset
from orchestrator.adapters.asic.site import MinerStatus
from orchestrator.models import FleetTable, Mode, Site, builtin_catalog
from orchestrator.models.asic_config import AsicConfig, parse_address_range
from orchestrator.models.config import HashpivotConfig
from tests.conftest import profiles


def test_address_ranges() -> None:
    assert parse_address_range("10.0.0.5-10.0.0.7") == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert parse_address_range("10.0.0.0/30") == ["10.0.0.1", "10.0.0.2"]
    assert parse_address_range(" 10.0.0.9 ") == ["10.0.0.9"]
    with pytest.raises(ValueError, match="backwards"):
        parse_address_range("10.0.0.9-10.0.0.1")
    with pytest.raises(ValueError):
        parse_address_range("miner-7")


def test_config_section_validates() -> None:
    config = HashpivotConfig(asic={"ranges": [{"addresses": ["10.0.0.0/29"]}],
                                   "opt_out": ["10.0.0.1-10.0.0.2"]})
    assert config.asic is not None
    assert config.asic.opt_out == ["10.0.0.1", "10.0.0.2"]
    assert len(config.asic.ranges[0].expand()) == 6
    with pytest.raises(ValidationError, match="is in ranges"):
        AsicConfig(ranges=[{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.0/30"]}])
    with pytest.raises(ValidationError, match="model needs firmware"):
        AsicConfig(ranges=[{"addresses": ["10.0.0.1"], "model": "Antminer S19"}])
    with pytest.raises(ValidationError):
        AsicConfig(ranges=[{"addresses": ["10.0.0.1"]}], ramp={"max_kw_per_window": -1})


@pytest.mark.parametrize(("make", "model", "profile"), [
    ("AntMiner", "S19 XP", "s19-xp"),
    ("AntMiner", "S19j Pro", "s19j-pro"),
    ("AntMiner", "S21", "s21"),
    ("AntMiner", "S19 XP Hyd", "s19-xp-hyd"),
    ("WhatsMiner", "M30S++ V20", "m30s"),
    ("AntMiner", "L7", None),
    (None, None, None),
])
def test_models_map_to_catalog_profiles(make, model, profile) -> None:
    assert profile_for_model(make, model) == profile


def test_config_mapping_wins() -> None:
    assert profile_for_model("AntMiner", "S19 XP", {"S19 XP": "s21"}) == "s21"


def _status(address: str, reading: MinerReading, *, mining: bool = True, **kw) -> MinerStatus:
    base = {"site": "hall", "profile": None, "mining": mining, "since_s": 0.0, "opt_out": False,
            "protected": False, "pending": None, "ignored_commands": 0}
    base.update(kw)
    return MinerStatus(reading=reading, **base)


def _reading(address: str, **kw) -> MinerReading:
    base = {"reachable": True, "read_at_s": 0.0, "make": "AntMiner", "model": "S19 XP",
            "hashrate_ths": 120.0, "watts": 3100.0, "is_mining": True}
    base.update(kw)
    return MinerReading(address=address, **base)


SITES = [Site(name="hall", power_cap_kw=500)]


def test_rows_from_statuses() -> None:
    statuses = [
        _status("a", _reading("a")),
        _status("b", _reading("b", watts=None)),  # stock firmware: no power reading
        _status("c", _reading("c", hashrate_ths=0.0, watts=12.0), mining=False),
        _status("d", replace_reading(unreachable("d", 0.0, "timeout"), model="S21")),
        _status("e", _reading("e", model="L7")),  # no profile, but nameplate from the miner
        _status("f", _reading("f", model="Mystery", hashrate_ths=None, watts=None)),
        _status("g", _reading("g"), protected=True),
        _status("h", _reading("h"), opt_out=True),
    ]
    view = asic_fleet(statuses, SITES, builtin_catalog())
    f = view.fleet
    assert list(f.names) == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert "f" in view.unknown_models
    # No profile and no figures of its own: in the table at the largest ASIC nameplate
    # draw (counted against the cap), and never commanded.
    largest = max(p.watts_mine for p in builtin_catalog().values() if p.kind == "asic")
    i_f = f.index_of("f")
    assert f.watts_mine[i_f] == largest and f.mode[i_f] == Mode.MINE and f.opt_out[i_f]
    assert view.unreadable == {"d": "timeout"}
    a, b, c, d = (f.index_of(x) for x in "abcd")
    assert f.hashrate[a] == 120.0 and f.hashrate_measured[a] and view.watts_measured[a]
    assert f.watts_mine[b] == 3010.0 and not view.watts_measured[b]  # nameplate, flagged
    assert f.mode[c] == Mode.IDLE and f.watts_idle[c] == 12.0
    assert f.mode[d] == Mode.MINE and not f.reachable[d]
    assert f.profiles[f.profile[d]].name == "s21" and f.watts_mine[d] == 3500.0
    assert f.profiles[f.profile[f.index_of("e")]].name.startswith("asic-")
    assert f.opt_out[f.index_of("g")] and f.opt_out[f.index_of("h")]


def replace_reading(r: MinerReading, **kw) -> MinerReading:
    from dataclasses import replace

    return replace(r, **kw)


def test_sleeping_miner_keeps_its_measured_rate() -> None:
    st = _status("a", _reading("a", hashrate_ths=0.0, watts=15.0), mining=False,
                 hashing_ths=112.0, hashing_w=3010.0)
    f = asic_fleet([st], SITES, builtin_catalog()).fleet
    assert f.hashrate[0] == 112.0 and f.hashrate_measured[0]
    assert f.watts_mine[0] == 3010.0 and f.watts_idle[0] == 15.0


def test_concat_with_gpu_nodes_keeps_every_column() -> None:
    gpu = FleetTable.build(profiles("h100-sxm-8x"), SITES, [0, 0], names=["g0", "g1"],
                           modes=[Mode.AI, Mode.IDLE])
    asic = asic_fleet([_status("a", _reading("a")), _status("b", _reading("b", model="S21"))],
                      SITES, builtin_catalog()).fleet
    both = concat_fleets(gpu, asic)
    assert list(both.names) == ["g0", "g1", "a", "b"]
    assert both.is_asic().tolist() == [False, False, True, True]
    assert both.mode.tolist() == [Mode.AI, Mode.IDLE, Mode.MINE, Mode.MINE]
    assert both.gpu_models == ("H100_80GB_SXM5",)
    assert [both.profiles[p].name for p in both.profile] == ["h100-sxm-8x"] * 2 + ["s19-xp", "s21"]
    assert both.watts_mine[2] == 3100.0
    sub = fleet_subset(both, np.array([0, 3]))
    assert list(sub.names) == ["g0", "b"] and sub.is_asic().tolist() == [False, True]
    with pytest.raises(ValueError, match="both fleets"):
        concat_fleets(asic, asic)


def test_an_unknown_model_that_was_read_before_keeps_its_last_draw() -> None:
    """An S9 whose model string maps to nothing, unreachable now, last seen drawing
    1,350 W while hashing 13.5 TH/s: it stays a row at that draw."""
    r = replace_reading(unreachable("s9", 0.0, "read: no answer"), make="AntMiner",
                        model="Unknown")  # what pyasic reports for a model it cannot map
    st = _status("s9", r, hashing_ths=13.5, hashing_w=1350.0)
    view = asic_fleet([st], SITES, builtin_catalog())
    f = view.fleet
    assert list(f.names) == ["s9"] and f.watts_mine[0] == 1350.0 and f.hashrate[0] == 13.5
    assert f.mode[0] == Mode.MINE and not f.reachable[0] and f.opt_out[0]
    assert "s9" in view.unknown_models and view.unreadable == {"s9": "read: no answer"}
    # The site's draw counts it: cap headroom is what the table says.
    assert f.watts_mine[f.mode == Mode.MINE].sum() == 1350.0
