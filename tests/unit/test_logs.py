"""The log and metric vocabulary: one `hashpivot.*` logger tree, bounded error kinds."""

from __future__ import annotations

import ast
import io
import json
import logging
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.runtime.logs import configure_logging
from orchestrator.runtime.metrics import ERROR_KINDS, ControllerMetrics, error_kind

PACKAGE = Path(__file__).parents[2] / "orchestrator"


def test_every_logger_is_in_the_hashpivot_tree() -> None:
    names = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "getLogger" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                names.append((path.name, node.args[0].value))
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "getLogger" and node.args
                    and isinstance(node.args[0], ast.Name)
                    and node.args[0].id == "__name__"):
                names.append((path.name, "__name__"))
    assert len(names) > 10
    outside = [(f, n) for f, n in names if not str(n).startswith("hashpivot.")]
    assert outside == []


@given(st.text(max_size=200))
def test_any_error_text_files_under_a_bounded_kind(text: str) -> None:
    assert error_kind(text) in ERROR_KINDS


def test_actuator_messages_get_their_kind_and_the_counter_stays_bounded() -> None:
    metrics = ControllerMetrics()
    texts = {
        "patch failed: 422 spec.taints: Invalid value": "node_patch",
        "eviction of ai/job-1 failed: 429 Too Many Requests": "pod_eviction",
        "re-read after conflict: 0 GET /api/v1/nodes/n1: timed out": "conflict",
        "reading nodes and pods: 0 connection refused": "api_read",
        "ignored a command (3 so far): sent again": "miner_ignored_command",
        "something nobody foresaw": "other",
    }
    for text, kind in texts.items():
        assert error_kind(text) == kind
        metrics.actuation_errors.labels(text).inc()
    rendered = metrics.render().decode()
    kinds = {line.split('kind="')[1].split('"')[0] for line in rendered.splitlines()
             if line.startswith("hashpivot_actuation_errors_total{")}
    assert kinds == set(texts.values())


def test_json_lines_carry_extra_fields_and_text_lines_are_utc() -> None:
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    try:
        logging.getLogger("hashpivot.test").info("cycle %s", "d-1", extra={"cycle": {"n": 3}})
        logging.getLogger("hashpivot.test").debug("not shown at INFO")
        line = json.loads(out.getvalue())
        assert line["message"] == "cycle d-1" and line["cycle"] == {"n": 3}
        assert line["level"] == "INFO" and line["logger"] == "hashpivot.test"
        text = io.StringIO()
        configure_logging("text", "DEBUG", stream=text)
        logging.getLogger("hashpivot.test").debug("now %d", 5)
        assert text.getvalue().rstrip().endswith("Z DEBUG hashpivot.test: now 5")
        # Reconfiguring replaces the handler instead of printing each line twice. (pytest
        # attaches its own capture handlers to a tree that does not propagate: not ours.)
        ours = [h for h in logging.getLogger("hashpivot").handlers
                if h.get_name() == "hashpivot"]
        assert len(ours) == 1
    finally:
        root = logging.getLogger("hashpivot")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)


def test_readiness_says_why_no_cycle_can_run() -> None:
    from orchestrator.runtime.metrics import Health

    now = [0.0]
    health = Health(300.0, clock=lambda: now[0])
    assert health.why_not_ready() == "no cycle completed yet"
    health.beat()
    assert health.ready()
    health.fail("last cycle failed: ApiError: 0 connection refused")
    assert health.why_not_ready() == "last cycle failed: ApiError: 0 connection refused"
    health.beat()
    now[0] += 2 * 300.0  # two intervals without a cycle
    assert health.why_not_ready() == "no cycle completed for 600 s"
    assert health.live()  # liveness waits for three
    health.standby = True  # a live standby runs no cycles and is ready
    assert health.ready()


def test_a_live_standby_stays_alive_while_its_loop_goes_round() -> None:
    # The chart's liveness probe must not restart the replica that waits to take over:
    # it runs no cycle, so its loop going round is what keeps it alive.
    from orchestrator.runtime.metrics import Health

    now = [0.0]
    health = Health(300.0, clock=lambda: now[0])
    health.standby = True
    for _ in range(12):  # an hour of standing by, one round per interval
        now[0] += 300.0
        health.standing_by()
        assert health.live() and health.ready()
    now[0] += 3 * 300.0  # its loop stopped going round
    assert not health.live()


def test_cycle_line_warns_about_guards_that_mean_trouble_and_failed_writes(
        tmp_path: Path) -> None:
    import dataclasses

    import numpy as np

    from orchestrator.framework.reasons import REASON_TEXT, Reason
    from orchestrator.models.config import ControllerMode, load_config
    from orchestrator.ports import ActuationResult
    from orchestrator.runtime.controller import Controller, RunOptions
    from orchestrator.runtime.cycle import CycleOutcome
    from orchestrator.runtime.logs import describe_cycle

    golden = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"
    outcomes: list[CycleOutcome] = []
    controller = Controller(load_config(golden),
                            RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(tmp_path)),
                            on_cycle=outcomes.append)
    try:
        controller.run(1)
    finally:
        controller.close()
    plan = outcomes[0].plan
    assert plan is not None
    n = len(plan.node_names)
    reasons = np.full(n, int(Reason.GUARD_MIN_DWELL), np.int16)
    reasons[0] = int(Reason.GUARD_UNREACHABLE)
    held = dataclasses.replace(plan, reason=reasons, target=plan.current.copy())
    result = ActuationResult(errors={"n9": "patch failed: 500 etcd timeout"})
    message, fields, warnings = describe_cycle(
        CycleOutcome(outcomes[0].record, held, result), ["golden"])
    assert fields["held"] == {"guard_min_dwell": n - 1, "guard_unreachable": 1}
    assert f"held min_dwell {n - 1}, unreachable 1" in message
    # Dwell is ordinary pacing (no warning); an unreachable node and a failed write are not.
    assert warnings == [
        f"1 node(s) held: {REASON_TEXT[Reason.GUARD_UNREACHABLE]}",
        "actuation failed on 1 node(s) (node_patch 1), e.g. n9: patch failed: 500 etcd timeout",
    ]
