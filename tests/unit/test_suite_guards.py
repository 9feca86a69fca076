"""The suite's own guards. `make test` cannot pass by skipping tier 2: with
HASHPIVOT_REQUIRE_TIER2=1 (or CI=true) a tier-2 test that skips fails; on a workstation
it skips, loudly. Every Ray runtime a test starts is its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIER2_TEST = "tests/tier2/test_control_plane.py::test_kwok_gpu_nodes_become_ready"


def run_tier2(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "HASHPIVOT_REQUIRE_TIER2"}}
    clean["HASHPIVOT_TESTENV_DIR"] = str(tmp_path / "no-testenv")  # no binaries there
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", TIER2_TEST],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, check=False,
    )


def test_tier2_skips_loudly_on_a_workstation(tmp_path: Path) -> None:
    result = run_tier2(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "TIER-2 NOT RUN" in result.stdout


@pytest.mark.parametrize("env", [{"HASHPIVOT_REQUIRE_TIER2": "1"}, {"CI": "true"}],
                         ids=["make-test", "ci"])
def test_tier2_fails_where_it_is_required(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_tier2(tmp_path, **env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout or "1 error" in result.stdout
    assert "TIER-2 NOT RUN" in result.stdout


def test_any_skip_of_a_tier2_test_fails_where_it_is_required(tmp_path: Path) -> None:
    """Whatever fixture or test body skips (not only the control plane's), the skip of a
    tier-2 test is a failure under HASHPIVOT_REQUIRE_TIER2."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'tier2: test')\n"
    )
    (tmp_path / "test_some_tier2.py").write_text(
        "import pytest\n"
        "@pytest.mark.tier2\n"
        "def test_needs_a_tool():\n"
        "    pytest.skip('KUEUE TIER-2 NOT RUN: binaries missing')\n"
        "def test_plain_skip():\n"
        "    pytest.skip('not a tier-2 test')\n"
    )

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if k not in {"CI", "HASHPIVOT_REQUIRE_TIER2"}}
        clean["PYTHONPATH"] = str(ROOT)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
             str(tmp_path)], cwd=tmp_path, env={**clean, **env}, capture_output=True,
            text=True, check=False,
        )

    relaxed = run()
    assert relaxed.returncode == 0 and "2 skipped" in relaxed.stdout, relaxed.stdout
    required = run(HASHPIVOT_REQUIRE_TIER2="1")
    assert required.returncode == 1, required.stdout
    assert "1 failed, 1 skipped" in required.stdout
    assert "KUEUE TIER-2 NOT RUN" in required.stdout


def test_tests_start_their_own_ray_instead_of_joining_the_last_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray._private.services import canonicalize_bootstrap_address

    # Ray's current-cluster file names a cluster that is long gone.
    (tmp_path / "ray_current_cluster").write_text("203.0.113.7:6379")
    assert os.environ["RAY_ADDRESS"] == "local"  # set by tests/conftest.py
    assert canonicalize_bootstrap_address(None, str(tmp_path)) is None  # start a new one
    monkeypatch.delenv("RAY_ADDRESS")
    # Without it, ray.init() would try to join the dead cluster.
    assert canonicalize_bootstrap_address(None, str(tmp_path)) == "203.0.113.7:6379"
