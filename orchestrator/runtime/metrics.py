"""Prometheus metrics and the read-only /metrics, /healthz and /readyz endpoints."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.engine.plan import Plan
from orchestrator.errors import ConfigError
from orchestrator.framework.reasons import reason_label
from orchestrator.models.market import MarketSnapshot
from orchestrator.models.modes import MODE_LABELS

#: Every value of `hashpivot_actuation_errors_total{kind}`: actuators report free text per
#: node, and a label must stay a short, bounded set for Prometheus.
ERROR_KINDS = ("api_read", "conflict", "node_patch", "pod_eviction", "miner_ignored_command",
               "miner", "other")
#: Guard holds that mean something is wrong (not ordinary pacing such as dwell time).
WARNING_HOLDS = frozenset({"GUARD_STALE_DATA", "GUARD_FROZEN", "GUARD_UNREACHABLE",
                           "GUARD_POWER_CAP_CURTAILED", "GUARD_INVALID_TARGET",
                           "GUARD_UNSUPPORTED_MODE"})


def error_kind(text: str) -> str:
    """The bounded kind of one actuation error text (see `ERROR_KINDS`)."""
    low = text.lower()
    if low.startswith(("reading nodes", "api_read")):
        return "api_read"
    if "conflict" in low:
        return "conflict"
    if low.startswith(("patch failed", "node_patch")):
        return "node_patch"
    if "eviction" in low:
        return "pod_eviction"
    if "ignored a command" in low or low.startswith("miner_ignored"):
        return "miner_ignored_command"
    if low.startswith("miner") or "miner" in low.split(":")[0]:
        return "miner"
    return "other"


class _BoundedErrors:
    """`hashpivot_actuation_errors_total` whose `labels(text)` files free text under its
    bounded kind, so callers may pass an actuator's message as it is."""

    def __init__(self, counter: Counter):
        self.counter = counter

    def labels(self, text: str) -> Any:
        return self.counter.labels(error_kind(text))


class _FeedAges(Collector):
    """`hashpivot_feed_age_seconds`, worked out at scrape time: the age a value had at the
    last decision plus the wall time since. A feed that stops answering keeps ageing, so
    an age alert fires while no new value arrives (a value set per cycle would freeze)."""

    def __init__(self, clock: Any = time.monotonic):
        self.clock = clock
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[float, float]] = {}

    def observe(self, source: str, age_s: float) -> None:
        with self.lock:
            self.seen[source] = (age_s, self.clock())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hashpivot_feed_age_seconds",
                                   "Age of each market value now: its age at the last "
                                   "decision plus the time since.", labels=["source"])
        now = self.clock()
        with self.lock:
            for source, (age_s, at) in sorted(self.seen.items()):
                family.add_metric([source], max(age_s + now - at, 0.0))
        yield family


