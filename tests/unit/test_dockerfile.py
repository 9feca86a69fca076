"""The image's compiled-kernel cache, read from the Dockerfile (no image is built here):
filled by `hashpivot warm-cache` in the final stage, after the installed files are in
place, under the same cache folder and CPU target the controller runs with."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped.
    A few lines of parsing: the Dockerfile uses no parser directives beyond `syntax`."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def env_at(steps: list[tuple[str, str]], index: int) -> dict[str, str]:
    """ENV values in force at step `index` of a stage."""
    env: dict[str, str] = {}
    for keyword, args in steps[:index]:
        if keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    return env


def test_the_final_stage_compiles_the_kernels_after_installing_them() -> None:
    stage = final_stage()
    runs = [i for i, (k, a) in enumerate(stage) if k == "RUN" and "hashpivot warm-cache" in a]
    assert len(runs) == 1, "warm-cache runs once, in the final stage"
    (warm,) = runs
    installed = [i for i, (k, a) in enumerate(stage)
                 if k == "COPY" and a.startswith("--from=build") and "/opt/hashpivot" in a]
    assert installed and max(installed) < warm  # the files the cache is keyed by
    env = env_at(stage, warm)
    assert env["PATH"].startswith("/opt/hashpivot/bin")  # the installed console script
    cache = env["NUMBA_CACHE_DIR"]
    assert cache.startswith("/opt/hashpivot/")  # inside the image, not a volume or /tmp
    # The controller runs with the same ENV (none set after the RUN changes them), so it
    # looks for the cache in the folder and for the CPU target it was built for.
    later = env_at(stage, len(stage))
    assert later["NUMBA_CACHE_DIR"] == cache
    assert env["NUMBA_CPU_NAME"] == later["NUMBA_CPU_NAME"] == "generic"
    # Built as root, then made read-only to everyone else: the controller (another uid)
    # trusts a cache folder only when no other user could have written it.
    user = [i for i, (k, _) in enumerate(stage) if k == "USER"]
    assert user and min(user) > warm
    assert f"chmod -R go-w {cache}" in stage[warm][1]
