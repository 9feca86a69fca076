"""`hashpivot backtest -c examples/contracts/site.yaml`: the power contract's lines are in
the summary, the ledger and the report, each recomputed here from the run's own numbers,
and the best built-in pays less coincident-peak charge than always-mine."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.e2e.test_one_decision_path import EXAMPLES, hashpivot, site_file

START, END = "2024-08-22", "2024-08-25"  # holds the illustrative peak of August 2024
POLICIES = ("greedy", "hysteresis")


@dataclass(frozen=True)
class Run:
    summary: dict
    rows: list[dict[str, str]]
    html: str
    stdout: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("contracts")
    args = ["backtest", "-c", str(EXAMPLES / "contracts" / "site.yaml"), "--from", START,
            "--to", END, "--no-ray", "--report", str(out / "report")]
    for policy in POLICIES:
        args += ["-p", policy]
    done = hashpivot(*args, cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = json.loads((out / "report" / "summary.json").read_text())
    with (out / "report" / "ledger.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert "power contract" in done.stdout and "coincident peak" in done.stdout
    return Run(summary, rows, (out / "report" / "report.html").read_text(), done.stdout)


def _site() -> dict:
    config = yaml.safe_load((EXAMPLES / "contracts" / "site.yaml").read_text())
    site: dict = config["sites"][0]
    return site


def _alert_times() -> set[str]:
    """UTC starts of the alerted hours, read from the bundled series the example names."""
    path = (Path(__file__).resolve().parents[2] / "orchestrator" / "data" / "recorded"
            / "ercot_4cp_alerts_illustrative.csv")
    with path.open() as f:
        return {r["time"] for r in csv.DictReader(f) if float(r["alert"]) > 0}


def test_ledger_lines_add_up(run: Run) -> None:
    summary, rows, html = run.summary, run.rows, run.html
    assert "Power contract" in html
    for name, p in summary["policies"].items():
        for key in ("energy_cost_usd", "contract_unused_energy_usd", "resale_revenue_usd",
                    "demand_charge_usd", "coincident_peak_charge_usd"):
            assert key in p, (name, key)
        net = (p["revenue_usd"] - p["energy_cost_usd"] - p["switching_cost_usd"]
               - p["contract_unused_energy_usd"] + p["resale_revenue_usd"]
               - p["demand_charge_usd"] - p["coincident_peak_charge_usd"]
               # The example's demand-response program (tests/e2e/test_contracts_demand_response.py)
               + p["dr_availability_payment_usd"] + p["dr_energy_payment_usd"]
               - p["dr_shortfall_penalty_usd"] + p["curtailment_credit_usd"])
        assert p["net_usd"] == pytest.approx(net, rel=1e-9), name
        mine = [r for r in rows if r["policy"] == name]
        for key in ("resale_revenue_usd", "demand_charge_usd", "coincident_peak_charge_usd"):
            assert sum(float(r[key]) for r in mine) == pytest.approx(p[key], abs=0.01 * len(mine))


def test_charges_recomputed_from_the_ledger(run: Run) -> None:
    """Each step's energy follows from its energy cost at the contract price plus adder;
    the coincident-peak charge is usd_per_kw × the draw in the alerted hours / intervals,
    the demand charge usd/kW-month × the highest hour × the share of the month run, and
    the resale (block − energy) × spot, each from the example's own numbers."""
    summary, rows = run.summary, run.rows
    site = _site()
    contract = site["contract"]
    price = contract["price"]
    per_mwh = price["usd_mwh"] + site["tariff_adder_usd_mwh"]
    cp = contract["coincident_peak"]
    alerts = _alert_times()
    zone = ZoneInfo(site["timezone"])
    for name in summary["policies"]:
        mine = [r for r in rows if r["policy"] == name]
        kw = [float(r["power_cost_usd"]) / per_mwh * 1000.0 for r in mine]  # hourly steps
        # ledger.csv rounds each step's USD to 4 decimals: the kW read back carry that.
        tol = 1e-4 / per_mwh * 1000.0
        alerted = [k for k, r in zip(kw, mine, strict=True) if r["time"] in alerts
                   and datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
                   .astimezone(zone).month in cp["months"]]
        assert alerted, "the period holds an alerted hour"
        p = summary["policies"][name]
        assert p["coincident_peak_charge_usd"] == pytest.approx(
            cp["usd_per_kw"] * sum(alerted) / cp["peak_intervals"],
            abs=cp["usd_per_kw"] * tol * len(alerted))
        month_h = 31 * 24  # the whole period lies in August
        assert p["demand_charge_usd"] == pytest.approx(
            contract["demand_charge_usd_per_kw_month"] * max(kw) * len(mine) / month_h,
            abs=contract["demand_charge_usd_per_kw_month"] * tol)
        unused_mwh = [max(price["contracted_kw"] - k, 0.0) / 1000.0 for k in kw]
        assert p["contract_unused_energy_usd"] == pytest.approx(
            price["usd_mwh"] * sum(unused_mwh), abs=price["usd_mwh"] * tol / 1000.0 * len(kw))


