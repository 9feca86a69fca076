"""Power contracts: the charges, the per-site price the score table uses, and the ledger's
lines, each expected value worked out from the test's own inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml

from orchestrator import economics as econ
from orchestrator.backtest.contracts import ContractAccounts
from orchestrator.backtest.sim import Ledger
from orchestrator.engine.contracts import (
    AlertSeries,
    ContractBook,
    EventCalendar,
    hours_in_month,
)
from orchestrator.engine.scoring import build_scores
from orchestrator.errors import ConfigError
from orchestrator.models.build import build_fleet
from orchestrator.models.config import HashpivotConfig, load_config
from orchestrator.models.demand import DemandSummary
from orchestrator.models.fleet import FleetTable
from orchestrator.models.market import MarketPrices

MINERS = 4
CAP_KW = 20.0


def _config(tmp_path: Path, contract: dict[str, Any] | None, tz: str = "UTC") -> HashpivotConfig:
    site: dict[str, Any] = {"name": "hall", "power_cap_kw": CAP_KW, "timezone": tz,
                            "tariff_adder_usd_mwh": 3.0}
    if contract is not None:
        site["contract"] = contract
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "sites": [site],
        "fleet": [{"profile": "s19-xp", "count": MINERS, "site": "hall", "mode": "mine"}],
    }))
    return load_config(path)


def _fleet(config: HashpivotConfig) -> FleetTable:
    return build_fleet(config)


def _t(*args: int, tz: str = "UTC") -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


def _site_kw(fleet: FleetTable) -> float:
    mine_w = fleet.statics.watts_by_mode[1]
    return float(mine_w.sum()) / 1000.0


# --- economics ------------------------------------------------------------------------


def test_charges_by_hand() -> None:
    assert econ.demand_charge_usd(1500.0, 8.0) == pytest.approx(12_000.0)
    # 31-day month: $6/kW spread over 744 h, per MWh.
    assert econ.demand_charge_marginal_usd_mwh(6.0, 744.0) == pytest.approx(6.0 * 1000 / 744)
    # p=0.5 of a peak, $60/kW over 4 intervals of 1 h: $7.5 per kWh → 7,500 USD/MWh.
    assert econ.coincident_peak_expected_usd_mwh(0.5, 60.0, 4, 1.0) == pytest.approx(7_500.0)
    # 15-minute intervals: a kWh drawn in one holds 4 kW through it.
    assert econ.coincident_peak_expected_usd_mwh(1.0, 60.0, 4, 0.25) == pytest.approx(60_000.0)
    kw = np.array([1000.0, 800.0, 1200.0])
    p = np.array([1.0, 0.0, 1.0])
    assert econ.coincident_peak_charge_usd(kw, p, 60.0, 4) == pytest.approx(
        60.0 * (1000.0 + 1200.0) / 4)
    assert econ.resale_usd(2.5, 31.0) == pytest.approx(77.5)


# --- config ---------------------------------------------------------------------------


def test_resale_needs_a_block_size(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"name": "hall", "contract": {
        "price": {"kind": "fixed", "usd_mwh": 40, "resale_at_spot": True}}}]}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "contracted_kw" in str(err.value) and "bad.yaml" in str(err.value)


def test_bad_tou_period_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "tou.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"name": "hall", "contract": {
        "price": {"kind": "time_of_use", "default_usd_mwh": 30,
                  "periods": [{"start_hour": 18, "end_hour": 16, "usd_mwh": 90}]}}}]}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "periods" in str(err.value) and "tou.yaml" in str(err.value)


def test_no_contract_means_no_book(tmp_path: Path) -> None:
    assert ContractBook.for_sites(_config(tmp_path, None).sites, {}) is None
    assert ContractBook.for_sites(_config(tmp_path, {"price": "spot"}).sites, {}) is None


# --- the price the score table uses ---------------------------------------------------


def _price(config: HashpivotConfig, now_s: float, spot: float,
           alerts: dict[str, AlertSeries] | None = None) -> tuple[float, str]:
    book = ContractBook.for_sites(config.sites, alerts or {})
    assert book is not None
    prices, notes = book.score_prices(now_s, np.array([spot]), _fleet(config))
    return float(prices[0]), notes[0]


def test_fixed_price_with_and_without_resale(tmp_path: Path) -> None:
    now = _t(2024, 3, 5, 12)
    fixed = _config(tmp_path, {"price": {"kind": "fixed", "usd_mwh": 41.5}})
    assert _price(fixed, now, 90.0)[0] == pytest.approx(41.5)
    resale = _config(tmp_path, {"price": {"kind": "fixed", "usd_mwh": 41.5,
                                          "resale_at_spot": True}})
    price, note = _price(resale, now, 90.0)
    assert price == pytest.approx(90.0)  # using a MWh forgoes selling it at spot
    assert "resold at spot" in note


def test_time_of_use_reads_the_local_hour(tmp_path: Path) -> None:
    tz = "America/Chicago"
    config = _config(tmp_path, {"price": {"kind": "time_of_use", "default_usd_mwh": 25.0,
                                          "periods": [{"days": ["mon", "tue", "wed", "thu",
                                                                "fri"],
                                                       "start_hour": 14, "end_hour": 19,
                                                       "usd_mwh": 95.0}]}}, tz=tz)
    # 2024-07-10 is a Wednesday: 15:00 local is on peak, 20:00 is not, Saturday is not.
    assert _price(config, _t(2024, 7, 10, 15, tz=tz), 5.0)[0] == pytest.approx(95.0)
    assert _price(config, _t(2024, 7, 10, 20, tz=tz), 5.0)[0] == pytest.approx(25.0)
    assert _price(config, _t(2024, 7, 13, 15, tz=tz), 5.0)[0] == pytest.approx(25.0)


def test_coincident_peak_alert_in_season_only(tmp_path: Path) -> None:
    rate, intervals, p = 48.0, 4, 0.25
    config = _config(tmp_path, {"coincident_peak": {"months": [7, 8], "usd_per_kw": rate,
                                                    "peak_intervals": intervals,
                                                    "alerts": p}})
    alerts = {"hall": AlertSeries(np.array([-np.inf]), np.array([p]), 1.0)}
    spot = 30.0
    price, note = _price(config, _t(2024, 7, 10, 15), spot, alerts)
    assert price == pytest.approx(spot + p * rate / intervals * 1000.0)
    assert "coincident-peak alert" in note
    assert _price(config, _t(2024, 10, 10, 15), spot, alerts)[0] == pytest.approx(spot)


def test_demand_charge_only_at_the_month_to_date_peak(tmp_path: Path) -> None:
    rate = 9.0
    config = _config(tmp_path, {"demand_charge_usd_per_kw_month": rate})
    book = ContractBook.for_sites(config.sites, {})
    assert book is not None
    fleet = _fleet(config)
    now = _t(2024, 2, 10, 12)  # February 2024: 29 days
    prices, notes = book.score_prices(now, np.array([20.0]), fleet)
    assert prices[0] == pytest.approx(20.0 + rate * 1000.0 / (29 * 24))
    assert "month-to-date peak" in notes[0]
    # Half the miners curtailed: below the peak, drawing adds nothing to the charge.
    half = fleet.with_columns(mode=np.array([1, 1, 0, 0], dtype=np.int8))
    prices, notes = book.score_prices(now + 3600, np.array([20.0]), half)
    assert prices[0] == pytest.approx(20.0) and notes[0] == ""
    # A new month starts a new peak.
    prices, _ = book.score_prices(_t(2024, 3, 1, 0), np.array([20.0]), half)
    assert prices[0] == pytest.approx(20.0 + rate * 1000.0 / (31 * 24))


def test_score_table_prices_the_draw_at_the_contract_price(tmp_path: Path) -> None:
    config = _config(tmp_path, {"price": {"kind": "fixed", "usd_mwh": 41.5}})
    fleet = _fleet(config)
    prices = MarketPrices(btc_usd=60_000.0, difficulty=8e13, fees_btc_per_block=0.1,
                          subsidy_btc=3.125, usd_per_unit_day=np.array([0.05]),
                          gpu_usd_per_gpu_hour=np.zeros(0), power_usd_mwh=np.array([90.0]),
                          oldest_observed_s=0.0)
    demand = DemandSummary(np.zeros(0), np.zeros(0))
    scores = build_scores(fleet, prices, demand, power_usd_mwh=np.array([41.5]))
    mine_w = fleet.statics.watts_by_mode[1]
    expected = mine_w / 1e6 * (41.5 + 3.0)  # the node's tariff adder still applies
    np.testing.assert_allclose(scores.power_cost[1], expected)


# --- the ledger -----------------------------------------------------------------------


def test_ledger_lines_by_hand(tmp_path: Path) -> None:
    fixed, block_kw, d_rate, cp_rate = 40.0, 20.0, 5.0, 60.0
    config = _config(tmp_path, {
        "price": {"kind": "fixed", "usd_mwh": fixed, "resale_at_spot": True,
                  "contracted_kw": block_kw},
        "demand_charge_usd_per_kw_month": d_rate,
        "coincident_peak": {"months": [8], "usd_per_kw": cp_rate, "peak_intervals": 2,
                            "alerts": 0.0},
    })
    start = _t(2024, 8, 30, 22)
    times = start + 3600.0 * np.arange(4)  # 22:00, 23:00 on Aug 30; Aug 31 00:00, 01:00
    alerts = AlertSeries(np.array([times[1], times[2]]), np.array([1.0, 0.0]), 1.0)
    book = ContractBook.for_sites(config.sites, {"hall": alerts})
    assert book is not None
    accounts = ContractAccounts(book)
    ledger = Ledger.zeros(times, 1)
    energy_wh = [12_000.0, 18_000.0, 6_000.0, 15_000.0]  # hourly steps: kW × 1000
    spot = [30.0, 80.0, 20.0, 25.0]
    assert accounts.energy_prices(times[0], np.array([99.0]))[0] == pytest.approx(fixed)
    for k in range(4):
        accounts.record(ledger, k, float(times[k]), 3600.0, np.array([energy_wh[k]]),
                        np.array([spot[k]]))
    unused = [block_kw / 1000.0 - e / 1e6 for e in energy_wh]
    np.testing.assert_allclose(ledger.contract_unused_cost, [u * fixed for u in unused])
    np.testing.assert_allclose(ledger.resale_revenue,
                               [u * s for u, s in zip(unused, spot, strict=True)])
    # The alert covers the 23:00 step only: 18 kW, averaged over 2 intervals.
    np.testing.assert_allclose(ledger.coincident_peak_charge, [0, cp_rate * 18.0 / 2, 0, 0])
    # August's peak 18 kW, prorated by the run's 4 h of the month's hours; booked at the
    # month's last step in the run (index 3).
    month_h = hours_in_month(datetime(2024, 8, 1, tzinfo=UTC))
    assert month_h == 31 * 24
    expected = np.zeros(4)
    expected[3] = d_rate * 18.0 * 4 / month_h
    np.testing.assert_allclose(ledger.demand_charge, expected)


# --- the bundled illustrative alerts ---------------------------------------------------


def test_bundled_alerts_are_the_priciest_summer_weekday_afternoons() -> None:
    """The bundled file is what scripts/make_4cp_alerts.py writes, and each alerted hour
    is, by a direct scan of the bundled prices, the highest-price weekday afternoon hour
    (14:00-18:59 Central) of its summer month."""
    import csv
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("make_4cp_alerts",
                                                  root / "scripts" / "make_4cp_alerts.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = root / "orchestrator" / "data" / "recorded"
    with (data / "ercot_4cp_alerts_illustrative.csv").open() as f:
        bundled = [(r["time"], int(r["alert"])) for r in csv.DictReader(f)]
    assert bundled == script.alert_rows()
    zone = ZoneInfo("America/Chicago")
    with (data / "ercot_hb_west_hourly.csv").open() as f:
        prices = {r["time"]: float(r["usd_per_mwh"]) for r in csv.DictReader(f)
                  if r["usd_per_mwh"]}
    alerted = [t for t, a in bundled if a == 1]
    months = {}
    for t, price in prices.items():
        local = datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(zone)
        if local.month in (6, 7, 8, 9) and local.weekday() < 5 and 14 <= local.hour < 19:
            key = (local.year, local.month)
            months[key] = max(months.get(key, -np.inf), price)
    assert len(alerted) == len(months)
    for t in alerted:
        local = datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(zone)
        assert prices[t] == months[(local.year, local.month)]


def test_month_to_date_peak_survives_a_restart(tmp_path: Path) -> None:
    """The decision memory saved beside the journal carries each site's peak; a step
    restored from it starts its demand charge from that peak, in the same month only."""
    from orchestrator.engine.step import DecisionStep
    from orchestrator.models.config import GuardConfig
    from orchestrator.runtime.journal import StepMemoryStore
    from policies.greedy import Greedy

    config = _config(tmp_path, {"demand_charge_usd_per_kw_month": 7.0})
    fleet = _fleet(config)
    now = _t(2024, 5, 20, 10)

    def step() -> DecisionStep:
        book = ContractBook.for_sites(config.sites, {})
        assert book is not None
        return DecisionStep(Greedy(), GuardConfig(), contracts=book)

    first = step()
    assert first.contracts is not None
    first.contracts.score_prices(now, np.array([20.0]), fleet)
    first.last_now_s = now
    store = StepMemoryStore(tmp_path)
    store.save("d-1", first.memory())
    loaded = store.load()
    assert loaded is not None
    second = step()
    second.restore(loaded)
    assert second.contracts is not None
    assert second.contracts.peaks_kw(now + 3600) == pytest.approx([_site_kw(fleet)])
    assert second.contracts.peaks_kw(_t(2024, 6, 1, 0)) == [0.0]  # a new month


# --- demand response --------------------------------------------------------------------


def _dr(events_path: Path, **over: Any) -> dict[str, Any]:
    return {"demand_response": {"program": "test DR", "max_draw_kw": 7.0, "committed_kw": 5.0,
                                "events": {"path": str(events_path)}, **over}}


def test_demand_response_fields_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"name": "hall", "contract": {
        "demand_response": {"max_draw_kw": -1, "committed_kw": 5,
                            "events": {"path": "e.csv"}}}}]}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "max_draw_kw" in str(err.value) and "bad.yaml" in str(err.value)


def test_overlapping_and_repeated_events_merge() -> None:
    h = 3600.0
    start = np.array([10 * h, 2 * h, 2 * h, 11 * h, 20 * h])
    end = np.array([12 * h, 4 * h, 4 * h, 13 * h, 21 * h])
    called = start - 0.5 * h
    response = 600.0
    cal = EventCalendar.of(start, end, called, response)
    # The repeated 2-4 h row is one event; 10-12 and 11-13 overlap into 10-13.
    np.testing.assert_allclose(cal.due_s, [2 * h, 10 * h, 20 * h])
    np.testing.assert_allclose(cal.end_s, [4 * h, 13 * h, 21 * h])
    np.testing.assert_allclose(cal.called_s, [1.5 * h, 9.5 * h, 19.5 * h])
    # A call later than start − response makes the window start at call + response.
    late = EventCalendar.of(np.array([5 * h]), np.array([6 * h]), np.array([5 * h]), response)
    assert late.due_s[0] == 5 * h + response


def test_event_in_force_for_the_coming_interval() -> None:
    h = 3600.0
    cal = EventCalendar(np.array([9.5 * h]), np.array([10.2 * h]), np.array([12 * h]))
    assert cal.in_force(9.0 * h, h) == -1  # not called yet
    assert cal.in_force(9.5 * h, 0.5 * h) == -1  # called; due after the next decision
    assert cal.in_force(9.5 * h, h) == 0  # due before the next decision: shed now
    assert cal.in_force(11.9 * h, h) == 0
    assert cal.in_force(12.0 * h, h) == -1  # over
    assert cal.in_force(10.2 * h, 0.0) == 0
    assert cal.overlap_h(10 * h, 11 * h) == pytest.approx(0.8)


def _decide(config: HashpivotConfig, now: float, programs: bool = True) -> Any:
    from orchestrator.backtest.contracts import load_events
    from orchestrator.engine.step import DecisionStep
    from orchestrator.models.config import GuardConfig
    from policies.greedy import Greedy

    book = ContractBook.for_sites(config.sites, {}, load_events(config), programs)
    assert book is not None
    step = DecisionStep(Greedy(), GuardConfig(min_dwell_s=0), contracts=book)
    prices = MarketPrices(btc_usd=60_000.0, difficulty=8e13, fees_btc_per_block=0.1,
                          subsidy_btc=3.125, usd_per_unit_day=np.array([0.05]),
                          gpu_usd_per_gpu_hour=np.zeros(0), power_usd_mwh=np.array([20.0]),
                          oldest_observed_s=now)
    return step.decide(now_s=now, prices=prices, demand=DemandSummary(np.zeros(0), np.zeros(0)),
                       fleet=_fleet(config))


def test_a_called_event_caps_the_site_in_the_decision(tmp_path: Path) -> None:
    """During an event the plan keeps the site at or under max_draw_kw by idling miners
    (as many keep mining as fit), and the explanations name the program."""
    events = tmp_path / "events.csv"
    events.write_text("start,end,called\n2024-05-20T10:00:00Z,2024-05-20T12:00:00Z,"
                      "2024-05-20T09:40:00Z\n")
    mine_w = float(_fleet(_config(tmp_path, None)).statics.watts_by_mode[1][0])
    idle_w = float(_fleet(_config(tmp_path, None)).statics.watts_by_mode[0][0])
    max_kw = 2.5 * mine_w / 1000.0
    config = _config(tmp_path, _dr(events, max_draw_kw=max_kw, response_min=10,
                                   events={"path": str(events), "called_column": "called"}))
    fits = max(k for k in range(MINERS + 1) if k * mine_w + (MINERS - k) * idle_w
               <= max_kw * 1000.0)
    assert 0 < fits < MINERS
    before = _decide(config, _t(2024, 5, 20, 9))  # not called yet: everything mines
    assert int((before.target == 1).sum()) == MINERS
    during = _decide(config, _t(2024, 5, 20, 10))
    assert during.site_power_w[0] <= max_kw * 1000.0 + 1e-6
    assert int((during.target == 1).sum()) == fits
    assert during.site_cap_w[0] == pytest.approx(max_kw * 1000.0)
    texts = [e.text for e in during.explanations()]
    assert texts and all("test DR event called 2024-05-20 09:40 UTC" in t for t in texts)
    after = _decide(config, _t(2024, 5, 20, 12))
    assert int((after.target == 1).sum()) == MINERS
    ignored = _decide(config, _t(2024, 5, 20, 10), programs=False)
    assert int((ignored.target == 1).sum()) == MINERS


def test_bad_event_rows_name_file_line_and_field(tmp_path: Path) -> None:
    from orchestrator.backtest.contracts import load_events
    from orchestrator.errors import DataError

    cases = {
        "start,end\n2024-05-20T10:00:00Z,2024-05-20T09:00:00Z\n": ("end", "ends before"),
        "start,end\n2024-05-20T10:00:00Z,soon\n": ("end", "not a time"),
        "start,end\n,2024-05-20T09:00:00Z\n": ("start", "missing time"),
        "begin,end\n2024-05-20T10:00:00Z,2024-05-20T11:00:00Z\n": ("start", "missing column"),
    }
    for i, (text, (column, message)) in enumerate(cases.items()):
        events = tmp_path / f"events{i}.csv"
        events.write_text(text)
        config = _config(tmp_path, _dr(events))
        with pytest.raises(DataError) as err:
            load_events(config)
        shown = str(err.value)
        assert message in shown and f"events{i}.csv" in shown and repr(column) in shown, shown
        assert "demand_response" in shown, shown


def test_demand_response_lines_by_hand(tmp_path: Path) -> None:
    """Hourly steps 08:00-11:00; the event is called at 08:30 and due 09:30-10:30. The
    baseline is the 07:30-08:30 draw: only the 08:00 step is in the run, so 12 kW."""
    events = tmp_path / "events.csv"
    events.write_text("start,end,called\n2024-05-20T09:30:00Z,2024-05-20T10:30:00Z,"
                      "2024-05-20T08:30:00Z\n")
    avail, energy, short, max_kw, committed = 6.0, 100.0, 1000.0, 7.0, 5.0
    config = _config(tmp_path, _dr(events, availability_usd_per_kw_month=avail,
                                   energy_usd_mwh=energy, shortfall_usd_mwh=short,
                                   max_draw_kw=max_kw, committed_kw=committed,
                                   events={"path": str(events), "called_column": "called"}))
    from orchestrator.backtest.contracts import contract_accounts

    accounts = contract_accounts(config)
    assert accounts is not None
    times = _t(2024, 5, 20, 8) + 3600.0 * np.arange(3)
    ledger = Ledger.zeros(times, 1)
    kw = [12.0, 9.0, 4.0]
    for k in range(3):
        accounts.record(ledger, k, float(times[k]), 3600.0, np.array([kw[k] * 1000.0]),
                        np.array([30.0]))
    lines = ledger.programs
    assert lines is not None
    month_h = 31 * 24
    np.testing.assert_allclose(lines.availability, [committed * avail / month_h] * 3)
    # 09:00 step: half an hour in the window at 9 kW; 10:00 step: half an hour at 4 kW.
    np.testing.assert_allclose(lines.shortfall, [0.0, short * (9.0 - max_kw) * 0.5 / 1000,
                                                 0.0])
    np.testing.assert_allclose(lines.energy, [0.0, energy * (12.0 - 9.0) * 0.5 / 1000,
                                              energy * (12.0 - 4.0) * 0.5 / 1000])
    np.testing.assert_allclose(lines.site_kw[:, 0], kw)
    ledger.contracts = True  # as the simulated site marks a ledger it books contracts in
    totals = ledger.totals()
    assert totals["dr_energy_payment_usd"] == pytest.approx(lines.energy.sum())


def test_curtailment_credit_prices_listed_hours_and_books_the_credit(tmp_path: Path) -> None:
    """In a listed local hour the score table adds the credit to each MWh (drawing forgoes
    it); the ledger credits usd_mwh × (baseline − draw) for steps in listed hours."""
    tz = "America/Chicago"
    credit = {"usd_mwh": 80.0, "baseline_kw": 15.0,
              "hours": [{"days": ["mon"], "start_hour": 14, "end_hour": 16}]}
    config = _config(tmp_path, {"curtailment_credit": credit}, tz=tz)
    monday_14 = _t(2024, 3, 4, 14, tz=tz)  # a Monday
    price, note = _price(config, monday_14, 30.0)
    assert price == pytest.approx(30.0 + 80.0)
    assert "curtailment credit 80 USD/MWh" in note
    assert _price(config, _t(2024, 3, 4, 16, tz=tz), 30.0)[0] == pytest.approx(30.0)
    assert _price(config, _t(2024, 3, 5, 14, tz=tz), 30.0)[0] == pytest.approx(30.0)
    book = ContractBook.for_sites(config.sites, {}, {}, programs=False)
    assert book is not None
    assert book.score_prices(monday_14, np.array([30.0]), _fleet(config))[0][0] == 30.0
    accounts = ContractAccounts(ContractBook.for_sites(config.sites, {}) or book)
    times = _t(2024, 3, 4, 13, tz=tz) + 3600.0 * np.arange(4)  # 13:00 … 16:00 local
    ledger = Ledger.zeros(times, 1)
    kw = [14.0, 4.0, 20.0, 2.0]
    for k in range(4):
        accounts.record(ledger, k, float(times[k]), 3600.0, np.array([kw[k] * 1000.0]),
                        np.array([30.0]))
    lines = ledger.programs
    assert lines is not None
    # 14:00 and 15:00 are listed: 80 × (15 − 4) and nothing above the baseline.
    np.testing.assert_allclose(lines.curtailment, [0.0, 80.0 * 11.0 / 1000.0, 0.0, 0.0])
