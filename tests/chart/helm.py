"""Finding and running the real helm binary for the chart tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tests.tier2.cluster import BUILD_SCRIPT, K8S_VERSION, testenv_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "hashpivot"
CI_VALUES = CHART / "ci"
RELEASE = "hashpivot"
NAMESPACE = "hashpivot"
# kubernetes-validate ships schemas per minor version; this is the one the chart targets.
K8S_SCHEMA_VERSION = ".".join(K8S_VERSION.split(".")[:2]) + ".0"


def require_tools() -> bool:
    """CI (and `make test`) must not pass by skipping: missing tools are failures there."""
    ci = os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}
    return ci or bool(os.environ.get("HASHPIVOT_REQUIRE_TIER2"))


def find_helm() -> Path | None:
    """helm from the tier-2 test environment, else from PATH."""
    built = testenv_dir() / "bin" / "helm"
    if os.access(built, os.X_OK):
        return built
    found = shutil.which("helm")
    return Path(found) if found else None


def missing_helm_message() -> str:
    return (
        f"CHART TESTS NOT RUN: no helm binary in {testenv_dir() / 'bin'} or on PATH. "
        f"Build it with `bash {BUILD_SCRIPT}` (or put helm on PATH)."
    )


class HelmError(AssertionError):
    """helm exited non-zero; the message holds its output."""


@dataclass(frozen=True)
class Helm:
    path: Path

    @cached_property
    def version(self) -> str:
        out = subprocess.run(
            [str(self.path), "version", "--short"], capture_output=True, text=True, check=True
        ).stdout.strip()
        match = re.match(r"v?(\d+(?:\.\d+){1,2})", out)
        if not match:
            raise HelmError(f"cannot read helm's version from {out!r}")
        return match[1]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # A private HOME-like environment: no user repositories, plugins or registry logins.
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"
        }
        return subprocess.run(
            [str(self.path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def kube_version_args(self) -> list[str]:
        # helm built from source defaults to an old Kubernetes version: pin the one we target.
        return ["--kube-version", f"v{K8S_VERSION}"]

    def lint(self, values: Sequence[str | Path] = (), sets: Sequence[str] = ()) -> str:
        args = ["lint", "--strict", str(CHART), *self.kube_version_args()]
        args += _value_args(values, sets)
        proc = self.run(*args)
        if proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def template_text(
        self,
        values: Sequence[str | Path] = (),
        sets: Sequence[str] = (),
        extra: Sequence[str] = (),
        *,
        namespace: str = NAMESPACE,
        release: str = RELEASE,
    ) -> str:
        args = ["template", release, str(CHART), "--namespace", namespace]
        args += [*self.kube_version_args(), *_value_args(values, sets), *extra]
        proc = self.run(*args)
        if proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout

    def template(
        self,
        values: Sequence[str | Path] = (),
        sets: Sequence[str] = (),
        extra: Sequence[str] = (),
        **kw: str,
    ) -> list[dict[str, Any]]:
        text = self.template_text(values, sets, extra, **kw)
        return [doc for doc in yaml.safe_load_all(text) if doc]


#: The site values every install needs (a power price); renders start from them.
SITE_VALUES = Path(__file__).parent / "site-values.yaml"


def _value_args(values: Sequence[str | Path], sets: Sequence[str]) -> list[str]:
    args: list[str] = ["--values", str(SITE_VALUES)]
    for v in values:
        args += ["--values", str(v)]
    for s in sets:
        args += ["--set", s]
    return args


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
