"""Plan files: bad input gets an error naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import ConfigError
from orchestrator.planning.config import load_plan
from orchestrator.planning.evaluate import scenarios, site_mw, sized_config, sizes_mw

EXAMPLE = Path(__file__).parents[2] / "examples" / "conversion"


def _write(tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load((EXAMPLE / "plan.yaml").read_text())
    data["site"] = str(EXAMPLE / "site.yaml")
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("__")
        for key in head:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_plan_loads_with_its_sizes_and_scenarios(tmp_path: Path) -> None:
    plan = load_plan(EXAMPLE / "plan.yaml")
    assert site_mw(plan) == 20.0
    assert sizes_mw(plan) == [float(2 * k) for k in range(11)]
    names = [s.name for s in scenarios(plan)]
    assert len(names) == 2 + len(plan.file.scenarios.stresses)
    assert len(set(names)) == len(names)


def test_negative_capex_names_field_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, conversion__capex_per_gpu_usd=-1)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert str(path) in str(err.value)
    assert "conversion.capex_per_gpu_usd" in str(err.value)


def test_horizon_shorter_than_build_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, financing__horizon_years=0.5, conversion__build_months=9)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert str(path) in str(err.value)
    assert "horizon_years" in str(err.value) and "build_months" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"conversion__gpu_profile": "s21"}, ["conversion.gpu_profile", "h100-sxm-8x"]),
        ({"conversion__gpus_per_mw": 5000}, ["conversion.gpus_per_mw", "MW"]),
        ({"sizes": {"mw": [0, 30]}}, ["sizes.mw", "20 MW"]),
        ({"sizes": {"mw": [0, 2], "step_mw": 2}}, ["sizes", "exactly one"]),
        ({"surprise": 1}, ["surprise"]),
        ({"scenarios__starts": []}, ["scenarios.starts"]),
        ({"site_name": "elsewhere"}, ["site_name", "west-texas-hall"]),
        ({"policy_params": {"x": 1}}, ["policy_params"]),
        # Before: numpy's own error, with a traceback, at the first draw.
        ({"scenarios__bootstrap__seed": -1}, ["scenarios.bootstrap.seed"]),
    ],
)
def test_bad_plan_input(tmp_path: Path, changes: dict[str, Any], words: list[str]) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    for word in words:
        assert word in str(err.value)
    assert str(path) in str(err.value)


def test_missing_site_file_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path, site="nowhere.yaml")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml"):
        load_plan(path)


def test_sized_site_swaps_least_efficient_asics_for_gpu_nodes(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path))
    sc = scenarios(plan)[0]
    cfg, facts = sized_config(plan, 4.0, sc)
    counts = {g.profile: g.count for g in cfg.fleet}
    base = {g.profile: g.count for g in plan.site.fleet}
    # S19 XP (3010 W, 140 TH: 21.5 J/TH) goes before the S21 (17.5 J/TH).
    s19_removed = round(4e6 / 3010)
    assert counts["s19-xp"] == base["s19-xp"] - s19_removed
    assert counts["s21"] == base["s21"]
    gpus_per_node = 8
    assert counts["h100-sxm-8x"] == round(4 * plan.file.conversion.gpus_per_mw / gpus_per_node)
    assert facts["removed_th"] == pytest.approx(s19_removed * 140)
    assert cfg.backtest.start == sc.start and cfg.backtest.end == sc.end


def test_window_outside_the_recorded_data_fails_before_any_run(tmp_path: Path) -> None:
    from orchestrator.planning.evaluate import check_policy

    path = _write(tmp_path, scenarios__starts=["2025-09-01T00:00:00Z"])
    with pytest.raises(ConfigError) as err:
        check_policy(load_plan(path))
    text = str(err.value)
    assert str(path) in text and "scenarios.starts" in text
    assert "recorded from 2025-09-01" in text and "btc_usd" in text


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"scenarios__starts": None}, "scenarios.starts", "name at least one window start"),
    ({"scenarios__window_days": 1.5}, "scenarios.window_days", "integer"),
    ({"financing__horizon_years": 0.02, "conversion__build_months": 0},
     "horizon_years", "0 whole months"),
    ({"financing__horizon_years": 10}, "gpu_life_years", "buys the GPUs once"),
    ({"sizes": {"step_mw": 0.000001}}, "sizes.step_mw", "more than 500 sizes"),
])
def test_a_plan_that_would_run_wrong_is_refused_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str, words: str
) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert str(path) in str(err.value) and field in str(err.value), str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize(("section", "value", "words"), [
    ("demand", None, "needs an AI demand trace"),
    ("market.gpu_usd_per_gpu_hour", {"A100_80GB_SXM4": 1.5}, "prices no H100_80GB_SXM5 rental"),
])
def test_a_plan_on_a_site_its_gpus_cannot_earn_on_is_refused(
    tmp_path: Path, section: str, value: Any, words: str
) -> None:
    # Converted MW earn from AI jobs at a rental price: without either, every size would
    # show the GPUs' cost and no income.
    site = yaml.safe_load((EXAMPLE / "site.yaml").read_text())
    *parents, leaf = section.split(".")
    node = site
    for key in parents:
        node = node[key]
    if value is None:
        node.pop(leaf)
    else:
        node[leaf] = value
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    path = _write(tmp_path, site=str(tmp_path / "site.yaml"))
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_sizes_listed_without_zero_run_beside_the_hall_as_it_is(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, sizes={"mw": [4, 2, 4]}))
    assert sizes_mw(plan) == [0.0, 2.0, 4.0]
