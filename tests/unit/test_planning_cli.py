"""`hashpivot plan` as users run it: the console script on a plan derived from the shipped
20 MW example, cells fanned out on an embedded Ray (the default)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.planning.config import load_plan
from orchestrator.planning.finance import npv, periodic_rate
from orchestrator.planning.model import flows
from orchestrator.planning.run import run_plan
from tests.unit.planning_helpers import small_plan
from tests.unit.test_cli import hashpivot


@pytest.mark.ray
def test_plan_command_writes_report_and_summary(tmp_path: Path) -> None:
    path = small_plan(tmp_path, rent=3.0)
    out = tmp_path / "report"
    proc = hashpivot("plan", "-c", str(path), "--report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "recommended:" in proc.stdout
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Value per MW" in page
    summary = json.loads((out / "summary.json").read_text())
    sizes = [s["size_mw"] for s in summary["sizes"]]
    assert sizes == [0.0, 0.4, 1.0, 2.0]
    names = [s["name"] for s in summary["scenarios"]]
    assert len(names) == 4 and names[-1] == "bootstrap"
    # The recommendation is the size with the best mean NPV over the scenarios run.
    outcomes = summary["outcomes"]
    means = {s: np.mean([o["npv_usd"] for o in outcomes if o["size_mw"] == s]) for s in sizes}
    best = max(sizes, key=lambda s: (means[s], -s))
    assert summary["recommendation"]["size_mw"] == best
    assert f"Recommended: {best:g} MW" in page
    for entry in summary["sizes"]:
        assert entry["npv_mean"] == pytest.approx(means[entry["size_mw"]])
    assert summary["valuations"]["quoted_mining_usd_per_mw"] == 4_500_000
    # The same plan in this process, one cell after another, gives the same numbers.
    local = run_plan(load_plan(path)).summary()
    for a, b in zip(local["outcomes"], outcomes, strict=True):
        assert a["npv_usd"] == pytest.approx(b["npv_usd"], rel=1e-9)


def test_plan_npv_is_the_discounted_sum_of_its_flows(tmp_path: Path) -> None:
    plan = load_plan(small_plan(tmp_path, rent=3.0))
    result = run_plan(plan)
    rate = (1 + plan.file.financing.discount_rate) ** (1 / 12) - 1
    assert periodic_rate(plan.file.financing.discount_rate, 12) == pytest.approx(rate)
    for cell, outcome in zip(result.cells, result.outcomes, strict=True):
        cf = flows(plan, cell).total
        months = round(plan.file.financing.horizon_years * 12)
        assert cf.shape == (months + 1,)
        by_hand = sum(x / (1 + rate) ** t for t, x in enumerate(cf))
        assert outcome.npv_usd == pytest.approx(by_hand, rel=1e-9)
        assert npv(rate, cf) == pytest.approx(by_hand, rel=1e-9)
        c = plan.file.conversion
        capex = cell.size_mw * (c.capex_per_mw_usd + c.tier_capex_per_mw_usd) + (
            cell.new_gpus * c.capex_per_gpu_usd)
        assert cf[0] == pytest.approx(
            -capex + cell.removed_th * plan.file.financing.asic_resale_usd_per_th)


def test_plan_command_bad_input_is_one_line(tmp_path: Path) -> None:
    path = small_plan(tmp_path, conversion={"capex_per_mw_usd": -5})
    proc = hashpivot("plan", "-c", str(path), "--no-ray")
    assert proc.returncode == 2
    assert "conversion.capex_per_mw_usd" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = hashpivot("plan", "-c", str(tmp_path / "none.yaml"), "--no-ray")
    assert missing.returncode == 2 and "none.yaml" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_plan_names_the_plan_file_for_its_policy_and_counts_bootstrap_histories(
    tmp_path: Path,
) -> None:
    bad = small_plan(tmp_path, rent=3.0, name="bad.yaml", policy="nope")
    proc = hashpivot("plan", "-c", str(bad), "--no-ray")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}: policy: unknown policy 'nope'" in proc.stderr
    params = small_plan(tmp_path, rent=3.0, name="params.yaml", policy="hysteresis",
                        policy_params={"bogus": 1})
    proc = hashpivot("plan", "-c", str(params), "--no-ray")
    assert proc.returncode == 2 and f"{params}: policy_params.bogus" in proc.stderr
    # Sizes listed without 0 still run beside the hall as it is; the bootstrap's
    # histories have a progress line of their own.
    path = small_plan(tmp_path, rent=3.0, sizes={"mw": [1, 2]})
    proc = hashpivot("plan", "-c", str(path), "--no-ray", "--report", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "bootstrap histories" in proc.stderr and "20/20" in proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [s["size_mw"] for s in summary["sizes"]] == [0.0, 1.0, 2.0]
