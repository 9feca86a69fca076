"""Bad input gives one clear error naming the field and its source."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import ConfigError, PolicyError
from orchestrator.framework import load_policy, resolve_policy_class
from orchestrator.models import HardwareProfile, Observed
from orchestrator.models.build import build_fleet
from orchestrator.models.config import load_config
from policies.hysteresis import Hysteresis

EXAMPLE = Path(__file__).parents[2] / "examples" / "west-texas" / "site.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert build_fleet(cfg).n == 1024


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """
        guards:
          min_dwel_s: 10
    """)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "guards.min_dwel_s" in str(err.value)
    assert "Extra inputs are not permitted" in str(err.value)


def test_negative_hashrate_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
        hardware:
          - {name: bad, kind: asic, mine_hashrate: -5, watts_mine: 3000, watts_idle: 10}
    """)
    with pytest.raises(ConfigError, match=r"hardware\.0\.mine_hashrate: Input should be greater"):
        load_config(path)


def test_nan_price_is_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        Observed(value=float("nan"), source="test", observed_at="2025-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        Observed(value=1.0, source="test", observed_at="2025-01-01T00:00:00")  # type: ignore[arg-type]


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "guards: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(path)


def test_unknown_profile_lists_known(tmp_path: Path) -> None:
    path = write(tmp_path, """
        fleet:
          - {profile: s99, count: 3}
    """)
    expected = r"fleet\[0\]\.profile.*unknown hardware profile 's99'.*s21"
    with pytest.raises(ConfigError, match=expected):
        build_fleet(load_config(path))


def test_environment_overrides_file_and_flags_override_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, """
        controller: {interval_s: 10, metrics_port: 9000}
    """)
    monkeypatch.setenv("HASHPIVOT_CONTROLLER__INTERVAL_S", "20")
    monkeypatch.setenv("HASHPIVOT_CONTROLLER__METRICS_PORT", "9100")
    cfg = load_config(path, {"controller": {"metrics_port": 9200}})
    assert cfg.controller.interval_s == 20
    assert cfg.controller.metrics_port == 9200


def test_gpu_profile_needs_gpus() -> None:
    with pytest.raises(ValidationError, match="gpus > 0"):
        HardwareProfile(name="x", kind="gpu", mine_hashrate=1, watts_mine=1, watts_idle=1)  # type: ignore[arg-type]


def test_a_profile_idling_above_its_working_draw_is_refused() -> None:
    # Idle is every node's lowest draw (the power cap sheds towards it).
    with pytest.raises(ValidationError, match="watts_idle cannot exceed watts_mine"):
        HardwareProfile(name="x", kind="asic", mine_hashrate=100, watts_mine=3000,  # type: ignore[arg-type]
                        watts_idle=3500)
    with pytest.raises(ValidationError, match="watts_idle cannot exceed watts_ai"):
        HardwareProfile(name="g", kind="gpu", gpus=8, gpu_model="H100", mine_hashrate=1,  # type: ignore[arg-type]
                        watts_mine=6000, watts_ai=1000, watts_idle=2000)
    ok = HardwareProfile(name="a", kind="asic", mine_hashrate=100, watts_mine=3000,  # type: ignore[arg-type]
                         watts_idle=3000)
    assert ok.watts_idle == ok.watts_mine


def test_policy_by_name_module_path_and_file(tmp_path: Path) -> None:
    assert resolve_policy_class("hysteresis") is Hysteresis
    assert resolve_policy_class("policies.hysteresis:Hysteresis") is Hysteresis
    source = tmp_path / "mine_always.py"
    source.write_text(textwrap.dedent("""
        import numpy as np
        from orchestrator.framework import Policy, PolicyDecision

        class MineAlways(Policy):
            name = "mine-always"

            def decide(self, ctx):
                n = ctx.fleet.n
                return PolicyDecision(np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int16))
    """))
    cls = resolve_policy_class(str(source))
    assert cls.__name__ == "MineAlways"
    assert resolve_policy_class(f"{source}:MineAlways") is not None


def test_unknown_policy_lists_known_ones() -> None:
    with pytest.raises(PolicyError, match=r"unknown policy 'greedyy'; known policies: .*greedy"):
        resolve_policy_class("greedyy")


def test_bad_policy_params_name_the_field() -> None:
    with pytest.raises(PolicyError, match=r"policy\.params\.confirm_tick: Extra inputs"):
        load_policy("hysteresis", {"confirm_tick": 2})
    with pytest.raises(PolicyError, match=r"confirm_ticks: Input should be greater"):
        load_policy("hysteresis", {"confirm_ticks": 0})


def test_duplicate_entry_point_names_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from orchestrator.framework import registry

    eps = [
        EntryPoint("greedy", "policies.greedy:Greedy", registry.ENTRY_POINT_GROUP),
        EntryPoint("greedy", "other_pkg.greedy:Greedy", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    with pytest.raises(PolicyError, match="registered twice"):
        registry.registered_policies()


def test_file_without_policy_class(tmp_path: Path) -> None:
    empty = tmp_path / "nothing.py"
    empty.write_text("x = 1\n")
    with pytest.raises(PolicyError, match="defines 0 Policy classes"):
        resolve_policy_class(str(empty))


def test_example_policy_package_registers_by_entry_point() -> None:
    # `make setup` installs examples/policies, as a policy author's package would be.
    cls = resolve_policy_class("night-owl")
    assert cls.__name__ == "NightOwl"
    assert resolve_policy_class("night_owl:NightOwl") is cls


def test_policy_file_imports_a_module_beside_it_and_is_found_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy split over two files in the config's folder loads from any working
    directory: the config names it relative to itself, and it imports its sibling."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "thresholds.py").write_text("STRIKE_USD_MWH = 77.0\n")
    (site / "my_policy.py").write_text(textwrap.dedent("""
        from thresholds import STRIKE_USD_MWH
        from orchestrator.framework import Policy, PolicyDecision

        class Strike(Policy):
            name = "strike-sibling"
            strike = STRIKE_USD_MWH

            def decide(self, ctx):
                return PolicyDecision.keep(ctx)
    """))
    (site / "site.yaml").write_text("policy:\n  name: my_policy.py\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(site / "site.yaml")
    assert config.policy.name == str(site / "my_policy.py")
    policy = load_policy(config.policy.name)
    assert policy.name == "strike-sibling"
    assert type(policy).strike == 77.0


def test_policy_file_that_fails_on_import_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\ny = 1 / 0\n")
    with pytest.raises(PolicyError, match=r"ZeroDivisionError.*broken\.py:2"):
        resolve_policy_class(str(broken))


def test_site_time_zone_is_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text("sites:\n  - {name: hall, timezone: America/Chicgo}\n")
    with pytest.raises(ConfigError, match=r"timezone.*America/Chicgo"):
        load_config(cfg)


@pytest.mark.parametrize(("code", "text"), [(50, "x"), (100_000, "x"), (101, "")])
def test_policy_reason_codes_are_checked(tmp_path: Path, code: int, text: str) -> None:
    file = tmp_path / "codes.py"
    file.write_text(textwrap.dedent(f"""
        from orchestrator.framework import Policy, PolicyDecision

        class Codes(Policy):
            name = "codes"
            reasons = {{{code}: {text!r}}}

            def decide(self, ctx):
                return PolicyDecision.keep(ctx)
    """))
    with pytest.raises(PolicyError, match="reason"):
        resolve_policy_class(str(file))
