"""Baselines run under the same guards as the policies, and every row says which guards it
ran under; unguarded baselines are an option, labelled so."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_cli import GOLDEN, hashpivot
from tests.unit.test_oracle_cli import _capped_golden

NAIVE = "orchestrator.backtest.baselines:NaiveSwitching"


def test_baselines_run_under_the_policies_guards_and_say_so(tmp_path: Path) -> None:
    site = _capped_golden(tmp_path)
    # Guards strict enough to hold the baselines back on this short period.
    configured = "guards: {min_dwell_s: 43200, max_fleet_switch_share_per_hour: 0.2}"
    site.write_text(site.read_text().replace(
        "guards: {min_dwell_s: 3600, max_fleet_switch_share_per_hour: 1.0}", configured))
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(site), "--no-ray", "--policy", "greedy",
                     "--report", str(out), "--unguarded-baselines", "--oracle-iterations", "3")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "summary.json").read_text())["policies"]
    for name in ("always-mine", "always-ai-else-idle", "naive-switching"):
        assert rows[name]["guards"] == "configured guards"
        assert rows[f"{name} (unguarded)"]["guards"] == "unguarded: no dwell or switch budgets"
        assert rows[f"{name} (unguarded)"]["baseline"] is True
    assert rows["greedy"]["guards"] == "configured guards"
    printed = " ".join(proc.stdout.split())
    assert "naive-switching (unguarded)" in printed and "unguarded: no dwell" in printed
    html = (out / "report.html").read_text()
    assert "baseline, unguarded: no dwell or switch budgets" in html
    assert "baseline, configured guards" in html

    # On this site the guards change what the rule earns, so the rows tell them apart.
    assert rows["naive-switching (unguarded)"]["net_usd"] != rows["naive-switching"]["net_usd"]
    # The same rule run as a policy (no baselines) earns exactly what the guarded row
    # reports under the configured guards, and what the unguarded row reports under a
    # config without dwell or budgets.
    free = ("guards: {min_dwell_s: 0, max_fleet_switch_share_per_hour: 1.0, "
            "max_switches_per_node_per_day: 1000000000}")
    unguarded_site = tmp_path / "unguarded.yaml"
    unguarded_site.write_text(site.read_text().replace(configured, free))
    for config, row in ((site, "naive-switching"),
                        (unguarded_site, "naive-switching (unguarded)")):
        alone = tmp_path / f"alone-{config.stem}"
        proc = hashpivot("backtest", "-c", str(config), "--no-ray", "--policy", NAIVE,
                         "--no-baselines", "--report", str(alone))
        assert proc.returncode == 0, proc.stderr
        (only,) = json.loads((alone / "summary.json").read_text())["policies"].values()
        assert only["net_usd"] == rows[row]["net_usd"], row
        assert only["switches"] == rows[row]["switches"], row


def test_unguarded_rows_only_on_request(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = hashpivot("backtest", "-c", str(_capped_golden(tmp_path)), "--no-ray",
                     "--policy", "greedy", "--report", str(out), "--oracle-iterations", "2")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "summary.json").read_text())["policies"]
    assert not any("unguarded" in name for name in rows)
    assert {row["guards"] for row in rows.values()} == {"configured guards"}
    assert GOLDEN.exists()
