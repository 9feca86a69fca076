"""The base install (no extras) runs backtests, policies and reports; the live adapters
(Kubernetes, Ray, pyasic, NVML) come with extras, and a command that needs a missing one
says which to install. The modules of the extras are blocked in a subprocess of the
`hashpivot` entry point, as if they were not installed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "site.yaml"
EXTRA_MODULES = {"ray": "ray", "kubernetes": "k8s", "pyasic": "asic", "pynvml": "gpu"}

BLOCKED_ENTRY = f"""
import sys
BLOCKED = {sorted(EXTRA_MODULES)!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["hashpivot", *sys.argv[1:]]
from orchestrator.cli import main
main()
"""


def base_only(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED_ENTRY, *args], capture_output=True,
                          text=True, check=False, timeout=600)


def test_backtest_report_and_policies_run_without_the_extras(tmp_path: Path) -> None:
    proc = base_only("backtest", "-c", str(GOLDEN), "--report", str(tmp_path / "r"),
                     "--no-baselines")  # --ray is the default: it falls back to this process
    assert proc.returncode == 0, proc.stderr
    assert "Ray is not installed (pip install 'hashpivot[ray]'" in proc.stderr
    assert (tmp_path / "r" / "report.html").is_file()
    assert "best policy:" in proc.stdout
    listed = base_only("policies", "list")
    assert listed.returncode == 0 and "hysteresis" in listed.stdout
    checked = base_only("config", "check", str(GOLDEN))
    assert checked.returncode == 0, checked.stderr


def test_a_command_that_needs_an_extra_names_it(tmp_path: Path) -> None:
    proc = base_only("run", "-c", str(GOLDEN), "--mode", "dry-run", "--cycles", "1",
                     "--journal", str(tmp_path), "--metrics-port", "0")
    assert proc.returncode == 2
    assert "pip install 'hashpivot[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match
    return match[0].lower().replace("_", "-")


def test_extras_and_constraints_cover_every_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not base & {"ray", "kubernetes", "pyasic", "nvidia-ml-py"}
    assert {_name(r) for r in extras["k8s"]} == {"kubernetes"}
    assert {_name(r) for r in extras["ray"]} == {"ray"}
    assert {_name(r) for r in extras["asic"]} == {"pyasic"}
    assert {_name(r) for r in extras["gpu"]} == {"nvidia-ml-py"}
    assert extras["all"] == ["hashpivot[k8s,asic,gpu,ray]"]
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.lower().replace("_", "-")] = version
    wanted = base | {_name(r) for extra in ("k8s", "asic", "gpu", "ray")
                     for r in extras[extra]}
    assert wanted <= set(pinned), sorted(wanted - set(pinned))
    # The image installs every extra at those versions.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in dockerfile and "[all]" in dockerfile
