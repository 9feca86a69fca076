"""What an operator sees of a running `hashpivot run` (the installed script, a subprocess):
one log line per cycle (text or JSON) that agrees with the journal, the metrics endpoint
(site power against cap, holds by guard, build info, feed ages that keep growing, leader
meaning "may write"), readiness, and a quiet stop on SIGTERM."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.economics import hashprice_usd_per_ph_day
from orchestrator.framework.reasons import Reason
from orchestrator.models.journal import CycleRecord
from orchestrator.runtime.journal import read_journal

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "site.yaml"


def exe() -> str:
    path = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert path, "the hashpivot console script is installed with the package"
    return path


def run_dry(tmp: Path, *args: str, cycles: int = 6, fmt: str = "text",
            ray: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe(), "--log-format", fmt, "run", "-c", str(GOLDEN), "--mode", "dry-run",
         "--cycles", str(cycles), "--journal", str(tmp / "journal"), "--metrics-port", "0",
         "--ray" if ray else "--no-ray", *args],
        capture_output=True, text=True, check=False, timeout=600)


def run_capped_golden(tmp: Path, cycles: int, policy: str = "hysteresis") -> Path:
    """A dry-run of the golden site under a 22 kW cap (its fleet draws more at the start),
    with `policy`; returns the site file (the journal is `tmp / "journal"`)."""
    site = tmp / "site.yaml"
    site.write_text(GOLDEN.read_text().replace(
        "ai_platform_fee: 0.1}", "ai_platform_fee: 0.1, power_cap_kw: 22}").replace(
        "policy: {name: hysteresis}", f"policy: {{name: {policy}}}"))
    for name in ("power.csv", "jobs.csv"):
        shutil.copy(GOLDEN.parent / name, tmp / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHPIVOT_")}
    ran = subprocess.run(
        [exe(), "run", "-c", str(site), "--mode", "dry-run", "--cycles", str(cycles),
         "--journal", str(tmp / "journal"), "--metrics-port", "0", "--no-ray"],
        capture_output=True, text=True, check=False, timeout=600, env=env)
    assert ran.returncode == 0, ran.stderr
    return site


def expected_line_facts(rec: CycleRecord) -> dict[str, Any]:
    """What the cycle's log line must say, from the journal alone."""
    plan = rec.plan
    return {"decision_id": rec.decision_id, "changes": plan["changes"], "modes": plan["modes"],
            "expected_usd_per_hour": sum(plan["expected_usd_per_hour"].values()),
            "power_w": [kw * 1000.0 for kw in plan["site_power_kw"]],
            "held": {k.lower(): v for k, v in plan["guards"].items()}}


def test_json_log_has_one_line_per_cycle_matching_the_journal(tmp_path: Path) -> None:
    proc = run_dry(tmp_path, fmt="json", cycles=8)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    cycles = [x for x in lines if "cycle" in x]
    records = list(read_journal(tmp_path / "journal"))
    assert len(records) == 8 and len(cycles) == 8
    for line, rec in zip(cycles, records, strict=True):
        want = expected_line_facts(rec)
        got = line["cycle"]
        assert line["level"] == "INFO" and line["logger"] == "hashpivot.controller"
        assert got["decision_id"] == want["decision_id"]
        assert got["changes"] == want["changes"] and got["modes"] == want["modes"]
        assert math.isclose(got["expected_usd_per_hour"], want["expected_usd_per_hour"],
                            rel_tol=1e-3, abs_tol=1e-3)
        assert [s["power_w"] for s in got["sites"]] == pytest.approx(want["power_w"])
        assert got["held"] == want["held"]
        assert line["time"].endswith("Z")
        # The message says the same for people reading text.
        assert f"{want['changes']} change(s)" in line["message"]


def test_text_log_names_each_cycle_and_its_site_power(tmp_path: Path) -> None:
    proc = run_dry(tmp_path, cycles=4)
    assert proc.returncode == 0, proc.stderr
    records = list(read_journal(tmp_path / "journal"))
    cycle_lines = [x for x in proc.stderr.splitlines() if " INFO hashpivot.controller: cycle " in x]
    assert len(cycle_lines) == len(records) == 4
    for line, rec in zip(cycle_lines, records, strict=True):
        assert f"cycle {rec.decision_id}: {rec.plan['changes']} change(s)" in line
        kw = rec.plan["site_power_kw"][0]
        assert f"power golden {kw:,.1f} kW/" in line


