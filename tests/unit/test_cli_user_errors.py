"""User errors at the `hashpivot` command: each is one line naming what is wrong and
where, exit code 2, never a traceback (a real subprocess of the console script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SITE = Path(__file__).parents[2] / "examples" / "gpu-only" / "site.yaml"
PERIOD = ("--from", "2025-10-22", "--to", "2025-10-23", "--no-ray", "--no-baselines")


def hashpivot(*args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe, "the hashpivot console script is installed with the package"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, check=False,
                          timeout=600, env=os.environ | (env or {}))


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_an_output_path_that_is_a_file_or_a_journal_that_is_a_folder(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    refused(hashpivot("backtest", "-c", str(SITE), "-p", "greedy", *PERIOD,
                      "--report", str(taken)),
            f"{taken}: a file is there, and a folder is needed")
    refused(hashpivot("backtest", "-c", str(SITE), "-p", "greedy", *PERIOD,
                      "--report", str(taken / "inside")),
            f"{taken / 'inside'}: Not a directory")
    folder = tmp_path / "journal.jsonl"
    folder.mkdir()
    refused(hashpivot("status", "--journal", str(taken)), f"{taken}: a file; --journal")
    refused(hashpivot("status", "--journal", str(tmp_path / "none")), "no such journal folder")
    refused(hashpivot("status", "--journal", str(tmp_path)), f"{folder}: Is a directory")
    refused(hashpivot("data", "inspect", str(tmp_path)), "a folder, not a file")


def test_a_plot_is_a_png_wherever_it_is_asked_for(tmp_path: Path) -> None:
    refused(hashpivot("data", "inspect", str(SITE), "--plot", str(tmp_path / "p.txt")),
            "the plot is a PNG image")
    proc = hashpivot("data", "inspect", str(SITE), "--plot", str(tmp_path / "plot"))
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "plot.png"
    assert f"plot: {written}" in proc.stderr
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "option"), [
    (("run", "-c", str(SITE), "--mode", "dry-run", "--no-ray", "--metrics-port", "99999"),
     "--metrics-port"),
    (("run", "-c", str(SITE), "--mode", "dry-run", "--no-ray", "--cycles", "0"), "--cycles"),
    (("status", "--last", "0"), "--last"),
    (("explain", "node-1", "--last", "-1"), "--last"),
])
def test_a_count_or_port_out_of_range_is_refused(args: tuple[str, ...], option: str) -> None:
    refused(hashpivot(*args), f"Invalid value for '{option}'")


def test_an_environment_section_that_is_not_json_names_the_variable() -> None:
    refused(hashpivot("config", "check", str(SITE), env={"HASHPIVOT_GUARDS": "notjson"}),
            "environment variable HASHPIVOT_GUARDS: not valid JSON")


def test_a_kubeconfig_of_another_shape_or_a_bad_url_is_refused(tmp_path: Path) -> None:
    for name, text, why in (
            ("list.yaml", "- a\n- b\n", "expected a mapping with clusters, contexts and "
             "users, got list"),
            ("int.yaml", "clusters: 5\n", "clusters must be a list of entries, each a mapping"),
            ("broken.yaml", "garbage: [\n", "expected the node content, but found "
             "'<stream end>' (line 2, column 1)"),
            ("empty.yaml", "", "the file is empty")):
        (tmp_path / name).write_text(text)
        proc = hashpivot("doctor", "-c", str(SITE), "--kubeconfig", str(tmp_path / name))
        refused(proc, f"{tmp_path / name}: kubeconfig unreadable: {why}")
        assert "Error(" not in proc.stderr  # the reason in words, not a Python exception
    refused(hashpivot("doctor", "-c", str(SITE), "--no-rbac", "--url", "http://[::1"),
            "Invalid value for --url")


def test_a_key_given_twice_in_a_config_is_refused_naming_both_lines(tmp_path: Path) -> None:
    lines = SITE.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "power_cap_kw" in line)
    lines.insert(at + 1, lines[at].replace("260", "100"))
    config = tmp_path / "site.yaml"
    config.write_text("\n".join(lines) + "\n")
    refused(hashpivot("config", "check", str(config)),
            f"{config}: line {at + 2}: 'power_cap_kw' is given twice in one mapping "
            f"(first at line {at + 1})")


def test_a_step_longer_than_the_period_is_refused_and_a_part_step_left_out(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(SITE.read_text())
    data["backtest"]["step_s"] = 864_000
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(data))
    refused(hashpivot("backtest", "-c", str(config), "-p", "greedy", *PERIOD),
            "backtest.step_s: a step of 240 h is longer than the period")
    # 90 minutes of hourly steps: the hour past the end is not billed.
    reports, warned = [], []
    for end in ("2025-10-22T01:30", "2025-10-22T01:00"):
        out = tmp_path / end.replace(":", "")
        proc = hashpivot("backtest", "-c", str(SITE), "-p", "greedy", "--from", "2025-10-22",
                         "--to", end, "--no-ray", "--no-baselines", "--report", str(out))
        assert proc.returncode == 0, proc.stderr
        reports.append(json.loads((out / "summary.json").read_text())["policies"]["greedy"])
        warned.append("the period ends 30 min into a step" in proc.stderr)
    assert reports[0]["power_cost_usd"] == reports[1]["power_cost_usd"] > 0
    assert warned == [True, False]


def test_a_sweep_refuses_flags_it_would_drop_and_names_its_own_period(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("policy: greedy\nperiods: [{from: 2025-10-23, to: 2025-10-22}]\n")
    refused(hashpivot("backtest", "-c", str(SITE), "--sweep", str(sweep), "--from", "2025-10-22",
                      "-p", "greedy", "--ignore-programs"),
            "--from, -p, --ignore-programs cannot go with --sweep")
    refused(hashpivot("backtest", "-c", str(SITE), "--sweep", str(sweep)),
            f"{sweep}: periods[0]: to (2025-10-22T00:00:00+00:00) is not after from")


def test_a_period_error_names_where_the_period_came_from(tmp_path: Path) -> None:
    refused(hashpivot("backtest", "-c", str(SITE), "-p", "greedy", "--from", "2025-10-23",
                      "--to", "2025-10-22", "--no-ray", "--no-baselines"),
            "error: --to: backtest end 2025-10-22T00:00:00Z is not after start")
    data = yaml.safe_load(SITE.read_text())
    data["backtest"]["end"] = "2025-10-20T00:00:00Z"
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(data))
    refused(hashpivot("backtest", "-c", str(config), "-p", "greedy", "--no-ray",
                      "--no-baselines"),
            f"{config}: backtest.end: backtest end 2025-10-20T00:00:00Z is not after start")
    empty = tmp_path / "empty.yaml"
    empty.write_text("fleet: []\n")
    refused(hashpivot("backtest", "-c", str(empty), "--no-ray"),
            f"{empty}: market: a backtest needs recorded market data")


@pytest.mark.parametrize(
    ("series", "want"),
    [({"path": "btc.csv"}, "market.btc_usd: give exactly one of value_column and value"),
     ({"pathh": "btc.csv", "value_column": "v"}, "market.btc_usd.pathh: Extra inputs"),
     ("abc", "market.btc_usd: Input should be a valid number, unable to parse string")],
    ids=["series-missing-value", "series-unknown-key", "text-for-a-number"],
)
def test_a_setting_that_is_a_number_or_a_series_names_only_the_error_that_fits(
        tmp_path: Path, series: object, want: str) -> None:
    # `btc_usd` takes a number or a series: a mapping's error is the series' own, a text's
    # is the number's, never the other branch's nor pydantic's internal branch names.
    site = yaml.safe_load(SITE.read_text())
    site["market"]["btc_usd"] = series
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site))
    proc = hashpivot("config", "check", str(config))
    refused(proc, f"{config}: {want}")
    errors = [line for line in proc.stderr.splitlines() if "btc_usd" in line]
    assert errors and not any("[" in e or ".float" in e for e in errors), errors
    if isinstance(series, dict):  # a series: nothing about numbers
        assert not any("valid number" in e for e in errors), errors
    else:
        assert len(errors) == 1, errors


def test_doctor_with_nothing_to_check_and_a_negative_row_count_are_refused() -> None:
    refused(hashpivot("doctor", "-c", str(SITE), "--no-rbac"), "nothing to check")
    data = SITE.parents[1].parent / "orchestrator" / "data" / "recorded" / "btc_daily.csv"
    refused(hashpivot("data", "inspect", str(data), "--value-column", "price_usd", "--set",
                      "time_column=date", "--rows", "-3"), "--rows")


def test_a_journal_of_garbage_is_unreadable_not_empty(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_bytes(bytes(range(256)) * 20 + b"\n{\"x\": 1}\n")
    refused(hashpivot("status", "--journal", str(tmp_path)), "no readable decision")
    (tmp_path / "journal.jsonl").write_text("")
    refused(hashpivot("status", "--journal", str(tmp_path)), "no decisions journaled yet")


def test_an_environment_value_that_breaks_a_rule_across_fields_is_named() -> None:
    # A value that breaks a rule across fields: the variables laid over the file are named.
    refused(hashpivot("config", "check", str(SITE), env={"HASHPIVOT_SITES": '[{"name": "x"}]'}),
            "is not a configured site", "environment variables HASHPIVOT_SITES… are laid over")


def test_config_check_refuses_a_backtest_period_that_ends_before_it_starts(
        tmp_path: Path) -> None:
    site = yaml.safe_load(SITE.read_text())
    site["backtest"]["start"], site["backtest"]["end"] = site["backtest"]["end"], site[
        "backtest"]["start"]
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site))
    refused(hashpivot("config", "check", str(config)),
            f"{config}: backtest.end: backtest end 2025-10-21T00:00:00Z is not after start "
            "2025-11-15T00:00:00Z")


@pytest.mark.parametrize(
    ("edit", "want"),
    [(("fleet", 0, "profile", "s99"), "fleet[0].profile: unknown hardware profile 's99'"),
     (("policy", None, "name", "nope"), "policy.name: unknown policy 'nope'")],
    ids=["profile", "policy"],
)
def test_an_unknown_profile_or_policy_names_the_file_and_the_field(
        tmp_path: Path, edit: tuple[str, int | None, str, str], want: str) -> None:
    site = yaml.safe_load(SITE.read_text())
    section, index, key, value = edit
    (site[section] if index is None else site[section][index])[key] = value
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site))
    refused(hashpivot("config", "check", str(config)), f"{config}: {want}")
    refused(hashpivot("run", "-c", str(config), "--mode", "dry-run", "--cycles", "1",
                      "--no-ray", "--journal", str(tmp_path / "j")), f"{config}: {want}")


def test_market_values_that_price_mining_at_no_finite_number_are_not_decided_on(
        tmp_path: Path) -> None:
    # Each value alone is a positive price; a BTC price of 1e308 overflows the mining
    # price: the backtest and the dry-run refuse to start, naming when (before: a run on
    # inf values that ended in a traceback), and `config check` refuses the file.
    data = SITE.parents[2] / "orchestrator" / "data" / "recorded" / "btc_usd_yahoo_daily.csv"
    rows = data.read_text().splitlines()
    at = next(i for i, row in enumerate(rows) if row.startswith("2025-10-21"))
    cells = rows[at].split(",")
    rows[at] = ",".join([cells[0], "1e308", *cells[2:]])
    (tmp_path / "btc.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "site.yaml"
    config.write_text(SITE.read_text().replace("bundled:recorded/btc_usd_yahoo_daily.csv",
                                               "btc.csv"))
    want = "prices mining at no finite number (BTC price 1e+308 USD"
    refused(hashpivot("backtest", "-c", str(config), *PERIOD, "--report", str(tmp_path / "r")),
            want)
    refused(hashpivot("run", "-c", str(config), "--mode", "dry-run", "--cycles", "2",
                      "--no-ray", "--journal", str(tmp_path / "j")), want)
    # `config check` reads the data as the backtest does, so it refuses them too.
    refused(hashpivot("config", "check", str(config)), want)


def test_a_dry_run_without_recorded_market_data_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("sites: [{name: a}]\nfleet: [{profile: s21, count: 1, site: a}]\n")
    refused(hashpivot("run", "-c", str(config), "--mode", "dry-run", "--cycles", "1",
                      "--no-ray", "--journal", str(tmp_path / "j")),
            f"{config}: market: a dry-run needs recorded market data")


def test_a_period_past_the_recorded_data_says_where_the_data_ends() -> None:
    # The bundled BTC/USD extract ends 2025-11-30: a period after it, or one running past
    # it, names that end (not a gap between rows that do not exist).
    refused(hashpivot("backtest", "-c", str(SITE), "-p", "greedy", "--from", "2027-01-01",
                      "--to", "2027-02-01", "--no-ray", "--no-baselines"),
            "series btc_usd ends at 2025-11-30T00:00:00Z, before the requested start "
            "2027-01-01T00:00:00Z")
    refused(hashpivot("backtest", "-c", str(SITE), "-p", "greedy", "--from", "2025-11-01",
                      "--to", "2026-02-01", "--no-ray", "--no-baselines"),
            "series btc_usd ends at 2025-11-30T00:00:00Z, 1512.0 h before the requested end "
            "2026-02-01T00:00:00Z, longer than max_gap_s=172800")


def test_data_inspect_of_a_config_without_recorded_data_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "site.yaml"
    empty.write_text("")
    refused(hashpivot("data", "inspect", str(empty)),
            f"{empty}: no recorded data to inspect: the file has no market or demand section")


def test_a_date_that_is_no_real_date_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(SITE.read_text().replace("start: 2025-10-21T00:00:00Z",
                                               "start: 2025-13-21"))
    line = 1 + next(i for i, text in enumerate(config.read_text().splitlines())
                    if "2025-13-21" in text)
    refused(hashpivot("config", "check", str(config)),
            f"{config}: line {line}: '2025-13-21' is not a real date or time")


def test_a_message_is_printed_as_it_is_whatever_brackets_it_holds(tmp_path: Path) -> None:
    # Rich would read `[/v2]` as a closing tag (a traceback) and `[v2]` as markup.
    for name in ("site[/v2].yaml", "site[v2].yaml"):
        refused(hashpivot("config", "check", str(tmp_path / name)),
                f"error: {tmp_path / name}: file not found")


@pytest.mark.parametrize("spec", [":Greedy", ".policies.greedy:Greedy", "a:b:c"])
def test_a_policy_spec_that_is_no_module_and_class_is_refused(spec: str) -> None:
    refused(hashpivot("backtest", "-c", str(SITE), "-p", spec, *PERIOD),
            f"policy {spec!r} is neither a name, module:Class")


def test_a_parameter_past_its_range_is_refused_by_the_policy_s_model() -> None:
    refused(hashpivot("backtest", "-c", str(SITE), "-p", "hysteresis", *PERIOD, "--params",
                      "confirm_ticks=99999999999999999999999"),
            "hysteresis.confirm_ticks: Input should be less than or equal to 100000")


def test_a_journal_is_billed_only_with_the_site_its_dry_run_ran_on(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    proc = hashpivot("run", "-c", str(SITE), "--mode", "dry-run", "--no-ray", "--from",
                     "2025-10-25", "--to", "2025-10-25T04:00", "--journal", str(journal),
                     "--metrics-port", "0")
    assert proc.returncode == 0, proc.stderr
    half = tmp_path / "half.yaml"
    half.write_text(SITE.read_text().replace("count: 32", "count: 16"))
    # Before: the plans of 32 nodes were applied to a site of 16 (memory corruption).
    refused(hashpivot("backtest", "-c", str(half), "--no-ray", "--journal", str(journal),
                      "--report", str(tmp_path / "r")),
            "decided on 32 node(s), and the config's simulated site has 16")
    # A record whose columns were cut by hand is skipped like any unreadable line.
    lines = (journal / "journal.jsonl").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if '"fleet_columns"' in line)
    record = json.loads(lines[first])
    record["fleet_columns"]["mode"] = record["fleet_columns"]["mode"][:5]
    lines[first] = json.dumps(record)
    (journal / "journal.jsonl").write_text("\n".join(lines) + "\n")
    proc = hashpivot("backtest", "-c", str(SITE), "--no-ray", "--journal", str(journal),
                     "--report", str(tmp_path / "r2"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
