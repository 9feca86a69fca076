"""The `hashpivot` command as users run it: a real subprocess of the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


def hashpivot(*args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe, "the hashpivot console script is installed with the package"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, check=False,
                          timeout=600, env=None if env is None else os.environ | env)


@pytest.mark.ray
def test_backtest_writes_summary_plots_and_html(tmp_path: Path) -> None:
    # The default path: policies fan out as tasks on an embedded Ray.
    out = tmp_path / "report"
    proc = hashpivot("backtest", "--config", str(GOLDEN), "--report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "best policy:" in proc.stdout and "capture" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    for name in ("hysteresis", "always-mine", "always-ai-else-idle", "naive-switching"):
        entry = summary["policies"][name]
        for key in ("revenue_usd", "power_cost_usd", "switching_cost_usd", "net_usd",
                    "switches", "capture_ratio"):
            assert key in entry
    for png in ("cumulative_net.png", "modes_over_time.png", "market.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "hysteresis" in html


def test_policy_from_file_and_period_flags(tmp_path: Path) -> None:
    policy = Path(__file__).parents[2] / "examples" / "policies" / "night_owl.py"
    proc = hashpivot("backtest", "--config", str(GOLDEN), "--report", str(tmp_path),
                     "--policy", str(policy), "--from", "2025-01-01T05:00:00Z",
                     "--to", "2025-01-02T00:00:00Z", "--no-baselines", "--no-ray")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["policies"]) == ["night-owl"]
    assert summary["period"]["steps"] == 19


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backtest", "--config", "/no/such/site.yaml"], "/no/such/site.yaml: file not found"),
        (["backtest", "--config", str(GOLDEN), "--policy", "nope"], "unknown policy 'nope'"),
        (["backtest", "--config", str(GOLDEN), "--from", "soon"], "--from: not an ISO date"),
        (["config", "check", str(GOLDEN.parent / "power.csv")], "top level must be a mapping"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    proc = hashpivot(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_policies_list_and_config_check() -> None:
    listing = hashpivot("policies", "list")
    assert listing.returncode == 0
    for name in ("greedy", "hysteresis", "power-capped", "lookahead"):
        assert name in listing.stdout
    check = hashpivot("config", "check", str(GOLDEN))
    assert check.returncode == 0 and "6 nodes" in check.stdout


def test_config_schema_is_json() -> None:
    proc = hashpivot("config", "schema")
    schema = json.loads(proc.stdout)
    assert schema["additionalProperties"] is False
    assert "guards" in schema["properties"]


@pytest.mark.parametrize(
    ("args", "usage", "message"),
    [
        (["bogus"], "Usage: hashpivot [OPTIONS] COMMAND", "No such command 'bogus'"),
        (["run"], "Usage: hashpivot run [OPTIONS]", "Missing option '--config'"),
        (["backtest", "--no-such-flag"], "Usage: hashpivot backtest [OPTIONS]",
         "No such option: --no-such-flag"),
        (["run", "--config", str(GOLDEN), "--mode", "sideways"], "Usage: hashpivot run",
         "'sideways' is not one of"),
        (["explain"], "Usage: hashpivot explain [OPTIONS]", "Missing argument"),
    ],
)
def test_usage_errors_print_usage_and_exit_2(args: list[str], usage: str, message: str) -> None:
    # Whatever click typer brings (its own copy from 0.2x on), a usage mistake is the usage
    # line and one error, never a traceback.
    proc = hashpivot(*args)
    assert proc.returncode == 2, proc.stderr
    assert usage in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_version_matches_the_installed_distribution() -> None:
    from importlib.metadata import version

    proc = hashpivot("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hashpivot {version('hashpivot')}"


def test_mode_help_lists_every_controller_mode() -> None:
    from orchestrator.models.config import ControllerMode

    proc = hashpivot("run", "--help", env={"COLUMNS": "300"})  # no wrapping in the box
    assert proc.returncode == 0
    flat = "".join(proc.stdout.split())
    assert "<" + "|".join(m.value for m in ControllerMode) + ">" in flat


def test_config_check_says_what_a_live_cycle_reads_and_lacks(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from orchestrator.models.feeds_config import LiveMarketConfig

    bare = tmp_path / "bare.yaml"
    bare.write_text("sites: [{name: west}, {name: east}]\n")
    proc = hashpivot("config", "check", str(bare))
    assert proc.returncode == 0, proc.stderr
    lacks = [x for x in proc.stdout.splitlines() if x.strip().startswith("lacks:")]
    assert any("power price for site(s) west, east" in x and "every cycle holds" in x
               and "live_market.power_usd_mwh_fixed" in x for x in lacks)
    assert any("GPU rental price" in x for x in lacks)
    defaults = LiveMarketConfig()
    hosts = [urlsplit(s.base_url).hostname for s in (*defaults.chain_sources,
                                                      *defaults.price_sources)]
    internet = next(x for x in proc.stdout.splitlines() if "needs internet access to:" in x)
    assert all(str(h) in internet for h in hosts)
    assert "simulated" in proc.stdout  # the 0-node fleet is not the cluster's

    priced = tmp_path / "priced.yaml"
    priced.write_text("sites: [{name: west}]\nlive_market:\n  power_usd_mwh_fixed: 42.5\n"
                      "  gpu_usd_per_gpu_hour_fixed: {H100: 2.1}\n")
    proc = hashpivot("config", "check", str(priced))
    assert proc.returncode == 0, proc.stderr
    assert "lacks:" not in proc.stdout
    assert "power price: default: fixed 42.5 USD/MWh" in proc.stdout
    assert "GPU rental price: H100 fixed 2.1" in proc.stdout