@pytest.mark.ray
def test_the_ray_actors_log_reaches_the_command_output(tmp_path: Path) -> None:
    proc = run_dry(tmp_path, fmt="json", cycles=3, ray=True)
    assert proc.returncode == 0, proc.stderr
    ids = [json.loads(x)["cycle"]["decision_id"] for x in proc.stderr.splitlines()
           if x.startswith("{") and '"cycle"' in x]
    assert ids == [r.decision_id for r in read_journal(tmp_path / "journal")]


# -- a running controller --------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def decided(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return m.get(("hashpivot_cycles_total", (("outcome", "decided"),)), 0.0)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """A dry-run paced at one cycle every 3 s, its metrics on a free port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    journal = tmp_path / "journal"
    proc = subprocess.Popen(
        [exe(), "run", "-c", str(GOLDEN), "--mode", "dry-run", "--journal", str(journal),
         "--metrics-port", str(port), "--no-ray", "--pace", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, port, journal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for_cycles(proc: subprocess.Popen[str], port: int, n: int) -> None:
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if decided(scrape(port)) >= n:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)


def test_metrics_of_a_running_controller(
        running: tuple[subprocess.Popen[str], int, Path]) -> None:
    proc, port, journal = running
    wait_for_cycles(proc, port, 2)
    # Two scrapes with the same cycle count between them: one consistent cycle.
    while True:
        t0 = time.monotonic()
        first = scrape(port)
        time.sleep(1.0)
        second = scrape(port)
        t1 = time.monotonic()
        if decided(first) == decided(second):
            break
    n = int(decided(second))
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    rec = list(read_journal(journal))[n - 1]
    site = (("site", "golden"),)
    assert second[("hashpivot_site_power_watts", site)] == pytest.approx(
        rec.plan["site_power_kw"][0] * 1000.0)
    assert second[("hashpivot_site_power_cap_watts", site)] == math.inf  # golden: no cap
    assert rec.market is not None
    price = rec.market.power_usd_mwh["golden"].value
    assert second[("hashpivot_power_price_usd_per_mwh", site)] == pytest.approx(price)
    assert second[("hashpivot_power_price_usd_mwh", site)] == pytest.approx(price)
    assert second[("hashpivot_build_info", (("version", version("hashpivot")),))] == 1.0
    assert second[("hashpivot_leader", ())] == 0.0  # a dry-run writes to no cluster
    assert second[("hashpivot_deciding", ())] == 1.0  # ... and decides every cycle
    for reason, count in rec.plan["guards"].items():
        assert second[("hashpivot_nodes_held", (("reason", reason.lower()),))] == count
    # What the README lists, each against the journal: nodes and expected USD/h per mode,
    # the hashprice decided on, switches of every cycle so far, the last cycle's time.
    for mode, count in rec.plan["modes"].items():
        assert second[("hashpivot_nodes", (("mode", mode),))] == count
    for mode, usd in rec.plan["expected_usd_per_hour"].items():
        assert second[("hashpivot_expected_usd_per_hour", (("mode", mode),))] == (
            pytest.approx(usd))
    assert second[("hashpivot_hashprice_usd_per_ph_day", ())] == pytest.approx(
        hashprice_usd_per_ph_day(rec.market.difficulty.value, rec.market.btc_usd.value,
                                 rec.market.subsidy_btc.value,
                                 rec.market.fees_btc_per_block.value))
    switched = sum(v for (name, _), v in second.items() if name == "hashpivot_switches_total")
    assert switched == sum(r.plan["changes"] for r in list(read_journal(journal))[:n])
    assert 0 < second[("hashpivot_last_cycle_timestamp_seconds", ())] <= time.time()
    # Feed ages keep growing between cycles (a frozen age could never fire an alert).
    ages = [k for k in second if k[0] == "hashpivot_feed_age_seconds"]
    assert ages
    for key in ages:
        grew = second[key] - first[key]
        assert 0.5 <= grew <= (t1 - t0) + 0.5, key


def test_readiness_fails_while_cycles_fail_and_returns_when_one_completes(
        running: tuple[subprocess.Popen[str], int, Path]) -> None:
    # docs/operations.md: /readyz fails with the reason after a failed cycle, /healthz
    # keeps answering (the process stays up), and the first cycle that completes makes
    # the replica ready again. A journal that cannot be written fails every cycle.
    proc, port, journal = running
    wait_for_cycles(proc, port, 1)
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    current = journal / "journal.jsonl"
    current.rename(journal / "kept.jsonl")
    current.mkdir()  # appending to it now fails
    for _ in range(600):  # cycles come every 3 s: a failed one within a few polls
        assert proc.poll() is None, proc.communicate()
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        if ready.status_code != 200:
            break
        time.sleep(0.2)
    assert ready.status_code == 503, "readiness never failed while the journal was unwritable"
    assert "journal cannot be written" in ready.text
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    failed = scrape(port)[("hashpivot_cycles_total", (("outcome", "journal_failed"),))]
    assert failed >= 1
    before = decided(scrape(port))
    current.rmdir()
    wait_for_cycles(proc, port, int(before) + 1)
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200


def test_sigterm_stops_quietly(running: tuple[subprocess.Popen[str], int, Path]) -> None:
    proc, port, journal = running
    wait_for_cycles(proc, port, 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopping (SIGTERM)" in err
    assert "Traceback" not in out + err
    # It stopped after a whole cycle: the final status names the last journaled decision.
    last = list(read_journal(journal))[-1]
    assert last.decision_id in out


def test_deprecated_metric_name_says_so(
        running: tuple[subprocess.Popen[str], int, Path]) -> None:
    proc, port, _ = running
    wait_for_cycles(proc, port, 1)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    helps = [x for x in text.splitlines() if x.startswith("# HELP hashpivot_power_price_usd_mwh ")]
    assert helps and "Deprecated" in helps[0] and "hashpivot_power_price_usd_per_mwh" in helps[0]


def test_explain_says_which_guard_holds_a_node_and_since_when(tmp_path: Path) -> None:
    # An unfrozen run finds the first cycle that switches anything; a frozen twin (same
    # inputs, so the same wishes up to that cycle) must be held there by the freeze.
    free = run_dry(tmp_path / "free", cycles=24)
    assert free.returncode == 0, free.stderr
    records = list(read_journal(tmp_path / "free" / "journal"))
    first = next(k for k, r in enumerate(records) if r.changes)
    node = records[first].changes[0].node
    frozen_site = tmp_path / "frozen.yaml"
    frozen_site.write_text(GOLDEN.read_text() + "\n")
    for name in ("power.csv", "jobs.csv"):
        shutil.copy(GOLDEN.parent / name, tmp_path / name)
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("HASHPIVOT_")}
    frozen = subprocess.run(
        [exe(), "run", "-c", str(frozen_site), "--mode", "dry-run", "--cycles", str(first + 1),
         "--journal", str(tmp_path / "frozen"), "--metrics-port", "0", "--no-ray"],
        capture_output=True, text=True, check=False, timeout=600,
        env=env_free | {"HASHPIVOT_GUARDS__FROZEN": "true"})
    assert frozen.returncode == 0, frozen.stderr
    held = list(read_journal(tmp_path / "frozen"))
    assert len(held) == first + 1 and not any(r.changes for r in held)
    explained = subprocess.run(
        [exe(), "explain", node, "--journal", str(tmp_path / "frozen"), "--config",
         str(frozen_site)], capture_output=True, text=True, check=False, timeout=600,
        env=env_free | {"HASHPIVOT_GUARDS__FROZEN": "true", "COLUMNS": "300"})
    assert explained.returncode == 0, explained.stderr
    when = datetime.fromtimestamp(held[first].now_s, UTC).isoformat(timespec="seconds")
    assert (f"held by a guard: switching frozen by the operator (GUARD_FROZEN), since "
            f"{held[first].decision_id} at {when} (1 cycles)") in explained.stdout
    # Without the config it still says where the node stands and how to learn more.
    bare = subprocess.run([exe(), "explain", node, "--journal", str(tmp_path / "frozen")],
                          capture_output=True, text=True, check=False, timeout=600)
    assert bare.returncode == 0 and "give --config" in bare.stdout
    # A node no cycle names is an error that says so.
    nobody = subprocess.run([exe(), "explain", "no-such-node", "--journal",
                             str(tmp_path / "frozen")], capture_output=True, text=True,
                            check=False, timeout=600)
    assert nobody.returncode == 2 and "no journaled decision names node" in nobody.stderr


def test_explain_names_what_a_change_the_cap_reverted_gave_way_to(tmp_path: Path) -> None:
    # The golden site under a 22 kW cap: once the power spike passes, both S19 XPs want to
    # mine again, but the cap keeps the S21s (more USD per kW·h) and reverts the S19s'
    # change. A reverted node does not change, so the journal lists no change for it;
    # `explain --config` decides the cycle again and says what it gave way to.
    site = run_capped_golden(tmp_path, 30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHPIVOT_")}
    explained = subprocess.run(
        [exe(), "explain", "golden-s19-xp-00000", "--journal", str(tmp_path / "journal"),
         "--config", str(site)], capture_output=True, text=True, check=False, timeout=600,
        env=env | {"COLUMNS": "300"})
    assert explained.returncode == 0, explained.stderr
    assert "(GUARD_POWER_CAP_REVERTED)" in explained.stdout
    assert ("golden-s19-xp-00000 kept as it was so golden-s21-00000 can keep mining: $"
            in explained.stdout), explained.stdout


def test_a_journal_record_no_clock_can_show_or_nested_past_any_parser_is_skipped(
        tmp_path: Path) -> None:
    ran = run_dry(tmp_path, cycles=3)
    assert ran.returncode == 0, ran.stderr
    path = tmp_path / "journal" / "journal.jsonl"
    lines = path.read_text().splitlines()
    cycles = [k for k, line in enumerate(lines) if json.loads(line)["kind"] == "cycle"]
    first = json.loads(lines[cycles[0]])
    for k, when in zip(cycles[1:], ("NaN", "1e300"), strict=True):
        record = json.loads(lines[k])
        record["now_s"] = float(when)
        lines[k] = json.dumps(record)  # NaN as JSON's reader takes it
    lines.append("[" * 100_000 + "]" * 100_000)
    path.write_text("\n".join(lines) + "\n")
    node = first["changes"][0]["node"] if first["changes"] else first["fleet_columns"]["names"][0]
    for args in (("status",), ("explain", node)):
        shown = subprocess.run([exe(), *args, "--journal", str(tmp_path / "journal")],
                               capture_output=True, text=True, check=False, timeout=600)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        assert "unreadable record" in shown.stderr and "not complete JSON" in shown.stderr
    # The controller resumes from such a journal too.
    resumed = run_dry(tmp_path, cycles=5)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr


def test_explain_says_where_a_node_stands_after_its_last_switch(tmp_path: Path) -> None:
    # The golden site's second cycle moves one H100 node from AI to mining, and the
    # dry-run completes the switch in that cycle: "now" is mining since then, not the AI
    # the cycle read before deciding.
    ran = run_dry(tmp_path, cycles=2)
    assert ran.returncode == 0, ran.stderr
    last = list(read_journal(tmp_path / "journal"))[-1]
    assert [(c.node, c.current, c.target) for c in last.changes] == [
        ("golden-h100-sxm-8x-00001", "ai", "mine")]
    assert last.actuation["completed"] == ["golden-h100-sxm-8x-00001"]
    shown = subprocess.run([exe(), "explain", "golden-h100-sxm-8x-00001", "--journal",
                            str(tmp_path / "journal")], capture_output=True, text=True,
                           check=False, timeout=600, env=os.environ | {"COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr
    when = datetime.fromtimestamp(last.now_s, UTC).isoformat(timespec="seconds")
    assert f"now ({last.decision_id}, {when}): mine since {when}" in shown.stdout, shown.stdout


def test_doctor_checks_a_running_controllers_endpoints(
        running: tuple[subprocess.Popen[str], int, Path]) -> None:
    proc, port, _ = running
    wait_for_cycles(proc, port, 1)

    def doctor(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe(), "doctor", "-c", str(GOLDEN), "--url", url, "--no-rbac"],
                              capture_output=True, text=True, check=False, timeout=600)

    ok = doctor(f"http://127.0.0.1:{port}")
    assert ok.returncode == 0, ok.stderr
    for line in ("ok   /healthz: 200 ok", "ok   /readyz: 200 ok", "ok   /metrics: 200"):
        assert line in ok.stdout
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    down = doctor(f"http://127.0.0.1:{closed}")
    assert down.returncode == 2 and "FAIL /healthz" in down.stdout
    assert "3 check(s) failed" in down.stderr and "Traceback" not in down.stderr


def test_status_and_explain_print_times_in_utc_with_their_zone(tmp_path: Path) -> None:
    proc = run_dry(tmp_path, cycles=3)
    assert proc.returncode == 0, proc.stderr
    last = list(read_journal(tmp_path / "journal"))[-1]
    when = datetime.fromtimestamp(last.now_s, UTC).isoformat(timespec="seconds")
    assert when.endswith("+00:00")
    status = subprocess.run([exe(), "status", "--journal", str(tmp_path / "journal")],
                            capture_output=True, text=True, check=False, timeout=600,
                            env=os.environ | {"TZ": "America/Chicago", "COLUMNS": "300"})
    assert status.returncode == 0, status.stderr
    assert f"last decision {last.decision_id} at {when}" in status.stdout


def test_status_shows_the_age_of_each_value_the_last_decision_read(tmp_path: Path) -> None:
    # README: status shows feed ages. gpu-only's BTC price is daily and published a day
    # late, so three hourly cycles in it has aged two hours.
    site = GOLDEN.parents[3] / "examples" / "gpu-only" / "site.yaml"
    proc = subprocess.run(
        [exe(), "run", "-c", str(site), "--mode", "dry-run", "--cycles", "3", "--journal",
         str(tmp_path / "journal"), "--metrics-port", "0", "--no-ray"],
        capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = list(read_journal(tmp_path / "journal"))[-1]
    status = subprocess.run([exe(), "status", "--journal", str(tmp_path / "journal")],
                            capture_output=True, text=True, check=False, timeout=600,
                            env=os.environ | {"COLUMNS": "300"})
    assert status.returncode == 0, status.stderr
    assert last.market is not None
    table = status.stdout.split("market at the last decision", 1)[1].splitlines()
    shown = {row.split("│")[1].strip(): [c.strip() for c in row.split("│")[2:5]]
             for row in table if row.count("│") >= 5}
    values = dict(last.market.values())
    assert set(shown) == set(values)
    for name, obs in values.items():
        age_h = (last.now_s - obs.observed_at.timestamp()) / 3600
        assert shown[name][0] == f"{obs.value:,.4g}", name
        assert shown[name][1] in obs.source, name
        assert shown[name][2] == f"{age_h:.1f} h", name
    assert shown["btc_usd"][2] == "2.0 h"


def test_rejected_feed_values_are_warned_about_once(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from orchestrator.models.config import ControllerMode, load_config
    from orchestrator.runtime.controller import Controller, RunOptions

    controller = Controller(load_config(GOLDEN),
                            RunOptions(mode=ControllerMode.DRY_RUN, journal_dir=str(tmp_path)))
    try:
        # What the live feed layer reports: cumulative rejections by source and reason.
        controller.metrics.observe_rejections({"btc_usd": {"too_old": 2, "jump": 1}})
        with caplog.at_level(logging.WARNING, logger="hashpivot.controller"):
            controller.run(2)
    finally:
        controller.close()
    warned = [r.getMessage() for r in caplog.records if "feed values rejected" in r.getMessage()]
    assert len(warned) == 1  # the second cycle had no new rejections
    assert warned[0].endswith("feed values rejected: btc_usd: jump ×1, btc_usd: too_old ×2")


def test_every_stale_cycle_is_warned_about(tmp_path: Path) -> None:
    # West Texas with 16 days of BTC data missing before its start: the first cycles decide
    # on data older than the 2-day stale limit. Each says so, also one where no node asked
    # to change (the stale-data guard then holds nothing, and the power cap still sheds).
    site = Path(__file__).parents[2] / "examples" / "west-texas" / "site.yaml"
    bundled = Path(__file__).parents[2] / "orchestrator" / "data" / "recorded" / "btc_daily.csv"
    rows = bundled.read_text().splitlines()
    kept = [r for r in rows if not "2023-06-20" <= r[:10] <= "2023-07-05"]
    assert len(rows) - len(kept) == 16
    (tmp_path / "btc.csv").write_text("\n".join(kept) + "\n")
    config = tmp_path / "site.yaml"
    config.write_text(site.read_text().replace("bundled:recorded/btc_daily.csv", "btc.csv"))
    proc = subprocess.run(
        [exe(), "run", "-c", str(config), "--mode", "dry-run", "--cycles", "2", "--journal",
         str(tmp_path / "j"), "--metrics-port", "0", "--no-ray"],
        capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = list(read_journal(tmp_path / "j"))
    assert len(records) == 2 and all(r.plan["stale"] for r in records)
    warned = {r.decision_id for r in records for line in proc.stderr.splitlines()
              if "WARNING" in line and r.decision_id in line and "market data stale" in line}
    assert warned == {r.decision_id for r in records}, proc.stderr


def test_a_failing_policy_holds_every_node_but_the_power_cap_still_sheds(
        tmp_path: Path) -> None:
    # The golden site starts over a 22 kW cap (two H100 nodes in AI beside four miners)
    # with a policy that always raises: each cycle holds every node, yet the first still
    # curtails what the cap cannot hold, and the dry-run bills what the site ran.
    (tmp_path / "broken.py").write_text(
        "from typing import ClassVar\n"
        "from orchestrator.framework import DecisionContext, Policy, PolicyDecision\n"
        "class Broken(Policy):\n"
        "    name: ClassVar[str] = 'broken'\n"
        "    def decide(self, ctx: DecisionContext) -> PolicyDecision:\n"
        "        raise RuntimeError('no idea')\n")
    run_capped_golden(tmp_path, 3, policy="broken.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHPIVOT_")}
    records = list(read_journal(tmp_path / "journal"))
    assert len(records) == 3
    for rec in records:
        assert str(rec.plan["held"]).startswith("policy failed: policy broken failed")
        assert rec.plan["site_power_kw"][0] <= 22.0 + 1e-9
    assert rec.policy == "broken"
    first = records[0]
    assert first.plan["changes"] >= 1 and all(
        c.reason_code == Reason.GUARD_POWER_CAP_CURTAILED for c in first.changes)
    with (tmp_path / "journal" / "ledger.csv").open() as handle:
        ledger = list(csv.DictReader(handle))
    # The cycles run are billed with the fleet as it ran (before: all zero).
    assert all(int(r["nodes_mine"]) == 4 and float(r["mine_revenue_usd"]) > 0
               for r in ledger[:3])
    shown = subprocess.run([exe(), "status", "--journal", str(tmp_path / "journal")],
                           capture_output=True, text=True, check=False, timeout=600,
                           env=env | {"COLUMNS": "300"})
    assert shown.returncode == 0 and "policy failed" in shown.stdout, shown.stdout


def test_whole_cycle_holds_are_counted_by_reason(tmp_path: Path) -> None:
    from orchestrator.models.config import ControllerMode, load_config
    from orchestrator.runtime.controller import Controller, RunOptions

    broken = tmp_path / "broken_policy.py"
    broken.write_text(
        "from typing import ClassVar\n"
        "from orchestrator.framework import DecisionContext, Policy, PolicyDecision\n"
        "class Broken(Policy):\n"
        "    name: ClassVar[str] = 'broken'\n"
        "    summary: ClassVar[str] = 'raises'\n"
        "    def decide(self, ctx: DecisionContext) -> PolicyDecision:\n"
        "        raise RuntimeError('no idea')\n")
    config = load_config(GOLDEN, {"policy": {"name": str(broken)}})
    controller = Controller(config, RunOptions(mode=ControllerMode.DRY_RUN,
                                               journal_dir=str(tmp_path / "j")))
    try:
        controller.run(3)
    finally:
        controller.close()
    records = list(read_journal(tmp_path / "j"))
    held = [r for r in records if str(r.plan.get("held", "")).startswith("policy failed")]
    assert len(held) == 3
    text = controller.metrics.render().decode()
    assert f'hashpivot_holds_total{{reason="policy_failed"}} {float(len(held))}' in text
    assert f'hashpivot_cycles_total{{outcome="held"}} {float(len(held))}' in text
