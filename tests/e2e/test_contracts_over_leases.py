"""`demand_response.over_leases` through `hashpivot backtest`: with a committed draw below
what the site's protected AI work alone draws, the power cap allocation sheds protected
AI leases during the event only when the option is on; off, the leases keep running and
the ledger books the shortfall. The limit is worked out here from the hardware catalog:
every node idle, plus less than one AI node's extra draw."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.models.hardware import builtin_catalog
from tests.e2e.test_contracts_demand_response import STEP_S, _inside_h, _s
from tests.e2e.test_one_decision_path import EXAMPLES, hashpivot

START, END = "2024-08-19", "2024-08-21"  # holds the first illustrative event
POLICY = "greedy"


def _limit_kw(config: dict[str, Any]) -> float:
    catalog = builtin_catalog()
    idle = sum(g["count"] * catalog[g["profile"]].watts_idle for g in config["fleet"]) / 1000.0
    h100 = catalog["h100-sxm-8x"]
    return idle + 0.5 * (h100.watts_ai - h100.watts_idle) / 1000.0


def _run(tmp_path: Path, over_leases: bool) -> tuple[list[dict[str, str]], float, str]:
    config = yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())
    site = config["sites"][0]
    limit = _limit_kw(config)
    site["contract"]["demand_response"].update(max_draw_kw=limit, over_leases=over_leases)
    folder = tmp_path / ("on" if over_leases else "off")
    folder.mkdir()
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    done = hashpivot("backtest", "-c", str(path), "--from", START, "--to", END, "--no-ray",
                     "-p", POLICY, "--no-baselines", "--report", str(folder / "r"), cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    with (folder / "r" / "ledger.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["policy"] == POLICY]
    return rows, limit, site["name"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[list[dict[str, str]],
                                                                     float, str]]:
    tmp = tmp_path_factory.mktemp("over-leases")
    return {flag: _run(tmp, flag) for flag in (False, True)}


def _capped(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Steps wholly inside an event window (due at or before the step's start)."""
    whole = STEP_S / 3600.0 - 1e-9
    return [r for r in rows if any(h >= whole for h, _ in _inside_h(_s(r["time"])))]


def test_leases_are_kept_by_default_and_the_shortfall_booked(runs: dict) -> None:
    rows, limit, site = runs[False]
    capped = _capped(rows)
    assert capped
    for r in capped:
        assert int(r["nodes_ai"]) > 0 and int(r["evictions"]) == 0
        assert float(r[f"site_kw:{site}"]) > limit  # the AI work alone is above the limit
        assert float(r["dr_shortfall_penalty_usd"]) > 0


def test_over_leases_sheds_them_during_the_event_only(runs: dict) -> None:
    rows, limit, site = runs[True]
    capped = _capped(rows)
    assert capped
    for r in capped:
        assert float(r[f"site_kw:{site}"]) <= limit + 1e-3, r["time"]
        assert float(r["dr_shortfall_penalty_usd"]) == pytest.approx(0.0, abs=1e-6)
    assert sum(int(r["evictions"]) for r in capped) > 0  # leases were shed
    # Outside the event the same AI work runs as without the option.
    off = {r["time"]: r for r in runs[False][0]}
    free = [r for r in rows if not _inside_h(_s(r["time"]))
            and _s(r["time"]) < min(_s(c["time"]) for c in capped)]
    assert free
    for r in free:
        assert int(r["nodes_ai"]) == int(off[r["time"]]["nodes_ai"])
        assert int(r["evictions"]) == 0
