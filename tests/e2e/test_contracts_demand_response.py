"""Demand response through `hashpivot backtest` and `hashpivot run --mode dry-run` on the
example contract site: during each called event the site's draw is at or under the
committed level from its response time on, AI nodes keep serving, and the program's
ledger lines are recomputed here from the run's own per-step output and the example's
own numbers."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.e2e.test_one_decision_path import EXAMPLES, hashpivot

START, END = "2024-08-19", "2024-08-21"  # holds the first illustrative event
POLICY = "greedy"
IGNORED = f"{POLICY} (programs ignored)"
ROOT = Path(__file__).resolve().parents[2]
STEP_S = 3600.0


@dataclass(frozen=True)
class Run:
    summary: dict
    rows: dict[str, list[dict[str, str]]]  # policy -> its steps
    html: str
    stdout: str


def _program() -> tuple[dict, dict]:
    config = yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())
    site = config["sites"][0]
    return site, site["contract"]["demand_response"]


def _s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _windows() -> list[tuple[float, float, float]]:
    """(called, due, end) of each event in the bundled calendar the example names: due at
    the later of the start and the call plus the response time; a row without a call is
    called `notice_min` before its start."""
    _, dr = _program()
    path = ROOT / "orchestrator" / "data" / "recorded" / "ercot_dr_events_illustrative.csv"
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            start, end = _s(row["start"]), _s(row["end"])
            called = _s(row["called_at"]) if row["called_at"] else start - dr["notice_min"] * 60
            out.append((called, max(start, called + dr["response_min"] * 60), end))
    return out


def _inside_h(t: float) -> list[tuple[float, float]]:
    """For the step starting at `t`: (hours inside, called) of each event window it meets."""
    return [((min(end, t + STEP_S) - max(due, t)) / 3600.0, called)
            for called, due, end in _windows() if min(end, t + STEP_S) > max(due, t)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("dr")
    done = hashpivot("backtest", "-c", str(EXAMPLES / "contracts" / "site.yaml"), "--from",
                     START, "--to", END, "--no-ray", "-p", POLICY, "--ignore-programs",
                     "--report", str(out / "report"), cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    rows: dict[str, list[dict[str, str]]] = {}
    with (out / "report" / "ledger.csv").open() as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["policy"], []).append(r)
    return Run(summary, rows, (out / "report" / "report.html").read_text(), done.stdout)


def _kw(row: dict[str, str], site: dict) -> float:
    return float(row[f"site_kw:{site['name']}"])


def test_event_holds_the_site_at_the_committed_draw(run: Run) -> None:
    site, dr = _program()
    mine = run.rows[POLICY]
    event = [r for r in mine if _inside_h(_s(r["time"]))]
    assert event, "the period holds an event"
    for r in event:
        assert _kw(r, site) <= dr["max_draw_kw"] + 1e-3, r
    # The same policy, blind to the program, keeps mining through it and pays for it.
    blind = {r["time"]: r for r in run.rows[IGNORED]}
    assert all(_kw(blind[r["time"]], site) > dr["max_draw_kw"] for r in event)
    # AI nodes keep serving: the same AI nodes, jobs and AI revenue as the blind run, and
    # no eviction.
    for r in event:
        b = blind[r["time"]]
        assert int(r["nodes_ai"]) == int(b["nodes_ai"]) > 0
        assert int(r["evictions"]) == 0
        assert float(r["ai_revenue_usd"]) == pytest.approx(float(b["ai_revenue_usd"]))
        assert float(r["ai_revenue_usd"]) > 0


def _hours_in_month(t: float, zone: ZoneInfo) -> float:
    local = datetime.fromtimestamp(t, zone)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return (nxt - first).total_seconds() / 3600.0


@pytest.mark.parametrize("policy", [POLICY, IGNORED])
def test_program_lines_recomputed_from_the_ledger(run: Run, policy: str) -> None:
    """Availability: committed kW × USD/kW-month × the step's share of its local month.
    Energy: USD/MWh × (baseline − draw) × hours inside the window, the baseline being the
    average draw over `baseline_h` before the call. Shortfall: USD/MWh × (draw − max)."""
    site, dr = _program()
    zone = ZoneInfo(site["timezone"])
    rows = run.rows[policy]
    times = [_s(r["time"]) for r in rows]
    kw = [_kw(r, site) for r in rows]

    def baseline(called: float) -> float:
        lo = called - dr["baseline_h"] * 3600.0
        w = [max(min(t + STEP_S, called) - max(t, lo), 0.0) for t in times]
        return sum(x * k for x, k in zip(w, kw, strict=True)) / sum(w)

    totals = {"dr_availability_payment_usd": 0.0, "dr_energy_payment_usd": 0.0,
              "dr_shortfall_penalty_usd": 0.0}
    for t, k, r in zip(times, kw, rows, strict=True):
        avail = dr["committed_kw"] * dr["availability_usd_per_kw_month"] / _hours_in_month(t, zone)
        energy = sum(dr["energy_usd_mwh"] * max(baseline(c) - k, 0.0) * h / 1000.0
                     for h, c in _inside_h(t))
        short = sum(dr["shortfall_usd_mwh"] * max(k - dr["max_draw_kw"], 0.0) * h / 1000.0
                    for h, c in _inside_h(t))
        # ledger.csv writes 4 decimals, the kW read back too.
        assert float(r["dr_availability_payment_usd"]) == pytest.approx(avail, abs=2e-4)
        assert float(r["dr_energy_payment_usd"]) == pytest.approx(energy, abs=1e-3)
        assert float(r["dr_shortfall_penalty_usd"]) == pytest.approx(short, abs=1e-2)
        totals["dr_availability_payment_usd"] += avail
        totals["dr_energy_payment_usd"] += energy
        totals["dr_shortfall_penalty_usd"] += short
    p = run.summary["policies"][policy]
    for key, value in totals.items():
        assert p[key] == pytest.approx(value, abs=0.01 * len(rows)), key
    net = (p["revenue_usd"] - p["energy_cost_usd"] - p["switching_cost_usd"]
           - p["contract_unused_energy_usd"] + p["resale_revenue_usd"]
           - p["demand_charge_usd"] - p["coincident_peak_charge_usd"]
           + p["dr_availability_payment_usd"] + p["dr_energy_payment_usd"]
           - p["dr_shortfall_penalty_usd"] + p["curtailment_credit_usd"])
    assert p["net_usd"] == pytest.approx(net, rel=1e-9)


def test_report_compares_against_programs_ignored(run: Run) -> None:
    """The table, the CLI and the report say what deciding with the programs in sight
    gained against the same policy blind to them, from the two runs' totals."""
    policies = run.summary["policies"]
    aware, blind = policies[POLICY], policies[IGNORED]
    assert blind["dr_shortfall_penalty_usd"] > 0 == aware["dr_shortfall_penalty_usd"]
    assert aware["dr_energy_payment_usd"] > blind["dr_energy_payment_usd"]
    assert aware["net_usd"] > blind["net_usd"]
    penalty = blind["dr_shortfall_penalty_usd"] - aware["dr_shortfall_penalty_usd"]
    energy = aware["dr_energy_payment_usd"] - blind["dr_energy_payment_usd"]
    net = aware["net_usd"] - blind["net_usd"]
    text = " ".join(run.stdout.split())
    for part in (f"{POLICY} against {IGNORED}:",
                 f"demand-response penalties avoided {penalty:,.0f} USD",
                 f"demand-response energy payments earned {energy:,.0f} USD",
                 f"net {net:+,.0f} USD"):
        assert part in text, (part, run.stdout)
        assert part in run.html, part
    assert "DR shortfall" in run.stdout and "DR shortfall USD" in run.html