def test_best_built_in_avoids_peak_charges(run: Run) -> None:
    summary, html = run.summary, run.html
    policies = summary["policies"]
    built_ins = {n: p for n, p in policies.items() if not p["baseline"]}
    best = max(built_ins, key=lambda n: built_ins[n]["net_usd"])
    always_mine = policies["always-mine"]
    assert always_mine["coincident_peak_charge_usd"] > 0
    assert (policies[best]["coincident_peak_charge_usd"]
            < always_mine["coincident_peak_charge_usd"]), (best, policies[best])
    assert policies[best]["net_usd"] > always_mine["net_usd"]
    # The CLI and the report say what the best built-in avoided, from these totals.
    cp = always_mine["coincident_peak_charge_usd"] - policies[best]["coincident_peak_charge_usd"]
    demand = always_mine["demand_charge_usd"] - policies[best]["demand_charge_usd"]
    line = (f"{best} against always-mine: coincident-peak charges avoided {cp:,.0f} USD, "
            f"demand charges avoided {demand:,.0f} USD")
    assert line in " ".join(run.stdout.split()), run.stdout
    assert line in html


def test_dry_run_explanations_name_the_program(tmp_path: Path) -> None:
    """A dry-run through the alerted hour of 2024-08-23 (20:00 UTC): the miners that stop
    there say the coincident-peak alert priced their power."""
    done = hashpivot("run", "-c", str(EXAMPLES / "contracts" / "site.yaml"), "--mode",
                     "dry-run", "--from", "2024-08-23T19:00:00Z", "--to",
                     "2024-08-23T21:00:00Z", "--no-ray", "--journal", str(tmp_path / "j"),
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2024-08-23T20:00:00Z" in _alert_times()
    alert_s = datetime.fromisoformat("2024-08-23T20:00:00+00:00").timestamp()
    records = [json.loads(line) for line in
               (tmp_path / "j" / "journal.jsonl").read_text().splitlines()]
    texts = [c["text"] for r in records if r.get("now_s") == alert_s
             for c in r.get("changes", [])]
    stopped = [t for t in texts if t.startswith("idle beats mine")]
    assert stopped and all("coincident-peak alert p=1.00" in t for t in stopped), texts[:3]


def _asic_site(tmp_path: Path, contract: dict) -> Path:
    """The example site with only its S21 miners, under `contract`."""
    site = {**_site(), "contract": contract}
    return site_file(tmp_path, "contracts", sites=[site],
                     fleet=[{"profile": "s21", "count": 10, "site": site["name"],
                             "mode": "mine"}])


def test_time_of_use_prices_each_local_hour(tmp_path: Path) -> None:
    """Always-mine on miners alone draws the same every hour, so each step's energy cost
    divided by (TOU price of its local hour + adder) is the same number."""
    periods = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start_hour": 14,
                "end_hour": 19, "usd_mwh": 120.0},
               {"days": ["sat", "sun"], "start_hour": 0, "end_hour": 24, "usd_mwh": 15.0}]
    path = _asic_site(tmp_path, {"price": {"kind": "time_of_use", "default_usd_mwh": 35.0,
                                           "periods": periods}})
    done = hashpivot("backtest", "-c", str(path), "--from", "2024-03-01", "--to",
                     "2024-03-05", "--no-ray", "-p", "greedy", "--no-baselines",
                     "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "r" / "ledger.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["policy"] == "greedy"]
    zone = ZoneInfo(_site()["timezone"])
    adder = _site()["tariff_adder_usd_mwh"]

    def tou(local: datetime) -> float:
        if local.weekday() >= 5:
            return 15.0
        return 120.0 if 14 <= local.hour < 19 else 35.0

    mining = [r for r in rows if int(r["nodes_mine"]) == 10 and int(r["switches"]) == 0]
    assert len({tou(datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
                    .astimezone(zone)) for r in mining}) == 3, "every price is seen mining"
    mwh = [float(r["power_cost_usd"]) / (tou(datetime.fromisoformat(
        r["time"].replace("Z", "+00:00")).astimezone(zone)) + adder) for r in mining]
    assert max(mwh) == pytest.approx(min(mwh), rel=1e-3)


