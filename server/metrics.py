"""Prometheus metrics of one server, in a registry of its own (no global state).

Hot paths stay cheap: per-delivery latency is sampled (1 in `LATENCY_SAMPLE_EVERY`
deliveries per session) and queue depths are read only when /metrics is scraped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .session import Session

LATENCY_SAMPLE_EVERY = 16


class _SessionCollector(Collector):
    """Connections and queue depths, computed from the live sessions at scrape time."""

    def __init__(self, sessions: Callable[[], Iterable[Session]]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        connections = GaugeMetricFamily(
            "syncwire_connections", "Open client sessions", labels=["transport"]
        )
        depth = GaugeMetricFamily(
            "syncwire_queue_depth_messages", "Messages waiting in session queues", labels=["transport"]
        )
        longest = GaugeMetricFamily(
            "syncwire_queue_depth_max_messages", "Longest session queue", labels=["transport"]
        )
        counts: dict[str, int] = {}
        depths: dict[str, int] = {}
        maxima: dict[str, int] = {}
        for session in self._sessions():
            transport = session.transport
            queued = len(session.queue)
            counts[transport] = counts.get(transport, 0) + 1
            depths[transport] = depths.get(transport, 0) + queued
            maxima[transport] = max(maxima.get(transport, 0), queued)
        for transport, count in counts.items():
            connections.add_metric([transport], count)
            depth.add_metric([transport], depths[transport])
            longest.add_metric([transport], maxima[transport])
        yield connections
        yield depth
        yield longest


class ServerMetrics:
    """Every metric the server exports."""

    def __init__(self, sessions: Callable[[], Iterable[Session]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
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
        self.broker_up = Gauge(
            "syncwire_broker_up", "1 when the broker is reachable", registry=registry
        )
        self.broker_up.set(1)
        self._http: WSGIServer | None = None

    def observe_delivery(self, server_time_ns: int) -> None:
        self.deliver_latency.observe(max(0.0, (time.time_ns() - server_time_ns) / 1e9))

    def serve(self, host: str, port: int) -> int:
        """Starts the /metrics HTTP endpoint in a thread; returns the bound port."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def stop_serving(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
