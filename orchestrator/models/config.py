"""The one configuration model: a site file (YAML) for backtests, dry-runs and the controller.

Precedence: CLI flags > environment (`HASHPIVOT_…`, nested with `__`) > config file.
Errors name the file and the field (`load_config`). The JSON schema (`hashpivot config
schema`) is generated from these models, and the Helm chart validates against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from orchestrator.errors import ConfigError
from orchestrator.models.asic_config import AsicConfig
from orchestrator.models.base import StrictModel
from orchestrator.models.feeds_config import LiveMarketConfig
from orchestrator.models.hardware import HardwareProfile, builtin_catalog
from orchestrator.models.kueue_config import KubeRayConfig, KueueConfig
from orchestrator.models.modes import Mode
from orchestrator.models.site import Site
from orchestrator.models.sources import BUNDLED_PREFIX, JobTraceConfig, SeriesSource

__all__ = [
    "BUNDLED_PREFIX",
    "HashpivotConfig",
    "JobTraceConfig",
    "RecordedMarketConfig",
    "SeriesSource",
    "load_config",
]


class ScoringConfig(StrictModel):
    """How switching costs are modeled and amortized."""

    expected_stay_h: float = Field(
        default=24.0, gt=0, description="Hours a node is expected to stay after a switch."
    )
    eviction_penalty_gpu_hours: float = Field(
        default=1.0,
        ge=0,
        description="Credit owed per evicted interruptible GPU, in GPU-hours at its price.",
    )
    ai_demand_headroom: float = Field(
        default=0.25,
        ge=0,
        description="AI capacity kept above the smoothed demand level, as a share of it: "
        "bursts find GPUs ready instead of waiting for nodes to switch back.",
    )
    power_nowcast: Literal["last-published", "typical-change"] = Field(
        default="last-published",
        description="Power price the score table uses while the interval being decided "
        "is not yet published: the newest published price, or that plus the median "
        "change between the same two times of day over the past 7 days.",
    )

    @property
    def nowcasts_power(self) -> bool:
        return self.power_nowcast == "typical-change"


class GuardConfig(StrictModel):
    """Operator limits every plan obeys, whatever the policy."""

    min_dwell_s: float = Field(default=3600.0, ge=0, description="Least time in a mode, s.")
    max_switches_per_node_per_day: float = Field(
        default=6.0, gt=0, description="Per-node switch budget (a decaying 24 h count)."
    )
    max_fleet_switch_share_per_hour: float = Field(
        default=0.25,
        gt=0,
        le=24,
        description="Largest share of the fleet that may switch per hour (above 1: a hall "
        "that curtails and resumes within the hour, e.g. on 5-minute prices).",
    )
    stale_after_s: float = Field(
        default=3 * 3600.0, gt=0, description="Market data older than this holds all modes."
    )
    frozen: bool = Field(default=False, description="Kill switch: hold every node as it is.")


SeriesOrConstant = SeriesSource | float


#: Per market field: the units its values may come in, and the least value it takes
#: (None: any; power prices go negative). A series in another unit is a wrong column.
_MARKET_UNITS: dict[str, tuple[tuple[str, ...], tuple[float, bool] | None]] = {
    "btc_usd": (("usd", "dimensionless"), (0.0, False)),
    "difficulty": (("dimensionless",), (0.0, False)),
    "fees_btc_per_block": (("btc", "sat", "dimensionless"), (0.0, True)),
    "subsidy_btc": (("btc", "sat", "dimensionless"), (0.0, True)),
    "power_usd_mwh": (("usd_per_mwh", "usd_per_kwh", "dimensionless"), None),
    "gpu_usd_per_gpu_hour": (("usd_per_gpu_hour", "dimensionless"), (0.0, True)),
    "hashpower_btc_per_unit_day": (("btc_per_unit_day", "btc", "sat", "dimensionless"),
                                   (0.0, True)),
}


def _check_market_value(field: str, value: SeriesOrConstant) -> SeriesOrConstant:
    units, least = _MARKET_UNITS[field]
    if isinstance(value, SeriesSource):
        if value.unit not in units:
            raise ValueError(f"unit {value.unit!r} is not a unit of {field}: use one of "
                             f"{', '.join(units)}")
    elif least is not None and (value < least[0] or (value == least[0] and not least[1])):
        raise ValueError(f"{value!r}: {field} takes values "
                         f"{'0 or more' if least[1] else 'above 0'}")
    return value


class RecordedMarketConfig(StrictModel):
    """Recorded market series for dry-runs and backtests."""

    btc_usd: SeriesOrConstant
    difficulty: SeriesOrConstant
    fees_btc_per_block: SeriesOrConstant
    subsidy_btc: SeriesOrConstant | None = Field(
        default=None, description="None: from the halving schedule by date."
    )
    power_usd_mwh: dict[str, SeriesOrConstant] = Field(
        description="Per site name; 'default' serves every site without its own."
    )
    gpu_usd_per_gpu_hour: dict[str, SeriesOrConstant] = Field(default_factory=dict)
    hashpower_btc_per_unit_day: dict[str, SeriesOrConstant] = Field(default_factory=dict)

    @field_validator("btc_usd", "difficulty", "fees_btc_per_block", "subsidy_btc")
    @classmethod
    def _one_value(cls, value: SeriesOrConstant | None, info: ValidationInfo) -> (
            SeriesOrConstant | None):
        assert info.field_name is not None
        return None if value is None else _check_market_value(info.field_name, value)

    @field_validator("power_usd_mwh", "gpu_usd_per_gpu_hour", "hashpower_btc_per_unit_day")
    @classmethod
    def _each_value(cls, values: dict[str, SeriesOrConstant], info: ValidationInfo) -> (
            dict[str, SeriesOrConstant]):
        assert info.field_name is not None
        for key, value in values.items():
            try:
                _check_market_value(info.field_name, value)
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None
        return values


class FleetGroup(StrictModel):
    """A group of identical nodes in a simulated fleet."""

    profile: str = Field(description="Hardware profile name (built-in catalog or `hardware`).")
    count: int = Field(ge=0, le=10_000_000)
    site: str = "default"
    mode: Literal["idle", "mine", "ai"] = "idle"
    name_prefix: str | None = None

    @property
    def initial_mode(self) -> Mode:
        return Mode.parse(self.mode)


def is_policy_path(spec: str) -> bool:
    """True when a policy spec names a Python file (`path/to/file.py[:Class]`)."""
    spec = spec.strip()
    path_part = spec.partition(":")[0] if spec.count(":") == 1 else spec
    return path_part.endswith(".py") or "/" in path_part


class PolicyConfig(StrictModel):
    name: str = Field(
        default="hysteresis", description="Registry name, module:Class, or path/to/file.py."
    )
    params: dict[str, Any] = Field(default_factory=dict)


class BacktestConfig(StrictModel):
    start: datetime | None = None
    end: datetime | None = None
    step_s: float = Field(default=3600.0, gt=0, description="Decision interval in the backtest.")
    baselines: bool = Field(default=True, description="Run the baselines and the oracle beside.")
    unguarded_baselines: bool = Field(
        default=False,
        description="Also run each baseline with no dwell or switch budgets (labelled so); "
        "by default baselines run under the same guards as the policies.",
    )
    oracle_gap: float = Field(
        default=0.005, ge=0, le=1,
        description="The oracle stops once (bound - feasible) / feasible is at most this.",
    )
    oracle_max_iterations: int = Field(
        default=200, ge=1, description="The oracle stops after this many iterations."
    )

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if end is None or start is None:
            return end
        # Naive times are UTC, as everywhere in a backtest period.
        s, e = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
        if e <= s:
            iso = "%Y-%m-%dT%H:%M:%SZ"
            raise ValueError(f"backtest end {e.astimezone(UTC).strftime(iso)} is not after "
                             f"start {s.astimezone(UTC).strftime(iso)}")
        return end


class ControllerMode(StrEnum):
    LIVE = "live"
    SHADOW = "shadow"
    DRY_RUN = "dry-run"


class KubernetesConfig(StrictModel):
    """How hashpivot finds and changes nodes in the cluster."""

    namespace: str = Field(default="hashpivot", description="Namespace of the controller.")
    node_selector: str = Field(
        default="hashpivot.io/managed=true", description="Label selector of managed nodes."
    )
    profile_label: str = Field(
        default="hashpivot.io/profile", description="Node label naming the hardware profile."
    )
    gpu_product_profiles: dict[str, str] = Field(
        default_factory=lambda: {
            "NVIDIA-H100-80GB-HBM3": "h100-sxm-8x",
            "NVIDIA-H100-PCIe": "h100-pcie-8x",
            "NVIDIA-H200": "h200-sxm-8x",
            "NVIDIA-B200": "b200-8x",
            "NVIDIA-A100-SXM4-80GB": "a100-sxm-8x",
        },
        description="nvidia.com/gpu.product label value → profile, when no profile label.",
    )
    price_annotation: str = Field(
        default="hashpivot.io/offered-usd-per-gpu-hour",
        description="Pod annotation with the price a tenant pays per GPU-hour.",
    )
    interruptible_label: str = Field(
        default="hashpivot.io/interruptible", description="Pod label 'true' marks evictable work."
    )
    interruptible_priority_classes: list[str] = Field(default_factory=lambda: ["preemptible"])
    lease_annotation: str = Field(
        default="hashpivot.io/lease-until",
        description="Pod annotation: protected until (RFC 3339).",
    )
    miner_daemonset: str | None = Field(
        default="hashpivot-miner", description="Name of the miner DaemonSet (None: not managed)."
    )
    qps: float = Field(default=5.0, gt=0, description="Most API writes per second.")
    burst: int = Field(default=10, ge=1)
    lease_name: str = Field(default="hashpivot-leader")
    lease_duration_s: float = Field(default=15.0, gt=0)
    switch_timeout_s: float = Field(
        default=3600.0, gt=0, description="A node stuck mid-switch longer than this is reported."
    )
    site_label: str = Field(
        default="hashpivot.io/site", description="Node label naming the site (default: first)."
    )
    opt_out_label: str = Field(
        default="hashpivot.io/opt-out",
        description="Node label 'true' makes hashpivot leave the node alone (manual override).",
    )
    duration_annotation: str = Field(
        default="hashpivot.io/expected-hours",
        description="Pod annotation: expected run time of a pending job, hours.",
    )
    deadline_annotation: str = Field(
        default="hashpivot.io/start-by",
        description="Pod (or Workload, RayCluster, RayJob) annotation: latest time a pending "
        "job may start, RFC 3339; policies read it as the job's deadline.",
    )
    lease_renew_deadline_s: float = Field(
        default=10.0,
        gt=0,
        description="A leader that has not renewed for this long stops writing "
        "(shorter than lease_duration_s, so two leaders never overlap).",
    )
    lease_retry_period_s: float = Field(
        default=2.0, gt=0, description="Seconds between leader-election attempts and renewals."
    )
    write_budget_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest one cycle waits for the write rate limiter; the rest waits a cycle.",
    )
    resync_s: float = Field(
        default=1800.0, gt=0, description="Full relist of watched nodes and pods, s (safety net)."
    )
    field_manager: str = Field(default="hashpivot", description="fieldManager of every write.")


class TelemetryConfig(StrictModel):
    """GPU power measured on the nodes (NVML agents on Ray) instead of nameplate watts."""

    enabled: bool = Field(
        default=False,
        description="Start one NVML agent per Ray node offering `resource` (live and shadow, "
        "under Ray); where NVML is absent a node keeps its nameplate watts.",
    )
    resource: str = Field(
        default="GPU", min_length=1,
        description="Ray resource that marks a GPU node's worker (see docs/telemetry.md).",
    )
    timeout_s: float = Field(
        default=5.0, gt=0, description="An agent slower than this is reported unreachable, s."
    )


class ControllerConfig(StrictModel):
    mode: ControllerMode = Field(
        default=ControllerMode.SHADOW,
        description="shadow (default: decide and record, write nothing), live, or dry-run.",
    )
    interval_s: float = Field(default=300.0, gt=0, description="Seconds between cycles.")
    ray_address: str | None = Field(default=None, description="Join this Ray cluster; None: local.")
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    journal_dir: str = Field(default="runs/journal")
    journal_max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)


class HashpivotConfig(BaseSettings):
    """A site: its hardware, fleet, market data, policy and limits."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix="HASHPIVOT_",
        env_nested_delimiter="__",
        frozen=True,
        allow_inf_nan=False,
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    sites: list[Site] = Field(default_factory=lambda: [Site()])
    hardware: list[HardwareProfile] = Field(
        default_factory=list, description="Profiles added to (or replacing) the built-in catalog."
    )
    fleet: list[FleetGroup] = Field(default_factory=list, description="Simulated fleet.")
    market: RecordedMarketConfig | None = Field(default=None, description="Recorded market data.")
    live_market: LiveMarketConfig = Field(default_factory=LiveMarketConfig)
    demand: JobTraceConfig | None = None
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    guards: GuardConfig = Field(default_factory=GuardConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    kueue: KueueConfig = Field(default_factory=KueueConfig)
    kuberay: KubeRayConfig = Field(default_factory=KubeRayConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    asic: AsicConfig | None = Field(
        default=None, description="ASIC miners read and curtailed through their firmware API."
    )

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, v: list[Site]) -> list[Site]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique, got {names}")
        if not v:
            raise ValueError("at least one site is needed")
        return v

    @model_validator(mode="after")
    def _fleet_refs(self) -> HashpivotConfig:
        names = {s.name for s in self.sites}
        for i, group in enumerate(self.fleet):
            if group.site not in names:
                raise ValueError(
                    f"fleet[{i}].site {group.site!r} is not a configured site ({sorted(names)})"
                )
        profiles = set(builtin_catalog()) | {p.name for p in self.hardware}
        for i, group in enumerate(self.fleet):
            if group.profile not in profiles:
                raise ValueError(f"fleet[{i}].profile: unknown hardware profile "
                                 f"{group.profile!r}; known: {', '.join(sorted(profiles))}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_config merges file < env < flags itself and passes the result as kwargs.
        return (init_settings,)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def environment_values() -> dict[str, Any]:
    """Config values from `HASHPIVOT_…` variables; one that cannot be read is an error
    naming it (a section, such as HASHPIVOT_GUARDS, takes a JSON object)."""
    try:
        return dict(EnvSettingsSource(HashpivotConfig)())
    except SettingsError as exc:
        found = re.search(r'field "([^"]+)"', str(exc))
        name = f"HASHPIVOT_{found.group(1).upper()}" if found else "a HASHPIVOT_ variable"
        raise ConfigError(f"environment variable {name}: not valid JSON (a section or a list "
                          "is given as JSON)") from None


#: Errors that only say the value is not of one type: where a setting takes one of several
#: (a number or a series), they are left out beside an error of the branch that fits.
_TYPE_ONLY_ERRORS = frozenset({
    "float_type", "float_parsing", "int_type", "int_parsing", "int_from_float", "bool_type",
    "bool_parsing", "string_type", "dict_type", "model_type", "model_attributes_type",
    "list_type", "none_required", "literal_error", "enum",
})


#: How pydantic names the branches of a union of plain types in an error's location.
_TYPE_TAGS = frozenset({"float", "int", "str", "bool", "none", "list", "dict"})
_MAPPING_ONLY_ERRORS = frozenset({"dict_type", "model_type", "model_attributes_type"})


_MISSING = object()


def _child(node: object, part: int | str) -> object:
    """The value at `part` inside `node` as the file has it, or `_MISSING`."""
    if isinstance(node, Mapping):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _is_branch_tag(part: int | str, node: object, walking: bool) -> bool:
    """Whether `part` names a union's branch (`float`, `function-after[…]`,
    `SeriesSource`) rather than a key: under a plain value every name is one."""
    if not isinstance(part, str):
        return False
    if "[" in part or part in _TYPE_TAGS or part.startswith("constrained-"):
        return True
    return walking and (not isinstance(node, Mapping | list)
                        or (part[:1].isupper() and part.isidentifier()))


def _place_in_file(loc: tuple[int | str, ...], data: object) -> tuple[tuple[str, ...], bool]:
    """`loc` as a place in the file, without the tags pydantic adds for the branches of a
    union, which name no key a user wrote; and whether a branch tag was left out."""
    parts: list[str] = []
    node, walking, branched = data, data is not None, False
    for part in loc:
        child = _child(node, part) if walking else _MISSING
        if child is not _MISSING:
            node = child
        elif _is_branch_tag(part, node, walking):
            branched = True
            continue
        else:
            walking = False  # a key the file does not have (a missing field)
        parts.append(str(part))
    return tuple(parts), branched


def format_validation_error(exc: ValidationError, source: str, data: object = None) -> str:
    """One line per error, `source: place.in.file: message`. `data`: what was validated,
    so the branches of a setting that takes one of several types read as one place."""
    found = []
    for err in exc.errors():
        place, branched = _place_in_file(tuple(err["loc"]), data)
        kind = err["type"]
        if branched and kind in _MAPPING_ONLY_ERRORS and not isinstance(err["input"], Mapping):
            kind = "mapping_only"  # a plain value: the branches of plain types say more
        found.append((place, branched, kind, err["msg"]))
    # Where a value matched no branch, keep the errors of the branches that fit its type:
    # those from inside it (a series' own fields), else those of plain types.
    fitting = [place for place, branched, kind, _ in found
               if branched and kind not in _TYPE_ONLY_ERRORS and kind != "mapping_only"]
    plain = {place for place, branched, kind, _ in found
             if branched and kind in _TYPE_ONLY_ERRORS}
    lines: list[str] = []
    for place, branched, kind, msg in found:
        inside = any(f[: len(place)] == place for f in fitting)
        if branched and ((kind in _TYPE_ONLY_ERRORS and inside)
                         or (kind == "mapping_only" and place in plain)):
            continue
        # A validator's own message reads as it is, without pydantic's "Value error, "
        # (one over the whole file names its fields itself).
        where = f"{'.'.join(place)}: " if place else ""
        line = f"{source}: {where}{msg.removeprefix('Value error, ')}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


class _UnreadableValueError(Exception):
    """A mapping gives a key twice, or a value YAML reads as a date is no real date."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: the plain loader
    keeps the last silently, so a second `power_cap_kw` would override the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping; its keys may be overridden
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _UnreadableValueError(
                        f"line {line}: {key!r} is given twice in one mapping "
                        f"(first at line {seen[key]})")
                seen[key] = line
            except TypeError:  # an unhashable key: the constructor reports it
                continue
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        # `2025-13-21` looks like a date to YAML, which then fails to build it.
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise _UnreadableValueError(f"line {node.start_mark.line + 1}: {node.value!r} is "
                                     f"not a real date or time ({exc})") from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                 _UniqueKeyLoader.construct_yaml_timestamp)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _UnreadableValueError as exc:
        raise ConfigError(str(exc), source=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of settings", source=str(path))
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"setting names are text, got {key!r}", source=str(path))
    return data


def load_config(
    path: Path | str | None, overrides: dict[str, Any] | None = None
) -> HashpivotConfig:
    """Read a config file; lay the environment over it and CLI flags over both.

    Errors name the file and the field. Relative paths inside the config are resolved
    against the config file's folder (`base_dir`).
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        data = read_yaml(path)
        source = str(path)
    env = environment_values()
    merged = _deep_merge(_deep_merge(data, env), overrides or {})
    try:
        config = HashpivotConfig(**merged)
    except ValidationError as exc:
        message = format_validation_error(exc, source, merged)
        if env:  # the error may be the variables', not the file's
            laid = ", ".join(f"HASHPIVOT_{key.upper()}…" for key in sorted(env))
            message += f"\n(environment variables {laid} are laid over {source})"
        raise ConfigError(message) from None
    config._base_dir = path.parent.resolve() if path is not None else Path.cwd()
    return _policy_file_from_config_dir(config)


def _policy_file_from_config_dir(config: HashpivotConfig) -> HashpivotConfig:
    """A policy file named in a config is found beside the config, like its data files."""
    spec = config.policy.name.strip()
    if not is_policy_path(spec) or Path(spec.partition(":")[0]).is_absolute():
        return config
    path_part, colon, class_part = spec.partition(":") if spec.count(":") == 1 else (
        spec, "", "")
    resolved = f"{config._base_dir / path_part}{colon}{class_part}"
    policy = config.policy.model_copy(update={"name": resolved})
    moved = config.model_copy(update={"policy": policy})
    moved._base_dir = config._base_dir
    return moved


def base_dir(config: HashpivotConfig) -> Path:
    """The folder relative paths in `config` are resolved against."""
    return config._base_dir
