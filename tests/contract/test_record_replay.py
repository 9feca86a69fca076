"""`hashpivot record` against the local server replays in the backtest unchanged."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.adapters.market.live import LiveMarketSource
from orchestrator.adapters.market.recorder import (
    MARKET_FILE,
    REJECTED_FILE,
    RecordProgress,
    record,
)
from orchestrator.backtest.recorded import RecordedMarketSource
from orchestrator.cli import app
from orchestrator.errors import FeedError
from orchestrator.models import FleetTable, MarketSnapshot, Site
from orchestrator.models.config import RecordedMarketConfig
from orchestrator.models.feeds_config import LiveMarketConfig
from tests.conftest import profiles
from tests.contract.feedserver import (
    DIFFICULTY,
    NOW,
    TIP,
    FeedServer,
    Reply,
    fixture_bytes,
    live_config,
    mempool_page,
    serve_market,
)

SAMPLES = 4
STEP_S = 3600.0


def market_at(server: FeedServer, i: int) -> None:
    """The market as the APIs show it at sample i: prices move, blocks arrive."""
    serve_market(server)
    server.route("/mempool/api/v1/blocks", Reply(body=mempool_page(TIP + i, block_s=STEP_S)))
    cb = {"data": {"amount": f"{97012.35 + 150 * i:.2f}", "base": "BTC", "currency": "USD"}}
    server.json("/coinbase/v2/prices/BTC-USD/spot", json.dumps(cb))
    kr = json.loads(fixture_bytes("kraken_ticker.json"))
    kr["result"]["XXBTZUSD"]["c"][0] = f"{97014.9 + 150 * i:.1f}"
    server.json("/kraken/0/public/Ticker?pair=XBTUSD", json.dumps(kr))
    bs = json.loads(fixture_bytes("bitstamp_ticker.json"))
    bs["last"], bs["timestamp"] = f"{97008 + 150 * i}", str(int(NOW + i * STEP_S - 10))
    server.json("/bitstamp/api/v2/ticker/btcusd/", json.dumps(bs))
    if i == 2:
        server.route("/gpu/offers.json", Reply(status=500))  # a gap: no row this sample


def record_from(
    server: FeedServer, out: Path, config: LiveMarketConfig
) -> tuple[Path, dict[float, MarketSnapshot], list[RecordProgress]]:
    source = LiveMarketSource.from_config(config, sleep=lambda s: None)
    times = iter([NOW + i * STEP_S for i in range(SAMPLES)])
    live: dict[float, MarketSnapshot] = {}
    reports: list[RecordProgress] = []
    current = {"i": 0}

    def clock() -> float:
        t = next(times)
        current["i"] = int((t - NOW) / STEP_S)
        market_at(server, current["i"])
        return t

    def progress(p: RecordProgress) -> None:
        reports.append(p)
        live[p.now_s] = source.last_good_snapshot()

    path = record(
        config,
        out,
        samples=SAMPLES,
        interval_s=STEP_S,
        clock=clock,
        sleep=lambda s: None,
        progress=progress,
        source=source,
    )
    source.close()
    return path, live, reports


def replay_fleet() -> FleetTable:
    return FleetTable.build(
        profiles("s21", "h100-sxm-8x", "h200-sxm-8x"), [Site(name="default")], [0, 1, 2]
    )


def values(snap: MarketSnapshot) -> dict[str, tuple[float, float]]:
    return {name: (o.value, o.observed_at.timestamp()) for name, o in snap.values()}


def test_recording_replays_unchanged(feed_server: FeedServer, tmp_path: Path) -> None:
    config = live_config(feed_server, fees_window_blocks=144)
    path, live, reports = record_from(feed_server, tmp_path / "rec", config)
    assert path == tmp_path / "rec" / MARKET_FILE
    assert [r.sample for r in reports] == [1, 2, 3, 4]
    assert all(r.error is None for r in reports)
    doc = yaml.safe_load(path.read_text())
    market = RecordedMarketConfig.model_validate(doc["market"])
    assert set(market.gpu_usd_per_gpu_hour) == {"H100_80GB_SXM5", "H200_141GB"}
    replay = RecordedMarketSource(market, path.parent, replay_fleet())
    for t, snap in live.items():
        assert values(replay.snapshot(t)) == values(snap)
    # Every row says when it was true and when the recorder first saw it.
    for line in (path.parent / "btc_usd.csv").read_text().splitlines()[1:]:
        when, _, seen = line.split(",")
        assert when <= seen


def test_recording_appends_and_never_repeats_a_row(feed_server: FeedServer, tmp_path: Path) -> None:
    config = live_config(feed_server, fees_window_blocks=15)
    out = tmp_path / "rec"
    record_from(feed_server, out, config)
    header, *rows = (out / "btc_usd.csv").read_text().splitlines()
    assert header == "time,value,recorded_at"
    assert len(rows) == SAMPLES
    # The median's time is its oldest quote's: Bitstamp's, 10 s before the poll.
    assert rows[0] == "2025-01-04T14:13:10Z,97012.35,2025-01-04T14:13:20Z"
    power = (out / "power_usd_mwh.csv").read_text().splitlines()
    # Hub prices change hourly: HE 09 and HE 10 (the last row of the file) only.
    assert power == [
        "time,site,value,recorded_at",
        "2025-01-04T14:00:00Z,default,33.42,2025-01-04T14:13:20Z",
        "2025-01-04T15:00:00Z,default,41.0,2025-01-04T15:13:20Z",
    ]
    gpu = (out / "gpu_usd_per_gpu_hour.csv").read_text().splitlines()
    assert gpu[0] == "time,gpu_model,value,recorded_at"
    assert len(gpu) == 1 + 2 * (SAMPLES - 1)  # the feed was down for one sample
    # Recording again continues the same files.
    record_from(feed_server, out, config)
    assert len((out / "btc_usd.csv").read_text().splitlines()) == 1 + SAMPLES


def test_failed_polls_are_reported_and_recording_goes_on(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    config = live_config(feed_server, fees_window_blocks=15)
    source = LiveMarketSource.from_config(config, sleep=lambda s: None)
    reports: list[RecordProgress] = []
    clock = iter([NOW, NOW + 60])

    def tick() -> float:
        t = next(clock)
        if t > NOW:
            serve_market(feed_server)  # the first poll finds every API answering 404
        return t

    path = record(
        config,
        tmp_path,
        samples=2,
        interval_s=60,
        clock=tick,
        sleep=lambda s: None,
        progress=reports.append,
        source=source,
    )
    first, second = reports
    assert first.error is not None and "nothing recorded yet" in first.error
    assert ("chain", "http_status") in [(f, r) for f, r, _ in first.report.rejected]
    assert first.written == {}
    assert second.error is None and "btc_usd" in second.written
    assert path.exists()


def test_recording_replays_in_hashpivot_backtest(feed_server: FeedServer, tmp_path: Path) -> None:
    config = live_config(feed_server, fees_window_blocks=15)
    out = tmp_path / "rec"
    path, _, _ = record_from(feed_server, out, config)
    market: dict[str, Any] = yaml.safe_load(path.read_text())["market"]
    site = {
        "sites": [{"name": "default"}],
        "fleet": [
            {"profile": "s21", "count": 4, "mode": "mine"},
            {"profile": "h100-sxm-8x", "count": 2, "mode": "idle"},
        ],
        "market": market,
        "backtest": {
            "start": "2025-01-04T14:13:20Z",
            "end": "2025-01-04T16:13:20Z",
            "step_s": STEP_S,
        },
    }
    site_file = out / "site.yaml"
    site_file.write_text(yaml.safe_dump(site))
    result = CliRunner().invoke(
        app,
        ["backtest", "--config", str(site_file), "--no-ray", "--report", str(tmp_path / "report")],
    )
    assert result.exit_code == 0, result.output
    assert "best policy" in result.output


@pytest.mark.parametrize("samples", [0, -1])
def test_record_refuses_no_samples(tmp_path: Path, samples: int) -> None:
    with pytest.raises(ValueError, match="samples"):
        record(LiveMarketConfig(), tmp_path, samples=samples, interval_s=1.0)


def serve_market_now(server: FeedServer, now_s: float) -> LiveMarketConfig:
    """A market whose chain tip was mined two minutes before `now_s` (the wall clock of a
    `hashpivot record` subprocess): mempool for chain data, three exchanges, a fixed tariff."""
    serve_market(server)
    server.route("/mempool/api/v1/blocks", Reply(body=mempool_page(TIP, tip_time=now_s - 120)))
    bs = json.loads(fixture_bytes("bitstamp_ticker.json"))
    bs["timestamp"] = str(int(now_s) - 10)
    server.json("/bitstamp/api/v2/ticker/btcusd/", json.dumps(bs))
    return live_config(
        server,
        fees_window_blocks=15,
        chain_sources=[{"kind": "mempool", "base_url": f"{server.base}/mempool/api"}],
        price_sources=[
            {"kind": "coinbase", "base_url": f"{server.base}/coinbase"},
            {"kind": "kraken", "base_url": f"{server.base}/kraken"},
            {"kind": "bitstamp", "base_url": f"{server.base}/bitstamp"},
        ],
        power_sources={},
        power_usd_mwh_fixed=40.0,
        gpu_sources=[],
    )


def hashpivot(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hashpivot", path=str(Path(sys.executable).parent))
    assert exe, "the hashpivot console script is installed with the package"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def record_command(config: LiveMarketConfig, tmp_path: Path, samples: int = 2) -> tuple[
    subprocess.CompletedProcess[str], Path
]:
    site_file = tmp_path / "live.yaml"
    site_file.write_text(yaml.safe_dump({"live_market": config.model_dump(mode="json")}))
    out = tmp_path / "rec"
    proc = hashpivot("record", "--config", str(site_file), "--out", str(out),
                     "--samples", str(samples), "--interval", "0")
    return proc, out


def test_hashpivot_record_command_writes_a_replayable_market(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    proc, out = record_command(serve_market_now(feed_server, time.time()), tmp_path)
    assert proc.returncode == 0, proc.stderr
    market = RecordedMarketConfig.model_validate(
        yaml.safe_load((out / MARKET_FILE).read_text())["market"]
    )
    fleet = FleetTable.build(profiles("s21"), [Site()], [0])
    source = RecordedMarketSource(market, out, fleet)
    assert source.btc_usd.values.shape[0] >= 1
    # The median of the three fixture quotes, as served.
    quotes = [97012.35, 97014.9, float(json.loads(fixture_bytes("bitstamp_ticker.json"))["last"])]
    assert float(source.btc_usd.values[-1]) == sorted(quotes)[1]
    assert float(source.difficulty.values[-1]) == DIFFICULTY


def test_hashpivot_record_survives_a_hostile_answer_and_writes_why(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """A valid 2 kB JSON body of nested arrays used to end the recorder with a traceback."""
    config = serve_market_now(feed_server, time.time())
    feed_server.json("/kraken/0/public/Ticker?pair=XBTUSD", b"[" * 1000 + b"]" * 1000)
    proc, out = record_command(config, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = list(csv.DictReader((out / REJECTED_FILE).open()))
    assert [(r["feed"], r["reason"]) for r in rows] == [("btc_usd", "bad_json")] * 2  # per poll
    # The two exchanges left agree: BTC/USD is recorded.
    assert len((out / "btc_usd.csv").read_text().splitlines()) == 2  # header + one price


def test_a_mirror_stuck_on_old_blocks_records_no_difficulty(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Its tip was mined in 2024: the live path holds on such data, so it is not written
    as today's, and the recording says why there is no difficulty."""
    now = time.time()
    config = serve_market_now(feed_server, now)
    stuck_at = now - 400 * 86400.0
    feed_server.route("/mempool/api/v1/blocks", Reply(body=mempool_page(TIP, tip_time=stuck_at)))
    reports: list[RecordProgress] = []
    with pytest.raises(FeedError, match="difficulty"):
        record(config, tmp_path, samples=1, interval_s=0, clock=lambda: now,
               progress=reports.append)
    assert not (tmp_path / "difficulty.csv").exists()
    assert (tmp_path / "btc_usd.csv").exists()
    assert "difficulty" in reports[0].stale
