"""A local HTTP server on 127.0.0.1 that replays recorded API bodies (tier-1 contract tests).

Routes map a path (with its query string, if any) to a list of replies served in turn;
the last one repeats. A reply can fail the way real endpoints do: a status code, a body
cut short of its Content-Length, a connection that never answers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.models.feeds_config import LiveMarketConfig

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Send the full Content-Length but only this many bytes, then close.
    cut_at: int | None = None
    #: Never answer (until the test ends): the client must time out.
    hang: bool = False
    #: Stream the body with chunked encoding (no Content-Length).
    chunked: bool = False

    @staticmethod
    def fixture(name: str, **kw: object) -> Reply:
        ctype = "text/csv" if name.endswith(".csv") else "application/json"
        return Reply(body=fixture_bytes(name), content_type=ctype, **kw)  # type: ignore[arg-type]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up early (size limit, timeout) are part of the tests.
        pass


class FeedServer:
    """Routes and the request log of one local server."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[str] = []
        #: Request headers per request, in the order of `requests`.
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def route(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self.routes[path] = list(replies)

    def json(self, path: str, body: bytes | str, status: int = 200) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.route(path, Reply(status=status, body=data))

    def hits(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)

    def _next(self, path: str, headers: dict[str, str] | None = None) -> Reply | None:
        with self._lock:
            self.requests.append(path)
            self.headers.append(headers or {})
            replies = self.routes.get(path)
            if not replies:
                return None
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                reply = server._next(self.path, {k.lower(): v for k, v in self.headers.items()})
                if reply is None:
                    reply = Reply(status=404, body=b'{"error":"not found"}')
                if reply.hang:
                    server.release.wait()
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    step = 4096
                    for i in range(0, len(reply.body), step):
                        part = reply.body[i : i + step]
                        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                if reply.cut_at is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(reply.body[: reply.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                self.wfile.write(reply.body)

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


class SleepLog:
    """Injected instead of time.sleep: records the waits, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# -- a whole market on one server ---------------------------------------------------------

#: 2025-01-04T14:13:20Z, when the fixtures were "served".
NOW = 1_736_000_000.0
TIP = 877_320
DIFFICULTY = 109782075598905.2


def fixture_fees_sat(height: int) -> int:
    """The fee total the fixtures give block `height` (pages beyond the tip page too)."""
    return 1_500_000 + (height * 7919) % 9_000_000


def mempool_page(
    start: int,
    *,
    count: int = 15,
    difficulty: float = DIFFICULTY,
    block_s: float = 600.0,
    tip_time: float | None = None,
) -> bytes:
    """A /v1/blocks/{start} page cloned from the fixture blocks (height, id and fees)."""
    template = json.loads(fixture_bytes("mempool_v1_blocks.json"))[0]
    if tip_time is not None:  # the block at `start` mined at `tip_time`
        template["timestamp"] = tip_time - (start - TIP) * block_s
    blocks = []
    for height in range(start, start - count, -1):
        b = json.loads(json.dumps(template))
        b["height"] = height
        b["id"] = f"{height:064x}"
        b["difficulty"] = difficulty
        # Blocks `block_s` apart, the fixture tip at its own time.
        b["timestamp"] = int(template["timestamp"] + (height - TIP) * block_s)
        b["extras"]["totalFees"] = fixture_fees_sat(height)
        blocks.append(b)
    return json.dumps(blocks).encode()


def serve_market(server: FeedServer) -> None:
    """Happy routes for every feed (see `live_config`)."""
    server.route("/mempool/api/v1/blocks", Reply.fixture("mempool_v1_blocks.json"))
    for start in range(TIP - 15, TIP - 200, -15):
        server.route(f"/mempool/api/v1/blocks/{start}", Reply(body=mempool_page(start)))
    server.route(
        "/mempool/api/v1/mining/reward-stats/144", Reply.fixture("mempool_reward_stats_144.json")
    )
    server.route("/mempool/api/v1/mining/hashrate/3d", Reply.fixture("mempool_hashrate_3d.json"))
    server.route("/mempool/api/v1/difficulty-adjustment",
                 Reply.fixture("mempool_difficulty_adjustment.json"))
    server.route("/mempool/api/v1/fees/recommended", Reply.fixture("mempool_fees_recommended.json"))
    server.route("/mempool/api/v1/prices", Reply.fixture("mempool_v1_prices.json"))
    server.route("/bci/stats", Reply.fixture("blockchain_info_stats.json"))
    server.route("/esplora/api/blocks", Reply.fixture("esplora_blocks.json"))
    server.route("/coinbase/v2/prices/BTC-USD/spot", Reply.fixture("coinbase_spot.json"))
    server.route("/kraken/0/public/Ticker?pair=XBTUSD", Reply.fixture("kraken_ticker.json"))
    server.route("/bitstamp/api/v2/ticker/btcusd/", Reply.fixture("bitstamp_ticker.json"))
    server.route("/ercot/hub.csv", Reply.fixture("ercot_hub_prices.csv"))
    server.route("/power.json", Reply.fixture("power_hub_price.json"))
    server.route("/gpu/offers.json", Reply.fixture("gpu_offers.json"))


def live_config(server: FeedServer, **over: Any) -> LiveMarketConfig:
    """Every feed pointed at `server`; loopback http allowed explicitly."""
    b = server.base
    data: dict[str, Any] = {
        "http": {"timeout_s": 0.5, "retries": 1, "allow_loopback_http": True},
        "chain_sources": [
            {"kind": "mempool", "base_url": f"{b}/mempool/api"},
            {"kind": "blockchain_info", "base_url": f"{b}/bci"},
            {"kind": "esplora", "base_url": f"{b}/esplora/api"},
        ],
        "price_sources": [
            {"kind": "coinbase", "base_url": f"{b}/coinbase"},
            {"kind": "kraken", "base_url": f"{b}/kraken"},
            {"kind": "bitstamp", "base_url": f"{b}/bitstamp"},
        ],
        "fees_window_blocks": 144,
        "power_sources": {
            "default": {
                "kind": "http_csv",
                "url": f"{b}/ercot/hub.csv",
                "time_columns": ["DeliveryDate", "HourEnding"],
                "time_format": "%m/%d/%Y %H:%M",
                "hour_ending": True,
                "timezone": "America/Chicago",
                "key_column": "SettlementPoint",
                "key": "HB_WEST",
                "value_column": "SettlementPointPrice",
            }
        },
        "gpu_sources": [
            {
                "url": f"{b}/gpu/offers.json",
                "items_path": "data",
                "model_field": "gpu_type",
                "price_field": "price_usd_hr",
                "models": {"H100_80GB": "H100_80GB_SXM5", "H200_141GB": "H200_141GB"},
            }
        ],
        "poll_interval_s": 0.0,
    }
    data.update(over)
    return LiveMarketConfig.model_validate(data)
