"""Controller start-up through the installed `hashpivot` script: `run --no-ray` never
loads Ray, and `warm-cache` fills the compiled-kernel cache a restarted controller loads
from instead of compiling again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


def exe() -> str:
    path = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert path, "the hashpivot console script is installed with the package"
    return path


def imported_modules(stderr: str) -> set[str]:
    """Every module named by `python -X importtime` (one line per import, on stderr)."""
    names = set()
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", line)
        if match:
            names.add(match.group(1))
    return names


def run_importtime(*args: str, env: dict[str, str] | None = None
                   ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The installed console script itself, run by its interpreter with `-X importtime`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", exe(), *args],
                          capture_output=True, text=True, check=False, timeout=600,
                          env=env)
    return proc, imported_modules(proc.stderr)


def test_a_no_ray_dry_run_never_imports_ray(tmp_path: Path) -> None:
    proc, modules = run_importtime("run", "-c", str(GOLDEN), "--mode", "dry-run", "--no-ray",
                                   "--cycles", "2", "--journal", str(tmp_path / "j"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The listing is read right: the controller and its compiled kernels were imported.
    assert {"orchestrator.runtime.controller", "orchestrator.engine.kernels"} <= modules
    assert "hashpivot.controller: cycle" in proc.stderr  # it decided
    ray = sorted(m for m in modules if m == "ray" or m.startswith("ray."))
    assert ray == []


def test_a_no_ray_live_start_up_error_never_imports_ray(tmp_path: Path) -> None:
    """The Kubernetes wiring path, up to its first server call, without Ray either."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    missing = tmp_path / "no-such-kubeconfig"
    proc, modules = run_importtime("run", "-c", str(GOLDEN), "--mode", "shadow", "--no-ray",
                                   "--kubeconfig", str(missing), "--cycles", "1",
                                   "--journal", str(tmp_path / "j"), env=env)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr
    assert "orchestrator.runtime.wiring" in modules
    assert not any(m == "ray" or m.startswith("ray.") for m in modules)
