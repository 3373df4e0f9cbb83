"""Prometheus metrics of one server, in a registry of its own (no global state).

Hot paths stay cheap: per-delivery latency is sampled (1 in `LATENCY_SAMPLE_EVERY`
deliveries per session) and queue depths are read only when /metrics is scraped.

Under `--workers N` every worker runs with prometheus-client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR` set by the supervisor, which serves the aggregate): counters
and histograms are summed over workers, live and dead; the session gauges, which a
scrape cannot compute in another process, are refreshed by each worker's upkeep tick
and summed (`max` for the longest queue) over live workers; `syncwire_broker_up` is the
minimum over live workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .session import Session

LATENCY_SAMPLE_EVERY = 16


MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's own switch to multiprocess mode (read when it is imported)."""

_Mode = Literal["livesum", "livemax"]
_SESSION_GAUGES: tuple[tuple[str, str, _Mode], ...] = (
    ("syncwire_connections", "Open client sessions", "livesum"),
    ("syncwire_queue_depth_messages", "Messages waiting in session queues", "livesum"),
    ("syncwire_queue_depth_max_messages", "Longest session queue", "livemax"),
)


def _session_figures(sessions: Iterable[Session]) -> dict[str, tuple[int, int, int]]:
    """Per transport: open sessions, queued messages, longest queue."""
    figures: dict[str, tuple[int, int, int]] = {}
    for session in sessions:
        queued = len(session.queue)
        count, depth, longest = figures.get(session.transport, (0, 0, 0))
        figures[session.transport] = (count + 1, depth + queued, max(longest, queued))
    return figures


class _SessionCollector(Collector):
    """Connections and queue depths, computed from the live sessions at scrape time."""

    def __init__(self, sessions: Callable[[], Iterable[Session]]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = [
            GaugeMetricFamily(name, text, labels=["transport"]) for name, text, _ in _SESSION_GAUGES
        ]
        for transport, values in _session_figures(self._sessions()).items():
            for family, value in zip(families, values, strict=True):
                family.add_metric([transport], value)
        yield from families


class ServerMetrics:
    """Every metric the server exports."""

    def __init__(self, sessions: Callable[[], Iterable[Session]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._sessions = sessions
        self.multiprocess = bool(os.environ.get(MULTIPROCESS))
        self._session_gauges: list[Gauge] = []
        self._transports: set[str] = set()
        if self.multiprocess:
            self._session_gauges = [
                Gauge(name, text, ["transport"], registry=registry, multiprocess_mode=mode)
                for name, text, mode in _SESSION_GAUGES
            ]
        else:
            self.registry.register(_SessionCollector(sessions))
        self.sessions_opened = Counter(
            "syncwire_sessions_opened", "Sessions opened", ["transport"], registry=registry
        )
        self.messages_in = Counter(
            "syncwire_messages_in", "Client requests received", ["transport", "kind"], registry=registry
        )
        self.bytes_in = Counter(
            "syncwire_bytes_in", "Bytes of client requests received", ["transport"], registry=registry
        )
        self.messages_out = Counter(
            "syncwire_messages_out", "Messages sent to clients", ["transport"], registry=registry
        )
        self.deltas_published = Counter(
            "syncwire_deltas_published", "Deltas accepted by the broker", registry=registry
        )
        self.delta_bytes_published = Counter(
            "syncwire_delta_bytes_published", "Payload bytes of accepted deltas", registry=registry
        )
        self.duplicates = Counter(
            "syncwire_publish_duplicates", "Publishes answered from the de-duplication window",
            registry=registry,
        )
        self.deliver_latency = Histogram(
            "syncwire_publish_to_deliver_seconds",
            f"Server accept to hand-off to the transport (sampled 1/{LATENCY_SAMPLE_EVERY})",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.disconnects = Counter(
            "syncwire_disconnects", "Sessions ended by the server, by reason",
            ["reason"], registry=registry,
        )
        self.request_errors = Counter(
            "syncwire_request_errors", "Requests answered with an error", ["reason"], registry=registry
        )
        self.broker_errors = Counter(
            "syncwire_broker_errors", "Broker operations that failed", registry=registry
        )
        self.recoveries = Counter(
            "syncwire_recoveries", "Subscriptions by recovery outcome", ["outcome"], registry=registry
        )
        self.hook_latency = Histogram(
            "syncwire_hook_seconds",
            "Application hook calls by hook (connect, subscribe, publish, presence) and "
            "outcome (accepted, replaced, refused, failed, timeout, dropped)",
            ["hook", "outcome"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.broker_up = Gauge(
            "syncwire_broker_up", "1 when the broker is reachable", registry=registry,
            multiprocess_mode="livemin",
        )
        self.broker_up.set(1)
        self.framing_connections = Gauge(
            "syncwire_framing_connections",
            "Open typed-framing connections (one per WebSocket, however many calls it carries)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._framing_connection_count: Callable[[], int] | None = None
        self._http: WSGIServer | None = None

    def watch_framing_connections(self, count: Callable[[], int]) -> None:
        """Reports ``count()`` (open typed-framing connections) as
        ``syncwire_framing_connections``: read at scrape time, or every upkeep tick in
        multiprocess mode."""
        self._framing_connection_count = count
        if not self.multiprocess:
            self.framing_connections.set_function(lambda: float(count()))

    def observe_delivery(self, server_time_ns: int) -> None:
        """Records one delivery latency sample: now minus `server_time_ns` (the delta's
        server time, nanoseconds since the epoch), in seconds, never negative.
        """
        self.deliver_latency.observe(max(0.0, (time.time_ns() - server_time_ns) / 1e9))

    def refresh(self) -> None:
        """Multiprocess mode only: writes the session gauges for the supervisor to read
        (called every upkeep tick; transports with no sessions left read 0)."""
        if not self.multiprocess:
            return
        if self._framing_connection_count is not None:
            self.framing_connections.set(self._framing_connection_count())
        figures = _session_figures(self._sessions())
        self._transports.update(figures)
        for index, gauge in enumerate(self._session_gauges):
            for transport in self._transports:
                gauge.labels(transport).set(figures.get(transport, (0, 0, 0))[index])

    def serve(self, host: str, port: int) -> int:
        """Starts the /metrics HTTP endpoint in a thread; returns the bound port."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def stop_serving(self) -> None:
        """Stops the /metrics HTTP server, if `serve` started one."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
