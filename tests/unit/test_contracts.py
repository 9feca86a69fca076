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
from orchestrator.engine.contracts import AlertSeries, ContractBook, hours_in_month
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