class ControllerMetrics:
    """Every figure the dashboard shows. One registry per controller (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 sites: Sequence[str] = (), clock: Any = time.monotonic):
        """`sites`: site names in config order (the plan's per-site arrays follow it)."""
        self.registry = registry or CollectorRegistry()
        self.sites = list(sites)
        r = self.registry
        self.nodes = Gauge("hashpivot_nodes", "Nodes per planned mode.", ["mode"], registry=r)
        self.expected_usd = Gauge("hashpivot_expected_usd_per_hour",
                                  "Expected net USD per hour of the plan, per mode.", ["mode"],
                                  registry=r)
        self.hashprice = Gauge("hashpivot_hashprice_usd_per_ph_day",
                               "Hashprice used by the last decision, USD/PH/day.", registry=r)
        self.power_price = Gauge("hashpivot_power_price_usd_per_mwh",
                                 "Power price used by the last decision, USD/MWh.", ["site"],
                                 registry=r)
        self.power_price_old = Gauge("hashpivot_power_price_usd_mwh",
                                     "Deprecated: use hashpivot_power_price_usd_per_mwh "
                                     "(this name goes in the next release).", ["site"],
                                     registry=r)
        self.feed_ages = _FeedAges(clock)
        r.register(self.feed_ages)
        self.feed_rejections = Counter("hashpivot_feed_rejections_total",
                                       "Market values rejected by the quality rules.",
                                       ["source", "reason"], registry=r)
        self.switches = Counter("hashpivot_switches_total", "Planned mode changes.",
                                ["reason", "to"], registry=r)
        self.latency = Histogram("hashpivot_decision_latency_seconds",
                                 "Time to score, decide and guard one cycle.", registry=r,
                                 buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.actuation_errors = _BoundedErrors(Counter(
            "hashpivot_actuation_errors_total", "Nodes whose actuation failed, by kind "
            f"({', '.join(ERROR_KINDS)}).", ["kind"], registry=r))
        self.leader = Gauge("hashpivot_leader", "1 when this replica may write to the "
                            "cluster (the live leader); 0 in shadow, dry-run and standby.",
                            registry=r)
        self.deciding = Gauge("hashpivot_deciding", "1 while this replica runs the decision "
                              "cycles (the live leader; every replica in shadow and dry-run): "
                              "dashboards read plan figures from these replicas only.",
                              registry=r)
        self.site_power = Gauge("hashpivot_site_power_watts",
                                "Power each site draws once the last plan is carried out "
                                "(GPU nodes and ASIC miners), W.", ["site"], registry=r)
        self.site_cap = Gauge("hashpivot_site_power_cap_watts",
                              "Power cap of each site, W.", ["site"], registry=r)
        self.nodes_held = Gauge("hashpivot_nodes_held", "Nodes a guard held in the last plan, "
                                "by guard.", ["reason"], registry=r)
        self.holds = Counter("hashpivot_holds_total", "Node holds by guard, summed over "
                             "cycles; whole cycles held count under their reason "
                             "(market_unusable, policy_failed).", ["reason"], registry=r)
        self.build_info = Info("hashpivot_build", "The running hashpivot's version.",
                               registry=r)
        self.cycles = Counter("hashpivot_cycles_total", "Decision cycles run.", ["outcome"],
                              registry=r)
        self.last_cycle = Gauge("hashpivot_last_cycle_timestamp_seconds",
                                "Wall time of the last completed cycle.", registry=r)
        self.asic_miners = Gauge("hashpivot_asic_miners", "ASIC miners by state: mining, "
                                 "curtailed, unreadable (counted at their last known draw), "
                                 "unknown_model (never commanded).", ["state"], registry=r)
        self.grid_signals = Counter("hashpivot_grid_signals_total", "Live grid messages "
                                    "(events and alerts) by site, source and outcome: new, "
                                    "updated, cancelled, duplicate, stale, unauthorized, "
                                    "error_REASON.", ["site", "source", "outcome"],
                                    registry=r)
        self.grid_acks = Counter("hashpivot_grid_event_acks_total", "Demand-response events "
                                 "acknowledged as started or ended.", ["site", "state"],
                                 registry=r)
        self._rejections_seen: dict[tuple[str, str], int] = {}
        self._held_labels: set[str] = set()
        #: Rejections seen since the controller last logged them (it clears this).
        self.new_rejections: dict[str, int] = {}
        from importlib.metadata import PackageNotFoundError, version

        try:
            self.build_info.info({"version": version("hashpivot")})
        except PackageNotFoundError:
            self.build_info.info({"version": "unknown"})

    def observe_miners(self, states: dict[str, int]) -> None:
        for state, count in states.items():
            self.asic_miners.labels(state).set(count)

    def observe_plan(self, plan: Plan, latency_s: float) -> None:
        counts = plan.summary()["modes"]
        assert isinstance(counts, dict)
        for mode in MODE_LABELS:
            self.nodes.labels(mode).set(counts.get(mode, 0))
        for mode, usd in plan.expected_usd_per_hour().items():
            self.expected_usd.labels(mode).set(usd)
        for i in plan.changed:
            to = MODE_LABELS[int(plan.target[i])]
            self.switches.labels(reason_label(int(plan.reason[i])), to).inc()
        self.latency.observe(latency_s)
        for k, (power_w, cap_w) in enumerate(zip(plan.site_power_w, plan.site_cap_w,
                                                 strict=True)):
            site = self.sites[k] if k < len(self.sites) else str(k)
            self.site_power.labels(site).set(float(power_w))
            self.site_cap.labels(site).set(float(cap_w))
        held = plan.held_by_guard()
        for reason in list(self._held_labels - held.keys()):
            self.nodes_held.labels(reason.lower()).set(0)
        for reason, count in held.items():
            self.nodes_held.labels(reason.lower()).set(count)
            self.holds.labels(reason.lower()).inc(count)
        self._held_labels = set(held)

    def observe_market(self, snapshot: MarketSnapshot, hashprice: float, now_s: float) -> None:
        self.hashprice.set(hashprice)
        for site, value in snapshot.power_usd_mwh.items():
            self.power_price.labels(site).set(value.value)
            self.power_price_old.labels(site).set(value.value)
        for name, value in snapshot.values():
            self.feed_ages.observe(name, max(now_s - value.observed_at.timestamp(), 0.0))

    def observe_rejections(self, counts: dict[str, dict[str, int]]) -> dict[str, int]:
        """Bring counters up to cumulative rejection counts kept by the feed layer; returns
        the new rejections per `source: reason` since the last call (for the log)."""
        new: dict[str, int] = {}
        for source, reasons in counts.items():
            for reason, total in reasons.items():
                seen = self._rejections_seen.get((source, reason), 0)
                if total > seen:
                    self.feed_rejections.labels(source, reason).inc(total - seen)
                    self._rejections_seen[(source, reason)] = total
                    new[f"{source}: {reason}"] = total - seen
        self.new_rejections.update(new)
        return new

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """Liveness: a cycle completed recently, or a live standby's loop went round
    recently (or the process is still starting).

    Readiness: this replica can do its job now. A replica that runs cycles is ready while
    its last cycle completed within `max(2 × interval, 60 s)` and no cycle has failed
    since; a live standby (which runs no cycles) is ready once it has started."""

    def __init__(self, interval_s: float, clock: Any = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.last_ok: float | None = None
        # When a live standby's loop last went round (it runs no cycle to beat with).
        self.last_standby: float | None = None
        self.failing: str | None = None
        self.standby = False

    def beat(self) -> None:
        self.last_ok = self.clock()
        self.failing = None

    def standing_by(self) -> None:
        """A live standby's loop went round: alive, with no cycle of its own to run
        (liveness must not restart the replica that waits to take over)."""
        self.last_standby = self.clock()

    def fail(self, why: str) -> None:
        """A cycle could not run; readiness fails until one completes."""
        self.failing = why

    def live(self) -> bool:
        ref = max(t for t in (self.started, self.last_ok, self.last_standby) if t is not None)
        return bool(self.clock() - ref < max(3 * self.interval_s, 60.0))

    def ready(self) -> bool:
        return self.why_not_ready() is None

    def why_not_ready(self) -> str | None:
        if self.failing is not None:
            return self.failing
        if self.standby:
            return None
        if self.last_ok is None:
            return "no cycle completed yet"
        if self.clock() - self.last_ok >= max(2 * self.interval_s, 60.0):
            return f"no cycle completed for {self.clock() - self.last_ok:.0f} s"
        return None


#: A POST route: (Authorization header, body) → (status, JSON answer).
PostRoute = Callable[[str | None, bytes], tuple[int, dict[str, Any]]]


class MetricsServer:
    """HTTP server for /metrics, /healthz and /readyz on a background thread, and the
    POST routes the controller adds (`routes`, e.g. the grid webhook)."""

    def __init__(self, metrics: ControllerMetrics, health: Health, port: int,
                 host: str = "0.0.0.0"):
        owner = self
        #: path → (handler, largest body accepted, bytes)
        self.routes: dict[str, tuple[PostRoute, int]] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    owner._send(self, 200, owner.metrics.render(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = owner.health.live()
                    owner._send(self, 200 if ok else 503, b"ok\n" if ok else b"stalled\n")
                elif self.path == "/readyz":
                    why = owner.health.why_not_ready()
                    body = b"ok\n" if why is None else f"not ready: {why}\n".encode()
                    owner._send(self, 200 if why is None else 503, body)
                else:
                    owner._send(self, 404, b"not found\n")

            def do_POST(self) -> None:
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:  # only the added routes take a POST
                    owner._send(self, 405, b"method not allowed\n")
                    return
                handler, limit = route
                auth = self.headers.get("Authorization")
                length = self.headers.get("Content-Length", "")
                if not length.isdigit():
                    owner._send(self, 411, b"Content-Length required\n")
                    return
                if int(length) > limit:
                    self.close_connection = True  # the body is left unread
                    owner._send(self, 413, f"body over {limit} bytes\n".encode())
                    return
                try:
                    status, answer = handler(auth, self.rfile.read(int(length)))
                except Exception as exc:  # a sender must never reach a traceback
                    status, answer = 500, {"error": type(exc).__name__}
                owner._send(self, status, json.dumps(answer).encode() + b"\n",
                            "application/json")

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would flood the log

        self.metrics = metrics
        self.health = health
        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:  # port taken, or not ours to bind: one line, not a traceback
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}",
                              field="controller.metrics_port (or --metrics-port)") from None
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
