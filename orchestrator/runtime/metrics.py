"""Prometheus metrics and the read-only /metrics, /healthz and /readyz endpoints."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from orchestrator.engine.plan import Plan
from orchestrator.framework.reasons import Reason
from orchestrator.models.market import MarketSnapshot
from orchestrator.models.modes import MODE_LABELS


class ControllerMetrics:
    """Every figure the dashboard shows. One registry per controller (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.nodes = Gauge("hashpivot_nodes", "Nodes per planned mode.", ["mode"], registry=r)
        self.expected_usd = Gauge("hashpivot_expected_usd_per_hour",
                                  "Expected net USD per hour of the plan, per mode.", ["mode"],
                                  registry=r)
        self.hashprice = Gauge("hashpivot_hashprice_usd_per_ph_day",
                               "Hashprice used by the last decision, USD/PH/day.", registry=r)
        self.power_price = Gauge("hashpivot_power_price_usd_mwh",
                                 "Power price used by the last decision.", ["site"], registry=r)
        self.feed_age = Gauge("hashpivot_feed_age_seconds",
                              "Age of each market value at the last decision.", ["source"],
                              registry=r)
        self.feed_rejections = Counter("hashpivot_feed_rejections_total",
                                       "Market values rejected by the quality rules.",
                                       ["source", "reason"], registry=r)
        self.switches = Counter("hashpivot_switches_total", "Planned mode changes.",
                                ["reason", "to"], registry=r)
        self.latency = Histogram("hashpivot_decision_latency_seconds",
                                 "Time to score, decide and guard one cycle.", registry=r,
                                 buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.actuation_errors = Counter("hashpivot_actuation_errors_total",
                                        "Nodes whose actuation failed.", ["kind"], registry=r)
        self.leader = Gauge("hashpivot_leader", "1 when this replica leads.", registry=r)
        self.cycles = Counter("hashpivot_cycles_total", "Decision cycles run.", ["outcome"],
                              registry=r)
        self.last_cycle = Gauge("hashpivot_last_cycle_timestamp_seconds",
                                "Wall time of the last completed cycle.", registry=r)
        self._rejections_seen: dict[tuple[str, str], int] = {}

    def observe_plan(self, plan: Plan, latency_s: float) -> None:
        counts = plan.summary()["modes"]
        assert isinstance(counts, dict)
        for mode in MODE_LABELS:
            self.nodes.labels(mode).set(counts.get(mode, 0))
        for mode, usd in plan.expected_usd_per_hour().items():
            self.expected_usd.labels(mode).set(usd)
        for i in plan.changed:
            to = MODE_LABELS[int(plan.target[i])]
            self.switches.labels(Reason(int(plan.reason[i])).name.lower(), to).inc()
        self.latency.observe(latency_s)

    def observe_market(self, snapshot: MarketSnapshot, hashprice: float, now_s: float) -> None:
        self.hashprice.set(hashprice)
        for site, value in snapshot.power_usd_mwh.items():
            self.power_price.labels(site).set(value.value)
        for name, value in snapshot.values():
            self.feed_age.labels(name).set(max(now_s - value.observed_at.timestamp(), 0.0))

    def observe_rejections(self, counts: dict[str, dict[str, int]]) -> None:
        """Bring counters up to cumulative rejection counts kept by the feed layer."""
        for source, reasons in counts.items():
            for reason, total in reasons.items():
                seen = self._rejections_seen.get((source, reason), 0)
                if total > seen:
                    self.feed_rejections.labels(source, reason).inc(total - seen)
                    self._rejections_seen[(source, reason)] = total

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """Liveness: a cycle completed recently. Readiness: at least one cycle completed."""

    def __init__(self, interval_s: float, clock: Any = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.last_ok: float | None = None

    def beat(self) -> None:
        self.last_ok = self.clock()

    def live(self) -> bool:
        ref = self.last_ok if self.last_ok is not None else self.started
        return bool(self.clock() - ref < max(3 * self.interval_s, 60.0))

    def ready(self) -> bool:
        return self.last_ok is not None


class MetricsServer:
    """GET-only HTTP server for /metrics, /healthz and /readyz on a background thread."""

    def __init__(self, metrics: ControllerMetrics, health: Health, port: int,
                 host: str = "0.0.0.0"):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    owner._send(self, 200, owner.metrics.render(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = owner.health.live()
                    owner._send(self, 200 if ok else 503, b"ok\n" if ok else b"stalled\n")
                elif self.path == "/readyz":
                    ok = owner.health.ready()
                    owner._send(self, 200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    owner._send(self, 404, b"not found\n")

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would flood the log

        self.metrics = metrics
        self.health = health
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="hashpivot-metrics")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes,
              content_type: str = "text/plain; charset=utf-8") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
