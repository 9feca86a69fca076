"""No mode of the installed `hashpivot` reaches a test double: dry-run, journal replay,
backtest and the live/shadow start-up path run through the console script with the
repository root on the path (so `tests.doubles` could be imported) and never import it.
The in-memory Kubernetes API, NVML and miner driver live in `tests/doubles` only."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.test_startup import GOLDEN, exe, imported_modules

ROOT = Path(__file__).parents[2]
DOUBLES = {
    "tests.doubles.k8s": ("FakeKube", "merge_patch"),
    "tests.doubles.nvml": ("FakeGpu", "FakeNodes", "FakeNvml"),
    "tests.doubles.asic": ("SimMiner", "SimulatedDriver", "sim_miner"),
}


def hashpivot(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The console script under `-X importtime`, from the repository root with that root
    on PYTHONPATH: were any mode to import a double, nothing would stop it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-X", "importtime", exe(), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False, timeout=600)
    return proc, imported_modules(proc.stderr)


def from_tests(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == "tests" or m.startswith("tests."))


def test_the_doubles_are_importable_where_the_tests_run() -> None:
    """The check below would pass vacuously if `tests.doubles` could not be imported."""
    for module, names in DOUBLES.items():
        loaded = importlib.import_module(module)
        assert all(callable(getattr(loaded, name)) for name in names), module


@pytest.mark.parametrize("module", ["k8s", "telemetry", "asic"])
def test_the_adapters_export_no_double(module: str) -> None:
    adapter = importlib.import_module(f"orchestrator.adapters.{module}")
    doubles = {name for names in DOUBLES.values() for name in names}
    assert doubles.isdisjoint(dir(adapter))
    assert doubles.isdisjoint(getattr(adapter, "__all__", ()))


def test_dry_run_and_its_replay_import_nothing_from_tests(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    proc, modules = hashpivot("run", "-c", str(GOLDEN), "--mode", "dry-run", "--no-ray",
                              "--cycles", "3", "--journal", str(journal))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The listing is read right: the controller was imported and it decided.
    assert "orchestrator.runtime.controller" in modules
    assert "hashpivot.controller: cycle" in proc.stderr
    assert from_tests(modules) == []
    replay, modules = hashpivot("backtest", "-c", str(GOLDEN), "--journal", str(journal),
                                "--no-ray")
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert "orchestrator.backtest.replay" in modules
    assert from_tests(modules) == []


def test_a_backtest_imports_nothing_from_tests(tmp_path: Path) -> None:
    proc, modules = hashpivot("backtest", "-c", str(GOLDEN), "--no-ray", "--no-baselines",
                              "--report", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "r" / "report.html").is_file()
    assert "orchestrator.backtest.runner" in modules
    assert from_tests(modules) == []


@pytest.mark.parametrize("mode", ["shadow", "live"])
def test_live_and_shadow_wiring_imports_nothing_from_tests(tmp_path: Path, mode: str) -> None:
    """Up to the first API server call: no kubeconfig, so it stops there, in one line."""
    proc, modules = hashpivot("run", "-c", str(GOLDEN), "--mode", mode, "--no-ray",
                              "--kubeconfig", str(tmp_path / "no-such-kubeconfig"),
                              "--cycles", "1", "--journal", str(tmp_path / "j"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "orchestrator.adapters.k8s.wiring" in modules
    assert from_tests(modules) == []
