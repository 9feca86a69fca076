"""Find policies by entry-point name, `module:Class` path, or Python file path."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import PolicyError, raised_at
from orchestrator.framework.policy import Policy, PolicyParams, template_fields
from orchestrator.framework.reasons import POLICY_REASON_MAX, POLICY_REASON_MIN
from orchestrator.models.config import is_policy_path

ENTRY_POINT_GROUP = "hashpivot.policies"


def registered_policies() -> dict[str, EntryPoint]:
    """Entry points in `hashpivot.policies`. Two packages claiming one name is an error."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(ep.name)
        if other is not None and other.value != ep.value:
            raise PolicyError(
                f"policy name {ep.name!r} is registered twice: {other.value} and {ep.value}"
            )
        found[ep.name] = ep
    return dict(sorted(found.items()))


def _policy_class(obj: Any, where: str) -> type[Policy]:
    if not (inspect.isclass(obj) and issubclass(obj, Policy)):
        raise PolicyError(f"{where} is not a hashpivot Policy subclass")
    if inspect.isabstract(obj):
        raise PolicyError(f"{where} is abstract: it must implement decide()")
    for code, text in dict(getattr(obj, "reasons", {}) or {}).items():
        if not (isinstance(code, int) and POLICY_REASON_MIN <= code <= POLICY_REASON_MAX):
            raise PolicyError(f"{where}: reason code {code!r} must be an integer from "
                              f"{POLICY_REASON_MIN} to {POLICY_REASON_MAX}")
        if not isinstance(text, str) or not text.strip():
            raise PolicyError(f"{where}: reason {code} needs a text")
        try:
            template_fields(text)
        except ValueError as exc:
            raise PolicyError(f"{where}: reason {code}'s text {text!r}: {exc}") from None
    return obj


def _classes_in_module(module: Any) -> list[type[Policy]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Policy)
        and not inspect.isabstract(obj)
        and obj.__module__ == module.__name__
    ]


def _load_file(path: Path, class_name: str | None) -> type[Policy]:
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    path = path.resolve()
    module_name = f"hashpivot_user_policy_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PolicyError(f"cannot import {path}")
    # A policy file imports the modules beside it, as a script would.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit, GeneratorExit) as exc:  # the file failed on import
        del sys.modules[module_name]
        raise PolicyError(f"importing policy file {path} failed: {raised_at(exc)}") from exc
    if class_name:
        return _policy_class(getattr(module, class_name, None), f"{path}:{class_name}")
    classes = _classes_in_module(module)
    if len(classes) != 1:
        names = ", ".join(c.__name__ for c in classes) or "none"
        raise PolicyError(
            f"{path} defines {len(classes)} Policy classes ({names}); name one as {path}:Class"
        )
    return _policy_class(classes[0], f"{path}:{classes[0].__name__}")


def resolve_policy_class(spec: str) -> type[Policy]:
    """The class behind a registry name, `module:Class`, or `path/to/file.py[:Class]`."""
    spec = spec.strip()
    path_part, _, class_part = spec.partition(":") if spec.count(":") == 1 else (spec, "", "")
    if is_policy_path(spec):
        return _load_file(Path(path_part), class_part or None)
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        if not all(part.isidentifier() for part in module_name.split(".")) or not (
                class_name.isidentifier()):
            raise PolicyError(f"policy {spec!r} is neither a name, module:Class (an absolute "
                              "module path and a class name) nor a .py file")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PolicyError(f"cannot import policy module {module_name!r}: {exc}") from exc
        return _policy_class(getattr(module, class_name, None), spec)
    known = registered_policies()
    if spec not in known:
        names = ", ".join(known) or "none installed"
        raise PolicyError(f"unknown policy {spec!r}; known policies: {names}")
    try:
        loaded = known[spec].load()
    except Exception as exc:
        raise PolicyError(f"policy {spec!r} ({known[spec].value}) failed to load: {exc!r}") from exc
    return _policy_class(loaded, spec)


def load_policy(
    spec: str, params: dict[str, Any] | None = None, *, source: str = "policy.params"
) -> Policy:
    """Instantiate a policy with checked parameters; errors name the field and the source."""
    try:
        cls = resolve_policy_class(spec)
    except PolicyError as exc:
        if not source.endswith("policy.params"):
            raise
        # From a config file: name its `policy.name`, as a parameter error names the file.
        raise PolicyError(f"{source.removesuffix('params')}name: {exc}") from exc.__cause__
    try:
        parsed: PolicyParams = cls.Params.model_validate(params or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PolicyError(
            f"{source}.{loc}: {first['msg']} (policy {spec!r} accepts: "
            f"{', '.join(cls.Params.model_fields) or 'no parameters'})"
        ) from None
    try:
        return cls(parsed)
    except (Exception, SystemExit, GeneratorExit) as exc:  # a policy's own __init__
        raise PolicyError(f"policy {spec!r} failed to start: {raised_at(exc)}") from exc
