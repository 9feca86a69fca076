"""The shipped examples run: both site configs backtest over a short period, the sweep
fans out on Ray, and a wrong unit is refused by name."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import ConfigError
from orchestrator.models.config import load_config

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize(
    ("site", "start", "end"),
    [
        ("west-texas", "2024-08-01T00:00:00Z", "2024-08-04T00:00:00Z"),
        ("gpu-only", "2025-10-25T00:00:00Z", "2025-10-28T00:00:00Z"),
    ],
)
def test_example_sites_backtest(site: str, start: str, end: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "backtest", "-c", str(EXAMPLES / site / "site.yaml"), "--from", start, "--to", end,
        "--no-ray", "--report", str(tmp_path), "-p", "hysteresis", "-p", "power-capped",
        "-p", str(EXAMPLES / "policies" / "night_owl.py"),
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["period"]["steps"] == 72
    assert {"hysteresis", "power-capped", "night-owl", "naive-switching"} <= set(
        summary["policies"]
    )
    for entry in summary["policies"].values():
        assert entry["capture_ratio"] is None or entry["capture_ratio"] <= 1.0 + 1e-9


@pytest.mark.ray
def test_sweep_compares_policies_on_ray(tmp_path: Path) -> None:
    """A sweep over two policies (one with a grid) and two periods: every run is a Ray task
    of a backtest per period, beside the baselines and the hindsight optimum, with a
    report per period. The site's own policy parameters stay out of other policies."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent("""
        policies:
          - {policy: hysteresis, grid: {confirm_ticks: [1, 3]}}
          - {policy: greedy}
        periods:
          - {from: "2025-01-01T01:00:00+00:00", to: "2025-01-02T00:00:00+00:00"}
          - {from: "2025-01-02T00:00:00+00:00", to: "2025-01-03T00:00:00+00:00"}
    """))
    golden = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["backtest", "-c", str(golden), "--sweep", str(sweep),
                                      "--report", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "sweep.json").read_text())
    runs = {(r["period"], r["label"]) for r in rows if not r["baseline"]}
    assert {label for _, label in runs} == {
        "hysteresis confirm_ticks:1", "hysteresis confirm_ticks:3", "greedy"}
    assert len({period for period, _ in runs}) == 2
    assert len(runs) == 6
    by_label = {r["label"]: r for r in rows}
    assert by_label["hysteresis confirm_ticks:3"]["params"] == {"confirm_ticks": 3}
    assert by_label["greedy"]["params"] == {}
    assert {"always-mine", "naive-switching"} <= {r["label"] for r in rows if r["baseline"]}
    assert all(r["capture_ratio"] is not None for r in rows)
    assert (out / "period-1" / "report.html").is_file()
    assert (out / "period-2" / "report.html").is_file()


def test_sweep_file_errors_name_the_entry(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("policies:\n  - {policy: hysteresis, grid: {confirm_tick: [1]}}\n")
    golden = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"
    result = CliRunner().invoke(app, ["backtest", "-c", str(golden), "--sweep", str(sweep)])
    assert result.exit_code != 0
    assert "policies[0]" in str(result.exception) + result.output
    assert "confirm_tick" in str(result.exception) + result.output


def test_wrong_unit_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent("""
        market:
          btc_usd: 97000
          difficulty: 1.1e14
          fees_btc_per_block: 0.1
          power_usd_mwh:
            default: {path: p.csv, value_column: v, unit: usd_per_kwhh}
    """))
    with pytest.raises(ConfigError, match=r"market\.power_usd_mwh\.default\..*unit"):
        load_config(path)


def test_sweep_without_ray_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    import orchestrator.cli as cli

    monkeypatch.setattr(cli, "_has_module", lambda name: name != "ray")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("policy: greedy\n")
    golden = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"
    result = CliRunner().invoke(app, ["backtest", "-c", str(golden), "--sweep", str(sweep)])
    assert result.exit_code != 0
    assert "hashpivot[ray]" in str(result.exception)
