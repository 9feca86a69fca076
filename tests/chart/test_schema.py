"""The chart's values schema: generated, current, strict, and true to the app's model.

These tests need no helm binary.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from orchestrator.models.config import HashpivotConfig

from .helm import CHART, CI_VALUES, REPO


def _load_generator() -> ModuleType:
    # scripts/ is not a package: load the generator from its file.
    spec = importlib.util.spec_from_file_location(
        "gen_chart_schema", REPO / "scripts" / "gen_chart_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_chart_schema = _load_generator()

SCHEMA_PATH = CHART / "values.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over the chart's values."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_generated_files_are_current() -> None:
    """values.schema.json and README.md are what the generator makes of values.yaml and
    the model today; run `python scripts/gen_chart_schema.py` after changing either."""
    for path, content in gen_chart_schema.generated().items():
        assert path.read_text() == content, (
            f"{path.relative_to(REPO)} is stale: run python scripts/gen_chart_schema.py"
        )


def test_config_property_is_the_application_model(schema: dict[str, Any]) -> None:
    model = HashpivotConfig.model_json_schema()
    defs = model.pop("$defs")
    embedded = dict(schema["properties"]["config"])
    embedded.pop("description")
    model.pop("description")
    assert embedded == model
    for name, definition in defs.items():
        assert schema["$defs"][name] == definition


def _objects(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


def test_every_object_schema_rejects_unknown_keys(schema: dict[str, Any]) -> None:
    loose = [
        where
        for where, node in _objects(schema)
        if isinstance(node.get("properties"), dict)
        and not where.endswith("/properties")  # a property literally named "properties"
        and node.get("additionalProperties") is not False
    ]
    assert not loose, f"object schemas without additionalProperties: false: {loose}"


def test_every_ref_resolves(schema: dict[str, Any]) -> None:
    refs = {node["$ref"] for _, node in _objects(schema) if isinstance(node.get("$ref"), str)}
    assert refs
    missing = sorted(r for r in refs if r.removeprefix("#/$defs/") not in schema["$defs"])
    assert not missing


def test_default_values_are_valid(validator: jsonschema.Draft202012Validator) -> None:
    errors = sorted(validator.iter_errors(_values()), key=str)
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


@pytest.mark.parametrize("path", sorted(CI_VALUES.glob("*.yaml")), ids=lambda p: p.stem)
def test_ci_values_are_valid(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    merged = _merge(_values(), yaml.safe_load(path.read_text()))
    errors = sorted(validator.iter_errors(merged), key=str)
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"replicaCout": 3}, "replicaCout"),
        ({"image": {"tga": "x"}}, "tga"),
        ({"config": {"controller": {"mdoe": "live"}}}, "mdoe"),
        ({"config": {"controller": {"interval_s": "soon"}}}, "interval_s"),
        ({"config": {"controller": {"mode": "yolo"}}}, "mode"),
        ({"securityContext": {"runAsUsr": 0}}, "runAsUsr"),
        ({"miner": {"tolerations": [{"kee": "x"}]}}, "kee"),
        ({"ray": {"mode": "remote"}}, "mode"),
    ],
)
def test_schema_rejects_bad_values(
    validator: jsonschema.Draft202012Validator, over: dict[str, Any], named: str
) -> None:
    errors = list(validator.iter_errors(_merge(_values(), over)))
    assert errors
    text = " ".join(f"{list(e.absolute_path)} {e.message}" for e in errors)
    assert named in text


def test_every_value_is_documented() -> None:
    """Each key with a schema has a `# --` comment (the generator enforces it too)."""
    docs = gen_chart_schema.value_docs((CHART / "values.yaml").read_text())
    for key in _values():
        assert (key,) in docs, f"{key} has no `# --` comment in values.yaml"
    assert all(text.strip() for text in docs.values())


def test_value_docs_parser() -> None:
    text = (
        "# -- top\n# continues\na:\n  # plain comment, not a doc\n  b: 1\n"
        "  # -- the c\n  c:\n    - x\n# -- d doc\nd: {}\n"
    )
    assert gen_chart_schema.value_docs(text) == {
        ("a",): "top continues",
        ("a", "c"): "the c",
        ("d",): "d doc",
    }
