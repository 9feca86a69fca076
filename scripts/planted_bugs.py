"""Plant each known safety bug in a scratch copy of hashpivot and check the tests catch it.

Each bug below once survived the whole suite. This puts it back, one at a time, into a
copy of the source (the working tree, or a git revision with --ref), runs the tests that
guard that promise there, and fails unless every planted bug makes them fail. Compiled
loops run as plain Python (NUMBA_DISABLE_JIT=1) so a planted bug in a kernel takes effect
without a compile cache to bust.

    .venv/bin/python scripts/planted_bugs.py            # every bug, a minute or two
    .venv/bin/python scripts/planted_bugs.py --ref HEAD  # committed source, current tests
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("orchestrator", "policies", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Bug:
    name: str
    path: str
    #: (old, new) spellings of the same bug, for the ways the source has read: the first
    #: whose `old` occurs exactly once is planted.
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


GUARD_TESTS = ("tests/unit/test_guards_property.py",)
RECORD = "deps.journal.record(record)  # JournalError propagates: no record, no action"
APPLY = "result = deps.actuator.apply(plan, fleet)"
GRID_ACK = ("        if self.grid is not None:\n"
            "            self.grid.acknowledge(plan.decision_id, now)\n")
BUGS = (
    Bug(
        "power cap not enforced while stale data holds the fleet",
        "orchestrator/engine/guards.py",
        (("        not config.frozen,\n", "        not config.frozen and not ctx.stale,\n"),
         ("enforce_cap=not config.frozen,", "enforce_cap=not config.frozen and not ctx.stale,")),
        GUARD_TESTS,
    ),
    Bug(
        "protected lease treated as ending 30 minutes early in the guard",
        "orchestrator/engine/kernels.py",
        (("protected = cur == AI and lease_until[i] > now_s and not ai_interruptible[i]",
          "protected = cur == AI and lease_until[i] - 1800.0 > now_s and not ai_interruptible[i]"),
         ("lease_until[i] > now_s and not ai_interruptible[i]",
          "lease_until[i] - 1800.0 > now_s and not ai_interruptible[i]")),
        GUARD_TESTS,
    ),
    Bug(
        "time in mode floored at one hour",
        "orchestrator/engine/kernels.py",
        (("out[i] = max(now_s - since[i], 0.0)", "out[i] = max(now_s - since[i], 3600.0)"),),
        GUARD_TESTS,
    ),
    Bug(
        "dwell compared against half the minimum",
        "orchestrator/engine/kernels.py",
        (("elif dwell_s[i] < min_dwell_s:", "elif dwell_s[i] < min_dwell_s / 2:"),
         ("young[i] = dwell_s[i] < min_dwell_s", "young[i] = dwell_s[i] < min_dwell_s / 2")),
        GUARD_TESTS,
    ),
    Bug(
        "staleness measured from the newest market value instead of the oldest",
        "orchestrator/models/market.py",
        (("return min(v.observed_at for _, v in self.values())",
          "return max(v.observed_at for _, v in self.values())"),),
        GUARD_TESTS,
    ),
    Bug(
        "live price path passing fees as 0",
        "orchestrator/engine/prices.py",
        (("            snapshot.fees_btc_per_block.value,\n        )",
          "            0.0,\n        )"),),
        ("tests/unit/test_economics.py",),
    ),
    Bug(
        "acting before the plan is journaled",
        "orchestrator/runtime/cycle.py",
        # The actuator acts first, then the plan is journaled (the grid acknowledgement, where
        # there is one, stays between them).
        ((f"        {RECORD}\n{GRID_ACK}        try:\n            {APPLY}\n",
          f"{GRID_ACK}        try:\n            {APPLY}\n            {RECORD}\n"),
         (f"        {RECORD}\n{GRID_ACK}        {APPLY}\n",
          f"        {APPLY}\n{GRID_ACK}        {RECORD}\n"),
         (f"        {RECORD}\n        {APPLY}\n", f"        {APPLY}\n        {RECORD}\n")),
        ("tests/unit/test_journal_before_act.py",),
    ),
)


def copy_source(dest: Path, ref: str | None) -> None:
    if ref is None:
        for name in COPIED:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dest / name)
        return
    # The source at that revision, the tests as they are now.
    source = [name for name in COPIED if name != "tests"]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *source],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    shutil.copytree(ROOT / "tests", dest / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def run_tests(where: Path, tests: tuple[str, ...]) -> int:
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        check=False, cwd=where, env=env, capture_output=True, text=True,
    ).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="git revision to copy instead of the working tree")
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="hashpivot-planted-") as scratch:
        base = Path(scratch) / "base"
        base.mkdir()
        copy_source(base, args.ref)
        every_test = tuple(sorted({t for b in BUGS for t in b.tests}))
        if run_tests(base, every_test) != 0:
            print(f"the tests fail without any planted bug: {' '.join(every_test)}")
            return 2
        for bug in BUGS:
            where = Path(scratch) / "bug"
            shutil.rmtree(where, ignore_errors=True)
            shutil.copytree(base, where)
            path = where / bug.path
            text = path.read_text(encoding="utf-8")
            edit = next(((o, n) for o, n in bug.edits if text.count(o) == 1), None)
            if edit is None:
                print(f"CANNOT PLANT  {bug.name}: {bug.path} changed, update scripts/"
                      "planted_bugs.py")
                failures += 1
                continue
            path.write_text(text.replace(*edit), encoding="utf-8")
            caught = run_tests(where, bug.tests) != 0
            print(f"{'caught  ' if caught else 'SURVIVED'}  {bug.name}")
            failures += not caught
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
