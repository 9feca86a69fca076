"""A configured miner that never answers, run as an operator runs it: `hashpivot run` as a
subprocess on a hall whose second miner (named by firmware and model in its range) is
switched off or cut from the network from the start.

Its nameplate draw is counted against the hall's cap: the cap is set between one
miner's nameplate and two, so with calm power the miner that answers is curtailed to
keep the hall under it. The unseen miner is a fleet row, unreachable, never commanded,
counted as unreadable in the metrics and named in every cycle's journal notes.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters.asic.readings import profile_for_model
from orchestrator.adapters.asic.site import NEVER_ANSWERED
from orchestrator.models.hardware import builtin_catalog
from orchestrator.runtime.journal import read_journal
from tests.contract.feedserver import FeedServer
from tests.contract.fixtures.miners.emulator import MinerLab
from tests.contract.test_asic_pyasic import _can_bind_port_80
from tests.e2e.test_asic_site import Controller, _free_port, is_command, site_config

pytestmark = pytest.mark.skipif(
    not _can_bind_port_80(),
    reason="needs loopback addresses beyond 127.0.0.1 and port 80 (root on Linux)",
)

UNSEEN_MODEL = "Antminer S19 XP"


def test_a_miner_that_never_answered_is_counted_against_the_cap_and_reported(
    tmp_path: Path, lab: MinerLab, feeds: FeedServer
) -> None:
    good = lab.add("antminer")  # stock firmware reports no power: nameplate too
    unseen = f"{lab.prefix}.250"  # nothing listens here
    catalog = builtin_catalog()
    good_w = catalog["s19-xp"].watts_mine
    unseen_profile = catalog[str(profile_for_model(None, UNSEEN_MODEL))]
    # Room for the miner that answers, not for both.
    cap_kw = (good_w + unseen_profile.watts_mine / 2) / 1000
    path = site_config(tmp_path, [good], feeds, "live")
    config = yaml.safe_load(path.read_text())
    config["sites"][0]["power_cap_kw"] = cap_kw
    config["asic"]["ranges"].append({"addresses": [unseen], "site": "hall",
                                     "firmware": "antminer", "model": UNSEEN_MODEL})
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    port = _free_port()
    run = Controller(path, tmp_path / "journal", "live", tmp_path, metrics_port=port)
    try:
        run.wait_cycles(30, until=lambda: not good.mining)
        run.wait_cycles(2)
        assert not good.mining, run.output()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        run.stop()

    records = list(read_journal(tmp_path / "journal"))
    decided = [r for r in records if r.fleet_columns is not None]
    assert decided
    for rec in decided:  # a row from the first cycle on, unreachable, at its nameplate
        cols = rec.fleet_columns
        assert cols is not None and unseen in cols.names
        k = cols.names.index(unseen)
        assert not cols.reachable[k] and cols.profile[k] == unseen_profile.name
    # Calm power: the answering miner was curtailed only to keep the hall under its cap.
    idled = [c for r in records for c in r.changes if c.node == good.ip and c.target == "idle"]
    assert idled, run.output()
    assert "cap" in idled[0].reason.lower(), idled[0].reason
    assert all(unseen not in r.actuation.get("started", []) for r in records)
    notes = [r.actuation.get("notes", {}).get(unseen, "") for r in decided]
    assert all(n.startswith("unreadable") and NEVER_ANSWERED in n for n in notes), notes[:2]
    assert f"{unseen_profile.watts_mine:.0f} W" in notes[-1]
    assert 'hashpivot_asic_miners{state="unreadable"} 1.0' in metrics
    assert 'hashpivot_asic_miners{state="curtailed"} 1.0' in metrics
    assert "miner(s) unreadable" in (tmp_path / "run-live.log").read_text()
    assert any(is_command(s) for s in good.seen)
