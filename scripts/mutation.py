"""Mutation testing of hashpivot's safety code with cosmic-ray.

Each mutant is one small change to the source (a comparison flipped, a constant moved, a
condition negated, a loop skipped); the tests that guard that code run against it and
should fail. A mutant they let through is a promise the tests do not hold. Why cosmic-ray:
it mutates the file on disk and runs a plain test command, so it reaches the guard and cap
code, which lives in numba-compiled functions; mutmut 3 skips every decorated function,
and these are all decorated.

Everything runs in a scratch copy of the source (never in the working tree), with the
compiled loops run as plain Python (NUMBA_DISABLE_JIT=1) so each mutant takes effect
without a compile cache to bust, and with the hypothesis "mutation" profile (fewer,
fixed examples; the deterministic example tests carry most kills).

    .venv/bin/python scripts/mutation.py              # the guard and cap code (make mutation)
    .venv/bin/python scripts/mutation.py --sample 30  # 30 of them per module (make test)
    .venv/bin/python scripts/mutation.py --scope full  # every safety module (long)
    .venv/bin/python scripts/mutation.py --list        # the mutants, without running them
    .venv/bin/python scripts/mutation.py --shard 1/2   # half of them; --shard 2/2 beside it

Survivors listed in scripts/mutation_equivalent.txt (with the reason each changes nothing
a user could observe) are reported as equivalent; those in scripts/mutation_open.txt are
known and still to be killed (the list only shrinks); any other survivor fails the run.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "scripts" / "mutation_equivalent.txt"
#: Survivors known and not yet killed nor shown equivalent: reported, counted against the
#: score, but not failing the run, so a new survivor stands out. The list only shrinks.
OPEN = ROOT / "scripts" / "mutation_open.txt"
COPIED = ("orchestrator", "policies", "tests", "pyproject.toml")

#: Operators that make mutants a test could notice. Left out everywhere: bitwise, power,
#: modulo and identity operators (no such arithmetic or identity checks in this code),
#: removing a decorator (dropping @compiled runs the same code as Python), replacing
#: exceptions and variables (mostly mutants that cannot run). CI's scope keeps the
#: decisions (comparisons, boolean logic, loops); the full scope adds arithmetic and
#: constants.
LOGIC = (r"ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Eq|NotEq|Lt|LtE|Gt|GtE)"
         r"|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr"
         r"|ReplaceOrWithAnd|ReplaceBreakWithContinue|ReplaceContinueWithBreak"
         r"|ZeroIterationForLoop")
ARITHMETIC = (r"ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|Add_Mul|Sub_Mul)"
              r"|ReplaceUnaryOperator_USub_UAdd|NumberReplacer")
OPERATORS = {
    "ci": re.compile(f"core/({LOGIC})$"),
    "full": re.compile(f"core/({LOGIC}|{ARITHMETIC})$"),
    # What the full scope adds to CI's: to run the rest of a module CI has run in full.
    "arithmetic": re.compile(f"core/({ARITHMETIC})$"),
}


@dataclass(frozen=True)
class Target:
    """Functions of one module and the tests that guard them."""

    module: str
    #: Functions mutated (None: the whole module): "name", "Class.method" or "Class" (all
    #: of it); "section:NAME" names every function after the `# --- NAME` comment up to
    #: the next `# ---` comment.
    functions: tuple[str, ...] | None
    tests: tuple[str, ...]


GUARD_TESTS = (
    "tests/unit/test_guards_property.py",
    "tests/unit/test_engine.py",
    "tests/unit/test_fuzz_policy.py",
)
CI = (
    Target("orchestrator/engine/guards.py", None, GUARD_TESTS),
    # The policy fuzz test adds nothing the kernels' own tests miss, and costs the most.
    Target("orchestrator/engine/kernels.py", ("seconds_since", "section:guards"),
           (*GUARD_TESTS[:2], "tests/unit/test_cap_allocation.py")),
)
#: Who may be evicted and when a drain waits: the pure lifecycle (every edge's gate), the
#: pod's own rules (interruptible, lease, already leaving) and how they are read from the
#: pod, and the actuator's eviction calls (a disruption budget's refusal, a pod gone).
EVICTION = Target(
    "orchestrator/adapters/k8s/lifecycle.py", None,
    ("tests/unit/test_k8s_lifecycle.py", "tests/unit/test_k8s_actuator.py"))
POD_RULES = Target(
    "orchestrator/adapters/k8s/objects.py", ("PodView", "pod_view"),
    ("tests/unit/test_k8s_objects.py", "tests/unit/test_k8s_lifecycle.py",
     "tests/unit/test_k8s_actuator.py"))
EVICTION_CALLS = Target(
    "orchestrator/adapters/k8s/actuator.py", ("KubeActuator._evict",),
    ("tests/unit/test_k8s_actuator.py",))
FULL = (
    *CI,
    EVICTION,
    POD_RULES,
    EVICTION_CALLS,
    Target("orchestrator/engine/prices.py", None, ("tests/unit/test_economics.py",)),
    Target("orchestrator/economics.py", None,
           ("tests/unit/test_economics_edges.py", "tests/unit/test_economics.py",
            "tests/unit/test_engine.py")),
    Target("orchestrator/engine/plan.py", ("build_context", "decide"),
           (*GUARD_TESTS, "tests/unit/test_journal_before_act.py")),
    # The cycle is driven by the in-process controller and replay tests as well as by the
    # journal-before-act and policy fuzz tests; the journal and metrics one cycle leaves
    # (tests/runtime/test_cycle_observable.py) run first, as they are the quickest.
    Target("orchestrator/runtime/cycle.py", None,
           ("tests/runtime/test_cycle_observable.py",
            "tests/unit/test_journal_before_act.py", "tests/unit/test_fuzz_policy.py",
            "tests/runtime/test_controller.py", "tests/runtime/test_replay.py",
            "tests/runtime/test_decision_step.py")),
)


def line_ranges(source: str, functions: tuple[str, ...] | None) -> list[tuple[int, int]]:
    """Lines (first, last) of the named functions in `source`."""
    tree = ast.parse(source)
    defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[node.name] = node
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    defs[f"{node.name}.{member.name}"] = member
    if functions is None:
        return [(1, len(source.splitlines()))]
    lines = source.splitlines()
    ranges = []
    for name in functions:
        if name.startswith("section:"):
            marker = f"# --- {name.split(':', 1)[1]}"
            start = next((i + 1 for i, t in enumerate(lines) if t.startswith(marker)), None)
            if start is None:
                raise SystemExit(f"no {marker!r} comment in the module")
            end = next((i + 1 for i, t in enumerate(lines) if i + 1 > start
                        and t.startswith("# ---")), len(lines))
            ranges.append((start, end))
            continue
        d = defs.get(name)
        if d is None:
            raise SystemExit(f"no function, method or class {name!r} in the module")
        first = min([d.lineno, *(x.lineno for x in d.decorator_list)])
        ranges.append((first, d.end_lineno or d.lineno))
    return ranges


def load_open() -> set[str]:
    if not OPEN.exists():
        return set()
    return {ln.strip() for ln in OPEN.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")}


def load_equivalent() -> dict[str, str]:
    """`module | operator | changed line` → reason, from scripts/mutation_equivalent.txt."""
    known: dict[str, str] = {}
    if not EQUIVALENT.exists():
        return known
    key = None
    for raw in EQUIVALENT.read_text(encoding="utf-8").splitlines():
        if raw.startswith("#") or not raw.strip():
            continue
        if raw.startswith("    "):
            if key is None:
                raise SystemExit(f"{EQUIVALENT}: a reason with no mutant above it: {raw!r}")
            known[key] = (known[key] + " " + raw.strip()).strip()
        else:
            key = raw.strip()
            known[key] = ""
    missing = [k for k, why in known.items() if not why]
    if missing:
        raise SystemExit(f"{EQUIVALENT}: no reason given for {missing[0]!r}")
    return known


#: Mutated lines too short to name one place in a module on their own.
BARE_STATEMENTS = frozenset({"break", "continue", "pass"})


def mutant_key(module: str, operator: str, diff: str) -> str:
    """A survivor's identity that does not move with line numbers: the module, the
    operator and the mutated line as it reads after the change."""
    lines = diff.splitlines()
    added = [ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    # Blank lines left out: a mutant of a file's last line comes back from cosmic-ray with
    # one more (the final newline), which `planned_diff` does not see.
    text = " / ".join(a for a in added if a)
    if text in BARE_STATEMENTS:
        # `break` alone would name every loop's: the line above tells them apart.
        first = next(i for i, ln in enumerate(lines) if ln.startswith(("-", "+"))
                     and not ln.startswith(("---", "+++")))
        above = [ln[1:].strip() for ln in lines[:first]
                 if ln.startswith(" ") and ln[1:].strip() and not ln[1:].strip().startswith("#")]
        text += f" after {above[-1]}" if above else ""
    return f"{module} | {operator} | {text}"


def planned_diff(source: str, mutation: object) -> str:
    """The diff a mutation will make, worked out without running it."""
    import difflib

    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    op = get_operator(mutation.operator_name)(**mutation.operator_args)  # type: ignore[attr-defined]
    mutated = mutate_code(source, op, mutation.occurrence) or source  # type: ignore[attr-defined]
    return "\n".join(difflib.unified_diff(source.splitlines(), mutated.splitlines(),
                                          lineterm=""))


def copy_source(dest: Path, ref: str | None) -> None:
    """The working tree, or the source at git revision `ref` with the tests as they are."""
    names = COPIED
    if ref is not None:
        names = ("tests",)
        source = [n for n in COPIED if n != "tests"]
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *source],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for name in names:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)


def run_target(target: Target, scratch: Path, *, operators: re.Pattern[str], list_only: bool,
               timeout_s: float, sample: int | None, only: set[str] | None,
               shard: tuple[int, int] = (1, 1)) -> tuple[int, int, list[tuple[str, str]]]:
    """(killed, survived, [(key, diff)]) for one module."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    module = scratch / target.module
    source = module.read_text(encoding="utf-8")
    ranges = line_ranges(source, target.functions)
    tests = " ".join(target.tests)
    config = scratch / "cosmic-ray.toml"
    # -x: the first failing test kills the mutant; no output capture to spare time.
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        f"timeout = {timeout_s}\n"
        "excluded-modules = []\n"
        f'test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider '
        f'{tests}"\n'
        '[cosmic-ray.distributor]\nname = "local"\n',
        encoding="utf-8",
    )
    session = scratch / "session.sqlite"
    session.unlink(missing_ok=True)
    cr = str(Path(sys.executable).with_name("cosmic-ray"))
    subprocess.run([cr, "init", str(config), str(session), "--force"], cwd=scratch,
                   check=True, capture_output=True)
    with use_db(str(session), WorkDB.Mode.open) as db:
        skip = WorkResult(worker_outcome=WorkerOutcome.SKIPPED)
        inside, outside = [], []
        for item in db.pending_work_items:
            ok = all(
                any(lo <= m.start_pos[0] <= hi for lo, hi in ranges)
                and operators.match(m.operator_name)
                for m in item.mutations
            )
            if ok and only is not None:
                ok = mutant_key(target.module, item.mutations[0].operator_name,
                                planned_diff(source, item.mutations[0])) in only
            (inside if ok else outside).append(item)
        # In source order, so a sample is spread evenly over the code and the same each run.
        inside.sort(key=lambda w: [(m.start_pos, m.operator_name, m.occurrence)
                                   for m in w.mutations])
        if sample is not None and len(inside) > sample:
            step = len(inside) / sample
            chosen = {int(i * step) for i in range(sample)}
            outside += [w for i, w in enumerate(inside) if i not in chosen]
            inside = [w for i, w in enumerate(inside) if i in chosen]
        # Shard k of n: every n-th mutant from the k-th, so shards run side by side.
        index, count = shard
        outside += [w for i, w in enumerate(inside) if i % count != index - 1]
        inside = [w for i, w in enumerate(inside) if i % count == index - 1]
        for item in outside:
            db.set_result(item.job_id, skip)
        kept = len(inside)
    print(f"{target.module}: {kept} mutants", flush=True)
    if list_only or kept == 0:
        return 0, 0, []
    # The tests must pass on the unmutated code, or every mutant would count as killed.
    baseline = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests],
        cwd=scratch, capture_output=True, text=True, check=False,
    )
    if baseline.returncode != 0:
        raise SystemExit(f"{target.module}: the tests fail without any mutant:\n"
                         f"{baseline.stdout[-3000:]}")
    started = time.monotonic()
    subprocess.run([cr, "exec", str(config), str(session)], cwd=scratch, check=True,
                   capture_output=True)
    killed = survived = 0
    survivors = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                survived += 1
                op = item.mutations[0].operator_name
                survivors.append((mutant_key(target.module, op, result.diff or ""),
                                  result.diff or ""))
            else:
                killed += 1
    print(f"  killed {killed}, survived {survived} in {time.monotonic() - started:.0f} s",
          flush=True)
    for key, _ in survivors:
        print(f"  survived: {key}", flush=True)
    return killed, survived, survivors


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be from 1 to N")
    return k, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scope", choices=tuple(OPERATORS), default="ci",
                        help="ci: decisions (comparisons, boolean logic, loops); full: "
                             "arithmetic and constants too; arithmetic: those alone")
    parser.add_argument("--list", action="store_true", help="count the mutants, run none")
    parser.add_argument("--sample", type=int,
                        help="run only this many mutants per module, spread evenly over "
                             "the code (the same ones every run): CI's budget")
    parser.add_argument("--survivors", type=Path,
                        help="write the unexplained survivors, one a line, to this file")
    parser.add_argument("--only", type=Path,
                        help="run only the mutants a --survivors file lists")
    parser.add_argument("--ref", help="git revision of the source (default: working tree)")
    parser.add_argument("--module", help="only the targets whose module path contains this")
    parser.add_argument("--function", action="append", dest="functions", metavar="NAME",
                        help="only this function of the module (as a target names them: "
                             "name, Class.method, Class; repeatable), e.g. after rewriting it")
    parser.add_argument("--warn-only", action="store_true",
                        help="report unexplained survivors without failing (make test: "
                             "whether a slow mutant times out, and so counts as killed, "
                             "depends on the machine's load)")
    parser.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N",
                        help="run the K-th of N interleaved shares of the mutants (run the "
                             "N shares side by side, one process per core)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one mutant's tests may take before it counts as killed")
    args = parser.parse_args()
    targets = [t for t in (CI if args.scope == "ci" else FULL)
               if args.module is None or args.module in t.module]
    if args.functions:
        if len(targets) != 1:
            parser.error("--function needs --module naming exactly one target")
        targets = [Target(targets[0].module, tuple(args.functions), targets[0].tests)]
    equivalent = load_equivalent()
    open_list = load_open()
    only = None
    if args.only is not None:
        only = {ln.strip() for ln in args.only.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.startswith("#")}
    os.environ.update({"NUMBA_DISABLE_JIT": "1", "PYTHONDONTWRITEBYTECODE": "1",
                       "HYPOTHESIS_PROFILE": "mutation"})
    rows = []
    unexplained = []
    with tempfile.TemporaryDirectory(prefix="hashpivot-mutation-") as tmp:
        scratch = Path(tmp)
        copy_source(scratch, args.ref)
        os.environ["PYTHONPATH"] = str(scratch)
        for target in targets:
            killed, survived, survivors = run_target(
                target, scratch, operators=OPERATORS[args.scope], list_only=args.list,
                timeout_s=args.timeout, sample=args.sample, only=only, shard=args.shard)
            known = [k for k, _ in survivors if k in equivalent]
            still_open = [k for k, _ in survivors if k in open_list]
            for key, diff in survivors:
                if key not in equivalent and key not in open_list:
                    unexplained.append((key, diff))
            rows.append((target.module, killed, survived, len(known), len(still_open)))
    if args.survivors is not None:
        keys = [k for k, _ in unexplained]
        args.survivors.write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    if args.list:
        return 0
    print("\n| module | mutants run | killed | survived | of them equivalent | of them open "
          "| score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, killed, survived, known, still_open in rows:
        total = killed + survived
        # Equivalent mutants cannot be killed: they leave the denominator.
        score = killed / (total - known) if total - known else 1.0
        print(f"| `{module}` | {total} | {killed} | {survived} | {known} | {still_open} "
              f"| {score:.1%} |")
    if unexplained:
        print(f"\n{len(unexplained)} surviving mutants no test kills and "
              f"{EQUIVALENT.relative_to(ROOT)} does not explain:")
        for key, diff in unexplained:
            print(f"\n{key}\n{diff}")
        return 0 if args.warn_only else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
