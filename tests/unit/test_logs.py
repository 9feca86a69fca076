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
        # Reconfiguring replaces the handler instead of printing each line twice.
        assert len(logging.getLogger("hashpivot").handlers) == 1
    finally:
        root = logging.getLogger("hashpivot")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)