def test_dry_run_sheds_to_the_committed_draw(tmp_path: Path) -> None:
    """`hashpivot run --mode dry-run` across the first event: the journaled plans keep
    the site under max_draw_kw from the first decision whose interval reaches the due
    time, only miners give way, and their explanations name the program."""
    site, dr = _program()
    called, due, end = _windows()[0]
    first = datetime.fromtimestamp(due - 2 * STEP_S, UTC).isoformat()
    last = datetime.fromtimestamp(end + STEP_S, UTC).isoformat()
    done = hashpivot("run", "-c", str(EXAMPLES / "contracts" / "site.yaml"), "--mode",
                     "dry-run", "--from", first, "--to", last, "--no-ray", "--journal",
                     str(tmp_path / "j"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in
               (tmp_path / "j" / "journal.jsonl").read_text().splitlines()]
    plans = {r["now_s"]: r for r in records if "plan" in r and r.get("now_s") is not None}
    capped = [t for t in plans if t >= called and t < end and due < t + STEP_S]
    free = [t for t in plans if t + STEP_S <= due or t >= end]
    assert capped and free
    for t in capped:
        plan = plans[t]["plan"]
        assert plan["site_power_kw"][0] <= dr["max_draw_kw"] + 1e-6, plan
        assert plan["site_cap_kw"][0] == pytest.approx(dr["max_draw_kw"])
    before = plans[max(t for t in free if t < min(capped))]["plan"]
    assert before["site_power_kw"][0] > dr["max_draw_kw"]
    assert before["site_cap_kw"][0] == pytest.approx(site["power_cap_kw"])
    shed = plans[min(capped)]
    changes = shed["changes"]
    assert changes
    assert all(c["current"] == "mine" and c["target"] == "idle" for c in changes), changes[:3]
    assert all(dr["program"] in c["text"] for c in changes), changes[:3]
    assert before["modes"]["ai"] == shed["plan"]["modes"]["ai"] > 0
    # A journal replay decides every cycle again, the event's cap included, to the same plan.
    cycles = [r for r in records if r.get("decision_inputs")]
    replay = hashpivot("backtest", "-c", str(EXAMPLES / "contracts" / "site.yaml"),
                       "--journal", str(tmp_path / "j"), "--no-ray", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert f"{len(cycles)} (100%)" in replay.stdout, replay.stdout


def test_bad_event_calendar_names_file_and_field(tmp_path: Path) -> None:
    from tests.e2e.test_one_decision_path import site_file

    site, dr = _program()
    (tmp_path / "events.csv").write_text("start,end\n2024-03-01T10:00:00Z,2024-03-01T09:00:00Z\n")
    bad = {**site, "contract": {"demand_response": {
        **dr, "events": {"path": str(tmp_path / "events.csv")}}}}
    path = site_file(tmp_path, "contracts", sites=[bad])
    done = hashpivot("backtest", "-c", str(path), "--from", "2024-03-01", "--to",
                     "2024-03-02", "--no-ray", "-p", POLICY, "--no-baselines", "--report",
                     str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    for part in ("events.csv", "line 2", "'end'", "ends before (or when) it starts",
                 "contract.demand_response.events"):
        assert part in done.stderr, (part, done.stderr)


def test_ignore_programs_needs_a_program(tmp_path: Path) -> None:
    from tests.e2e.test_one_decision_path import site_file

    site, _ = _program()
    path = site_file(tmp_path, "contracts", sites=[{**site, "contract": {"price": "spot"}}])
    done = hashpivot("backtest", "-c", str(path), "--from", "2024-03-01", "--to",
                     "2024-03-02", "--no-ray", "-p", POLICY, "--ignore-programs",
                     "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "--ignore-programs" in done.stderr and "contracts.yaml" in done.stderr


def test_curtailment_credit_through_backtest(tmp_path: Path) -> None:
    """A spot-priced hall of miners with a curtailment credit on weekday afternoons: each
    step's credit is usd_mwh × (baseline − draw) in listed local hours, recomputed from
    ledger.csv; the policy that sees the credit curtails there and earns more of it than
    the same policy blind to it."""
    from tests.e2e.test_one_decision_path import site_file

    site, _ = _program()
    credit = {"usd_mwh": 300.0, "baseline_kw": 30.0,
              "hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start_hour": 14,
                         "end_hour": 19}]}
    hall = {**site, "contract": {"curtailment_credit": credit}}
    path = site_file(tmp_path, "contracts", sites=[hall],
                     fleet=[{"profile": "s21", "count": 10, "site": site["name"],
                             "mode": "mine"}])
    done = hashpivot("backtest", "-c", str(path), "--from", "2024-03-04", "--to",
                     "2024-03-06", "--no-ray", "-p", POLICY, "--no-baselines",
                     "--ignore-programs", "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    zone = ZoneInfo(site["timezone"])
    with (tmp_path / "r" / "ledger.csv").open() as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    earned = {}
    for policy in (POLICY, IGNORED):
        mine = [r for r in rows if r["policy"] == policy]
        total = 0.0
        for r in mine:
            local = datetime.fromtimestamp(_s(r["time"]), zone)
            listed = local.weekday() < 5 and 14 <= local.hour < 19
            expected = (credit["usd_mwh"] * max(credit["baseline_kw"] - _kw(r, site), 0.0)
                        / 1000.0 if listed else 0.0)
            assert float(r["curtailment_credit_usd"]) == pytest.approx(expected, abs=1e-3), r
            total += expected
        assert summary["policies"][policy]["curtailment_credit_usd"] == pytest.approx(
            total, abs=1e-3 * len(mine))
        earned[policy] = total
    assert earned[POLICY] > earned[IGNORED]
    gained = earned[POLICY] - earned[IGNORED]
    assert f"curtailment credits earned {gained:,.0f} USD" in " ".join(done.stdout.split())


def test_report_compares_the_best_against_always_mine(run: Run) -> None:
    """Always-mine runs under the same guards, so the event caps it too; the line says what
    the best built-in did better on each program line, from the two runs' totals."""
    policies = run.summary["policies"]
    built_ins = {n: p for n, p in policies.items() if not p["baseline"]}
    best = max(built_ins, key=lambda n: built_ins[n]["net_usd"])
    base, top = policies["always-mine"], policies[best]
    parts = [f"{best} against always-mine: coincident-peak charges avoided "
             f"{base['coincident_peak_charge_usd'] - top['coincident_peak_charge_usd']:,.0f} USD",
             "demand-response penalties avoided "
             f"{base['dr_shortfall_penalty_usd'] - top['dr_shortfall_penalty_usd'] + 0.0:,.0f} USD",
             "demand-response energy payments earned "
             f"{top['dr_energy_payment_usd'] - base['dr_energy_payment_usd'] + 0.0:,.0f} USD",
             "curtailment credits earned "
             f"{top['curtailment_credit_usd'] - base['curtailment_credit_usd'] + 0.0:,.0f} USD"]
    text = " ".join(run.stdout.split())
    for part in parts:
        assert part in text, (part, run.stdout)
        assert part in run.html, part
