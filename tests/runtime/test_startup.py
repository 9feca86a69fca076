"""Controller start-up through the installed `hashpivot` script: `run --no-ray` never
loads Ray, and `warm-cache` fills the compiled-kernel cache a restarted controller loads
from instead of compiling again."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


# -- the compiled-kernel cache ---------------------------------------------------------------


def counts(stdout: str) -> tuple[int, int, int]:
    """Kernels, signatures compiled and signatures loaded, as `warm-cache` reports them."""
    match = re.search(r"(\d+) kernels, (\d+) signatures compiled, (\d+) loaded from the cache",
                      stdout)
    assert match, stdout
    kernels, compiled, loaded = (int(g) for g in match.groups())
    return kernels, compiled, loaded


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A cache folder filled by `hashpivot warm-cache`, run twice: both outputs."""
    cache = tmp_path_factory.mktemp("kernels") / "numba"
    outputs = []
    for _ in range(2):
        proc = subprocess.run([exe(), "warm-cache", "--cache-dir", str(cache)],
                              capture_output=True, text=True, check=False, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "not compiled" not in proc.stderr and "Traceback" not in proc.stderr
        outputs.append(proc.stdout)
    return cache, outputs[0], outputs[1]


def debug_cache_run(cache: Path, journal: Path, *, env: dict[str, str] | None = None
                    ) -> subprocess.CompletedProcess[str]:
    """A dry-run controller whose numba reports each cache load and save on stdout."""
    return subprocess.run(
        [exe(), "run", "-c", str(GOLDEN), "--mode", "dry-run", "--no-ray", "--cycles", "2",
         "--journal", str(journal)],
        capture_output=True, text=True, check=False, timeout=1800,
        env={**os.environ, **(env or {}), "NUMBA_CACHE_DIR": str(cache),
             "NUMBA_DEBUG_CACHE": "1"})


@pytest.mark.slow
def test_warm_cache_compiles_every_kernel_and_a_second_run_loads_them(
        warmed: tuple[Path, str, str]) -> None:
    cache, first, second = warmed
    kernels, compiled, loaded = counts(first)
    assert kernels > 0 and compiled >= 1 and loaded == 0  # an empty folder: all compiled
    again_kernels, again_compiled, again_loaded = counts(second)
    assert again_kernels == kernels
    assert again_compiled == 0 and again_loaded >= 1
    assert str(cache) in first
    assert any(cache.rglob("*.nbi")) and any(cache.rglob("*.nbc"))  # numba's index and code


@pytest.mark.slow
def test_a_controller_after_warm_cache_compiles_nothing(warmed: tuple[Path, str, str],
                                                        tmp_path: Path) -> None:
    cache, _, _ = warmed
    proc = debug_cache_run(cache, tmp_path / "j")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hashpivot.controller: cycle" in proc.stderr
    assert "[cache] data loaded from" in proc.stdout
    assert "[cache] data saved to" not in proc.stdout  # nothing compiled


@pytest.fixture
def read_only_copy(warmed: tuple[Path, str, str], tmp_path: Path) -> Iterator[Path]:
    """A copy of the warmed cache this process cannot write: mode 0555, or for root (who
    writes anyway) the immutable attribute, where the file system and capabilities allow."""
    seed = tmp_path / "seed"
    shutil.copytree(warmed[0], seed)
    if os.getuid() != 0:
        seed.chmod(0o555)
        yield seed
        seed.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(seed)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("root writes any folder, and chattr +i is not allowed here")
    try:
        yield seed
    finally:
        subprocess.run(["chattr", "-i", str(seed)], check=True)


@pytest.mark.slow
def test_a_read_only_cache_is_loaded_through_a_private_copy(read_only_copy: Path,
                                                            tmp_path: Path) -> None:
    """The image's cache on a read-only root filesystem: numba would not read a folder it
    cannot write, so the controller copies it to a folder of its own and loads from that."""
    seed = read_only_copy
    assert not os.access(seed, os.W_OK)
    assert not seed.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    home = tmp_path / "home"
    proc = debug_cache_run(seed, tmp_path / "j",
                           env={"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")})
    private = home / "cache" / "hashpivot" / "numba"
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"[cache] data loaded from '{private}" in proc.stdout
    assert str(seed) not in proc.stdout
    assert "[cache] data saved to" not in proc.stdout  # nothing compiled
    assert sorted(p.relative_to(seed) for p in seed.rglob("*.nbi")) == sorted(
        p.relative_to(private) for p in private.rglob("*.nbi"))