def test_bad_alert_values_name_field_and_file(tmp_path: Path) -> None:
    (tmp_path / "alerts.csv").write_text("time,alert\n2024-03-01T00:00:00Z,0\n"
                                         "2024-03-01T05:00:00Z,7\n")
    path = _asic_site(tmp_path, {"coincident_peak": {
        "months": [3], "usd_per_kw": 10.0,
        "alerts": {"path": str(tmp_path / "alerts.csv"), "value_column": "alert"}}})
    done = hashpivot("backtest", "-c", str(path), "--from", "2024-03-01", "--to",
                     "2024-03-02", "--no-ray", "-p", "greedy", "--no-baselines",
                     "--report", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "coincident_peak.alerts" in done.stderr and "alerts.csv" in done.stderr


def test_bad_contract_names_field_and_file(tmp_path: Path) -> None:
    site = {**_site(), "power_cap_kw": None,
            "contract": {"price": {"kind": "fixed", "usd_mwh": 40, "resale_at_spot": True},
                         "coincident_peak": {"months": [13], "usd_per_kw": 5, "alerts": 0.0}}}
    path = site_file(tmp_path, "contracts", sites=[site])
    done = hashpivot("config", "check", str(path), cwd=tmp_path)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "Traceback" not in out
    assert "months" in out and "contracts.yaml" in out


def test_journal_replay_decides_contract_cycles_again(tmp_path: Path) -> None:
    """A dry-run across the alerted hour journals each site's month-to-date peak; `hashpivot
    backtest --journal` decides every cycle again to the same plan."""
    site = str(EXAMPLES / "contracts" / "site.yaml")
    done = hashpivot("run", "-c", site, "--mode", "dry-run", "--from", "2024-08-23T15:00:00Z",
                     "--to", "2024-08-23T23:00:00Z", "--no-ray", "--journal",
                     str(tmp_path / "j"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in
               (tmp_path / "j" / "journal.jsonl").read_text().splitlines()]
    cycles = [r for r in records if r.get("decision_inputs")]
    peaks = [r["decision_inputs"]["contract_peak_kw"] for r in cycles]
    assert len(cycles) == 8 and all(p[0] > 0 for p in peaks[1:])
    replay = hashpivot("backtest", "-c", site, "--journal", str(tmp_path / "j"), "--no-ray",
                       cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert f"{len(cycles)} ({100}%)" in replay.stdout, replay.stdout
