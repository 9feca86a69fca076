"""Generate the Helm chart's values.schema.json and the values tables of its README.

One source for each fact: the `config` block's schema is the application's own model
(`HashpivotConfig.model_json_schema()`); descriptions come from the `# --` comments in
values.yaml; Kubernetes-typed values (resources, affinity, tolerations…) use the
Kubernetes schemas of the pinned version, vendored by kubernetes-validate.

Usage: python scripts/gen_chart_schema.py [--check]
  --check  write nothing; exit 1 if a generated file is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from orchestrator.models.config import HashpivotConfig  # noqa: E402

CHART = REPO / "helm" / "hashpivot"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
README = CHART / "README.md"
# Kubernetes version whose schemas the chart's Kubernetes-typed values are checked against.
K8S_SCHEMA_VERSION = "1.36.0"

Schema = dict[str, Any]
Path_ = tuple[str, ...]


# -- Kubernetes definitions ---------------------------------------------------------------


def _k8s_definitions() -> dict[str, Schema]:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v{K8S_SCHEMA_VERSION}-local-strict" / "_definitions.json"
    defs: dict[str, Schema] = json.loads(path.read_text())["$defs"]
    return defs


def _strip(node: Any) -> Any:
    """Drop prose and Kubernetes extension keys: the schema checks, the docs explain."""
    if isinstance(node, dict):
        return {
            k: _strip(v)
            for k, v in node.items()
            if k != "description" and not k.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            yield ref.removeprefix("#/$defs/")
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _closure(roots: set[str], defs: dict[str, Schema]) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = _strip(defs[name])
        todo.extend(r for r in _refs(out[name]) if r not in out)
    return dict(sorted(out.items()))


# -- Chart values schema ------------------------------------------------------------------


def k8s(name: str) -> Schema:
    return {"$ref": f"#/$defs/io.k8s.{name}"}


def obj(**props: Schema) -> Schema:
    return {"type": "object", "additionalProperties": False, "properties": props}


def string(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def integer(**kw: Any) -> Schema:
    return {"type": "integer", **kw}


BOOL: Schema = {"type": "boolean"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
STRINGS: Schema = {"type": "array", "items": {"type": "string"}}
PULL_POLICY = string(enum=["Always", "IfNotPresent", "Never"])
DIGEST = string(pattern=r"^(sha256:[a-f0-9]{64})?$")
DURATION = string(pattern=r"^([0-9]+(ms|s|m|h))+$")
QUANTITY = k8s("apimachinery.pkg.api.resource.Quantity")
INT_OR_STRING = k8s("apimachinery.pkg.util.intstr.IntOrString")
RESOURCES = k8s("api.core.v1.ResourceRequirements")
ENV = {"type": "array", "items": k8s("api.core.v1.EnvVar")}
TOLERATIONS = {"type": "array", "items": k8s("api.core.v1.Toleration")}
POD_SECURITY = k8s("api.core.v1.PodSecurityContext")
SECURITY = k8s("api.core.v1.SecurityContext")
PORT = integer(minimum=1, maximum=65535)
NAME = string(pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$", maxLength=253)


def chart_schema() -> Schema:
    """Schema of every chart value except `config` (which is the application's model)."""
    image = obj(
        repository=string(minLength=1),
        tag=string(),
        digest=DIGEST,
        pullPolicy=PULL_POLICY,
    )
    ray_group = {
        "rayStartParams": STRING_MAP,
        "resources": RESOURCES,
    }
    return obj(
        nameOverride=string(maxLength=63),
        fullnameOverride=string(maxLength=63),
        config={},  # replaced by the application model in build_schema
        image=image,
        imagePullSecrets={"type": "array", "items": string(minLength=1)},
        replicaCount=integer(minimum=0),
        serviceAccount=obj(create=BOOL, name=NAME, annotations=STRING_MAP),
        rbac=obj(create=BOOL),
        ray=obj(
            mode=string(enum=["embedded", "external", "kuberay"]),
            address=string(pattern=r"^((ray|ray\+tls)://)?[^\s]*$"),
            embedded=obj(shmSize=QUANTITY),
            kuberay=obj(
                rayVersion=string(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$"),
                image=obj(repository=string(), tag=string()),
                head=obj(**ray_group),
                workers=obj(
                    replicas=integer(minimum=0),
                    minReplicas=integer(minimum=0),
                    maxReplicas=integer(minimum=0),
                    **ray_group,
                ),
            ),
        ),
        journal=obj(sizeLimit=QUANTITY, existingClaim=NAME),
        kernelCache=obj(existingClaim=NAME),
        podAnnotations=STRING_MAP,
        podLabels=STRING_MAP,
        podSecurityContext=POD_SECURITY,
        securityContext=SECURITY,
        resources=RESOURCES,
        logFormat=string(enum=["text", "json"]),
        extraEnv=ENV,
        feedSecrets={"type": "array", "items": string(
            pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", maxLength=253), "uniqueItems": True},
        nodeSelector=STRING_MAP,
        tolerations=TOLERATIONS,
        affinity=k8s("api.core.v1.Affinity"),
        topologySpreadConstraints={
            "type": "array",
            "items": k8s("api.core.v1.TopologySpreadConstraint"),
        },
        priorityClassName=string(),
        terminationGracePeriodSeconds=integer(minimum=0),
        service=obj(
            type=string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
            port=PORT,
            annotations=STRING_MAP,
        ),
        serviceMonitor=obj(
            enabled=BOOL, interval=DURATION, scrapeTimeout=DURATION, labels=STRING_MAP
        ),
        grafanaDashboard=obj(enabled=BOOL, labels=STRING_MAP, annotations=STRING_MAP),
        podDisruptionBudget=obj(enabled=BOOL, maxUnavailable=INT_OR_STRING),
        networkPolicy=obj(
            enabled=BOOL,
            metricsFrom={"type": "array", "items": k8s("api.networking.v1.NetworkPolicyPeer")},
            apiServerPorts={"type": "array", "items": PORT, "minItems": 1},
            extraEgress={
                "type": "array",
                "items": k8s("api.networking.v1.NetworkPolicyEgressRule"),
            },
        ),
        miner=obj(
            enabled=BOOL,
            image=obj(repository=string(), tag=string(), digest=DIGEST, pullPolicy=PULL_POLICY),
            command=STRINGS,
            args=STRINGS,
            wallet=obj(
                existingSecret=NAME,
                key=string(pattern=r"^[-._a-zA-Z0-9]+$"),
                envName=string(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
            ),
            extraEnv=ENV,
            resources=RESOURCES,
            runtimeClassName=string(),
            nodeSelector=STRING_MAP,
            tolerations=TOLERATIONS,
            priorityClassName=string(),
            podAnnotations=STRING_MAP,
            podSecurityContext=POD_SECURITY,
            securityContext=SECURITY,
            terminationGracePeriodSeconds=integer(minimum=0),
            maxUnavailable=INT_OR_STRING,
        ),
    )


# -- values.yaml comments -----------------------------------------------------------------

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?:\s|$)")


def value_docs(text: str) -> dict[Path_, str]:
    """Map each key path of values.yaml to its `# --` comment (continued on `#` lines)."""
    docs: dict[Path_, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not stripped or stripped.startswith("-") or match is None:
            pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), match["key"])
        if pending:
            docs[path] = " ".join(p for p in pending if p)
        pending = None
        stack.append((indent, match["key"]))
    return docs


# -- schema assembly ----------------------------------------------------------------------


def _walk(schema: Schema, path: Path_ = ()) -> Iterator[tuple[Path_, Schema]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, (*path, key))


def build_schema(values_text: str | None = None) -> Schema:
    """The values schema, with descriptions from values.yaml; raises if they disagree."""
    text = values_text if values_text is not None else VALUES.read_text()
    docs = value_docs(text)
    # Leaf schemas (NAME, BOOL…) are shared objects: copy them apart (a deep copy would
    # keep them shared) so each value gets its own description, not the last assigned.
    chart = json.loads(json.dumps(chart_schema()))
    declared = {p for p, _ in _walk(chart) if p}
    problems = [
        f"{'.'.join(p)}: in the schema but not documented with `# --` in values.yaml"
        for p in sorted(declared)
        if p not in docs
    ]
    problems += [
        f"{'.'.join(p)}: documented in values.yaml but not in the chart schema"
        for p in sorted(docs)
        if p not in declared and p[0] != "config" and not _inside_leaf(chart, p)
    ]
    if problems:
        raise SystemExit("values.yaml and the chart schema disagree:\n  " + "\n  ".join(problems))
    for path, sub in _walk(chart):
        if path in docs:
            sub["description"] = docs[path]

    # The model's refs point at "#/$defs/…": its definitions move to the document root.
    model = HashpivotConfig.model_json_schema()
    model_defs = model.pop("$defs", {})
    model["description"] = docs[("config",)]
    chart["properties"]["config"] = model
    k8s_defs = _closure(set(_refs(chart)) - set(model_defs), _k8s_definitions())
    if clash := set(model_defs) & set(k8s_defs):
        raise SystemExit(f"definition names clash: {sorted(clash)}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hashpivot chart values",
        **chart,
        "$defs": {**dict(sorted(model_defs.items())), **k8s_defs},
    }


def _inside_leaf(chart: Schema, path: Path_) -> bool:
    """True if `path` lies under a value typed by a $ref or a map (free-form content)."""
    node = chart
    for key in path:
        props = node.get("properties")
        if props is None:
            return True
        if key not in props:
            return False
        node = props[key]
    return False


# -- README -------------------------------------------------------------------------------


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
        schema = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    return schema


def _type_name(schema: Schema, root: Schema) -> str:
    ref = str(schema.get("$ref", ""))
    if ref.startswith("#/$defs/io.k8s."):
        return ref.rsplit(".", 1)[-1]
    resolved = _resolve(schema, root)
    if ref and "enum" not in resolved:
        return ref.rsplit("/", 1)[-1]
    schema = resolved
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "anyOf" in schema:
        return " \\| ".join(_type_name(s, root) for s in schema["anyOf"])
    typ = schema.get("type", "any")
    if typ == "array":
        return f"list of {_type_name(schema.get('items', {}), root)}"
    if typ == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map"
    return str(typ)


def _sub_schema(root: Schema, path: Path_) -> Schema | None:
    node: Schema = root
    for key in path:
        node = _resolve(node, root)
        props = node.get("properties", {})
        if key not in props:
            return None
        node = props[key]
    return node


def _default(values: dict[str, Any], path: Path_) -> str:
    node: Any = values
    for key in path:
        node = node[key]
    rendered = json.dumps(node, ensure_ascii=False)
    return f"`{rendered}`"


def values_table(schema: Schema, values_text: str) -> str:
    values = yaml.safe_load(values_text)
    docs = value_docs(values_text)
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, doc in docs.items():
        sub = _sub_schema(schema, path)
        resolved = _resolve(sub, schema) if sub is not None else {}
        k8s_typed = (sub or {}).get("$ref", "").startswith("#/$defs/io.k8s.")
        if path != ("config",) and "properties" in resolved and not k8s_typed:
            continue  # a section: its keys have rows of their own
        default = _default(values, path) if path != ("config",) else "see below"
        kind = "object" if path == ("config",) else _type_name(sub or {}, schema)
        cell = doc.replace("|", "\\|")
        rows.append(f"| `{'.'.join(path)}` | {kind} | {default} | {cell} |")
    return "\n".join(rows)


def config_table(schema: Schema) -> str:
    model = schema["properties"]["config"]
    rows = ["| Section | Type | Description |", "|---|---|---|"]
    for name, sub in model["properties"].items():
        target = _resolve(sub, schema)
        if "anyOf" in sub:
            target = next(
                (_resolve(s, schema) for s in sub["anyOf"] if s.get("type") != "null"), sub
            )
        if target.get("type") == "array" and "items" in target:
            target = _resolve(target["items"], schema)
        desc = sub.get("description") or target.get("description") or ""
        desc = " ".join(desc.split())
        rows.append(f"| `config.{name}` | {_type_name(sub, schema)} | {desc} |")
    return "\n".join(rows)


def _splice(text: str, marker: str, body: str) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{README}: markers {start} … {end} not found")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def render_readme(schema: Schema, values_text: str, readme_text: str) -> str:
    text = _splice(readme_text, "values", values_table(schema, values_text))
    return _splice(text, "config", config_table(schema))


# -- main ---------------------------------------------------------------------------------


def generated() -> dict[Path, str]:
    """The content every generated file should have."""
    values_text = VALUES.read_text()
    schema = build_schema(values_text)
    return {
        SCHEMA: json.dumps(schema, indent=2, ensure_ascii=False) + "\n",
        README: render_readme(schema, values_text, README.read_text()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, content in generated().items():
        current = path.read_text() if path.exists() else ""
        if current == content:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(content)
    rel = [str(p.relative_to(REPO)) for p in stale]
    if args.check and stale:
        print(f"out of date: {', '.join(rel)}; run python scripts/gen_chart_schema.py")
        return 1
    print(f"updated: {', '.join(rel)}" if stale else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
