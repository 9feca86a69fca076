"""Config files and hardware profiles, fuzzed: whatever a file holds, loading it ends in the
config or in a `ConfigError` that names the file (and the field, when one is at fault) —
never another exception."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ConfigError, HashpivotError
from orchestrator.models.build import build_fleet
from orchestrator.models.config import HashpivotConfig, load_config
from orchestrator.models.hardware import HardwareProfile

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=12,
)

SECTIONS = list(HashpivotConfig.model_fields)
FIELDS = {
    "guards": ["min_dwell_s", "max_switches_per_node_per_day",
               "max_fleet_switch_share_per_hour", "stale_after_s", "frozen"],
    "controller": ["mode", "interval_s", "metrics_port", "journal_dir", "journal_max_bytes"],
    "kubernetes": ["namespace", "qps", "burst", "lease_duration_s", "lease_renew_deadline_s",
                   "switch_timeout_s", "opt_out_label", "gpu_product_profiles"],
    "policy": ["name", "params"],
    "scoring": ["expected_stay_h", "ai_demand_headroom"],
}


@st.composite
def config_documents(draw: st.DrawFn) -> Any:
    """Mostly near-valid documents (known sections and fields, wrong values), some junk."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(values)
    doc: dict[Any, Any] = {}
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=4, unique=True)):
        fields = FIELDS.get(section)
        if fields and draw(st.booleans()):
            doc[section] = {f: draw(values) for f in draw(
                st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True))}
        else:
            doc[section] = draw(values)
    if draw(st.booleans()):
        doc[draw(st.one_of(st.text(max_size=8), st.integers(), st.booleans()))] = draw(values)
    return doc


def write(text: str | bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hp-fuzz-"))
    path = folder / "site.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def check_load(path: Path) -> HashpivotConfig | None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc), f"the error names the file: {exc}"
        return None
    build_and_check(config)
    return config


def build_and_check(config: HashpivotConfig) -> None:
    with contextlib.suppress(HashpivotError):  # a bad profile reference is a clear error
        build_fleet(config)


@FUZZ
@given(config_documents())
def test_any_yaml_document_loads_or_fails_with_a_config_error(doc: Any) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return
    check_load(write(text))


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_load_or_fail_with_a_config_error(data: bytes) -> None:
    check_load(write(data))


@FUZZ
@given(st.sampled_from(sorted(FIELDS)), st.data())
def test_a_wrong_field_is_named(section: str, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(FIELDS[section]))
    bad = data.draw(st.one_of(st.text(min_size=1, max_size=5).filter(lambda s: not s.strip()
                                                                       .lstrip("-").isdigit()),
                              st.lists(st.integers(), min_size=1, max_size=2),
                              st.floats(allow_nan=True).filter(lambda x: x != x)))
    path = write(yaml.safe_dump({section: {field: bad}}))
    try:
        load_config(path)
    except ConfigError as exc:
        assert f"{section}.{field}" in str(exc) or section in str(exc), str(exc)


def test_known_junk_is_reported_clearly() -> None:
    cases = {
        "sites: [{name: a}, {name: a}]": "site names must be unique",
        "guards: {max_fleet_switch_share_per_hour: 30}": "guards.max_fleet_switch_share_per_hour",
        "guards: {min_dwell_s: .nan}": "guards.min_dwell_s",
        "kubernetes: {qps: -1}": "kubernetes.qps",
        "controller: {mode: chaos}": "controller.mode",
        "1: 2": "1",
        "[1, 2]": "top level must be a mapping",
        "a: [": "not valid YAML",
        "hardware: [{name: x, kind: gpu}]": "hardware.0",
    }
    for text, message in cases.items():
        try:
            load_config(write(text))
        except ConfigError as exc:
            assert message in str(exc), (text, str(exc))
        else:
            raise AssertionError(f"{text!r} was accepted")


hardware_fields = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=6), scalars),
        "kind": st.one_of(st.sampled_from(["asic", "gpu", "fpga"]), scalars),
        "mine_hashrate": st.one_of(st.floats(allow_nan=True, allow_infinity=True), scalars),
        "watts_mine": st.one_of(st.floats(allow_nan=True, allow_infinity=True), scalars),
        "watts_ai": st.one_of(st.floats(allow_nan=True, allow_infinity=True), scalars),
        "watts_idle": st.one_of(st.floats(allow_nan=True, allow_infinity=True), scalars),
        "gpus": st.one_of(st.integers(-3, 100), scalars),
        "gpu_model": scalars,
        "mine_algorithm": scalars,
    },
)


@FUZZ
@given(st.lists(hardware_fields, max_size=3), st.integers(0, 3))
def test_hardware_profiles_in_a_site_file(profiles: list[dict[str, Any]], count: int) -> None:
    doc: dict[str, Any] = {"hardware": profiles}
    if profiles and isinstance(profiles[0].get("name"), str):
        doc["fleet"] = [{"profile": profiles[0]["name"], "count": count}]
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    config = check_load(write(text))
    if config is not None:
        for p in config.hardware:
            assert isinstance(p, HardwareProfile)
            for watts in (p.watts_mine, p.watts_ai, p.watts_idle, p.mine_hashrate):
                assert watts == watts and watts >= 0 and watts != float("inf")