OWN_POLICY = '''\
"""A policy of the operator's own with a compiled loop."""

from typing import ClassVar

import numpy as np

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, Reason, compiled


@compiled
def _best(value: np.ndarray, out: np.ndarray) -> None:
    for i in range(value.shape[1]):
        out[i] = 2 if value[2, i] > value[1, i] and value[2, i] > value[0, i] else (
            1 if value[1, i] > value[0, i] else 0)


class OwnBest(Policy):
    name: ClassVar[str] = "own-best"

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        target = np.empty(ctx.current.shape[0], dtype=np.int8)
        _best(ctx.scores.value, target)
        reason = np.where(target == ctx.current, Reason.UNCHANGED, Reason.HIGHER_VALUE)
        return PolicyDecision(target=target, reason=reason.astype(np.int16))
'''


@pytest.mark.slow
def test_warm_cache_with_a_config_compiles_its_own_policy_for_the_controller(
        warmed: tuple[Path, str, str], tmp_path: Path) -> None:
    cache, _, builtin = warmed
    folder = tmp_path / "site"
    shutil.copytree(GOLDEN.parent, folder)  # the config and the data files beside it
    site = folder / GOLDEN.name
    text = site.read_text(encoding="utf-8")
    assert "policy: {name: hysteresis}\n" in text
    own = folder / "own_best.py"
    own.write_text(OWN_POLICY, encoding="utf-8")
    site.write_text(text.replace("policy: {name: hysteresis}\n",
                                 f"policy: {{name: '{own}'}}\n"), encoding="utf-8")
    proc = subprocess.run([exe(), "warm-cache", "-c", str(site), "--cache-dir", str(cache)],
                          capture_output=True, text=True, check=False, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kernels, _, _ = counts(proc.stdout)
    assert kernels == counts(builtin)[0] + 1  # the policy file's one compiled loop
    # The file is new (and numba keys its cache by the file's folder): what the controller
    # now loads, warm-cache compiled.
    run = subprocess.run(
        [exe(), "run", "-c", str(site), "--mode", "dry-run", "--no-ray", "--cycles", "2",
         "--journal", str(tmp_path / "j")],
        capture_output=True, text=True, check=False, timeout=1800,
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"policy {own}" in run.stderr
    assert "own_best._best" in run.stdout  # its kernel was looked up in the cache
    assert "[cache] data saved to" not in run.stdout


def test_warm_cache_names_a_bad_config_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    proc = subprocess.run([exe(), "warm-cache", "-c", str(missing), "--cache-dir",
                           str(tmp_path / "c")],
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr


def test_a_cache_folder_others_could_write_is_not_copied(tmp_path: Path) -> None:
    """numba unpickles its cache: a read-only folder that another user could have written
    is never loaded from, not even through a copy."""
    from orchestrator.framework import jit

    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "planted.nbi").write_bytes(b"not a cache")
    locked = os.getuid() != 0 or subprocess.run(
        ["chattr", "+i", str(seed)], capture_output=True, check=False).returncode == 0
    if not locked:
        pytest.skip("root writes any folder, and chattr +i is not allowed here")
    try:
        if os.getuid() != 0:
            seed.chmod(0o555)
        assert jit._read_only_cache(seed)  # read-only and only ours: copied
        if os.getuid() == 0:
            subprocess.run(["chattr", "-i", str(seed)], check=True)
            seed.chmod(0o775)
            subprocess.run(["chattr", "+i", str(seed)], check=True)
        else:
            seed.chmod(0o575)  # group-writable, not writable by us
        assert not os.access(seed, os.W_OK)
        assert not jit._read_only_cache(seed)
    finally:
        if os.getuid() == 0:
            subprocess.run(["chattr", "-i", str(seed)], check=True)
        seed.chmod(0o755)


@pytest.mark.slow
def test_warm_cache_runs_on_the_base_install(warmed: tuple[Path, str, str]) -> None:
    """Without the extras (Kubernetes, Ray, pyasic, NVML) it finds the same kernels: the
    modules it cannot import hold none."""
    from tests.unit.test_lean_install import BLOCKED_ENTRY

    cache, _, full = warmed
    proc = subprocess.run([sys.executable, "-c", BLOCKED_ENTRY, "warm-cache", "--cache-dir",
                           str(cache)], capture_output=True, text=True, check=False,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert counts(proc.stdout)[0] == counts(full)[0]
