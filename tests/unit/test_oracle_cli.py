"""The hindsight oracle's stopping rule as users set it: `hashpivot backtest` options and
the config file, and what the table and report print about the bound and the gap."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_cli import GOLDEN, hashpivot


def _capped_golden(tmp_path: Path, backtest_extra: str = "") -> Path:
    """The golden site with a cap that binds (three miners' draw) and absolute paths."""
    text = GOLDEN.read_text()
    text = text.replace("{name: golden, pool_fee", "{name: golden, power_cap_kw: 10.5, pool_fee")
    text = text.replace("path: power.csv", f"path: {GOLDEN.parent / 'power.csv'}")
    text = text.replace("path: jobs.csv", f"path: {GOLDEN.parent / 'jobs.csv'}")
    text += backtest_extra
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_command_line_sets_the_gap_and_iteration_limit(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(_capped_golden(tmp_path)), "--no-ray",
                     "--policy", "greedy", "--report", str(out),
                     "--oracle-gap", "0.25", "--oracle-iterations", "7")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    oracle = summary["oracle"]
    assert oracle["tolerance"] == 0.25 and oracle["max_iterations"] == 7
    assert 1 <= oracle["iterations"] <= 7
    assert oracle["feasible_usd"] <= oracle["bound_usd"]
    assert oracle["gap"] == (oracle["bound_usd"] - oracle["feasible_usd"]) / abs(
        oracle["feasible_usd"])
    # What the table prints: the feasible value, the bound and the gap beside it.
    printed = " ".join(proc.stdout.split())
    assert f"{oracle['feasible_usd']:,.0f} USD" in printed
    assert f"bound {oracle['bound_usd']:,.0f} USD" in printed
    assert "of 7 iterations" in printed and "tolerance 25.00%" in printed
    # Capture is against the feasible schedule.
    greedy = summary["policies"]["greedy"]
    assert greedy["capture_ratio"] == greedy["net_usd"] / oracle["feasible_usd"]
    html = (out / "report.html").read_text()
    assert f"no schedule can beat {oracle['bound_usd']:,.0f} USD" in html


def test_config_file_sets_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "report"
    site = _capped_golden(tmp_path, "  oracle_max_iterations: 2\n  oracle_gap: 0.0\n")
    proc = hashpivot("backtest", "-c", str(site), "--no-ray", "--policy", "greedy",
                     "--report", str(out))
    assert proc.returncode == 0, proc.stderr
    oracle = json.loads((out / "summary.json").read_text())["oracle"]
    assert oracle["max_iterations"] == 2 and oracle["iterations"] <= 2
    assert oracle["tolerance"] == 0.0


def test_a_bad_gap_is_a_clear_error(tmp_path: Path) -> None:
    proc = hashpivot("backtest", "-c", str(_capped_golden(tmp_path)), "--no-ray",
                     "--oracle-gap", "2")
    assert proc.returncode != 0
    assert "--oracle-gap" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
