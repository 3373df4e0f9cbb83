"""Everything a SyncClient can be told, in one typed place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .backoff import Backoff
from .endpoints import ChannelFactory, ChannelSettings, open_channel
from .tokens import SYSTEM_CLOCK, Clock, TokenProvider


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Client settings; the defaults suit a long-lived application.

    Connection:
        backoff: Reconnect delays (full jitter, 0.5 s .. 20 s, unlimited attempts).
        connect_timeout: Seconds allowed to open a stream and receive the Welcome.
        first_connect_timeout: Seconds `connect()` waits for the client's first
            connection before raising ServerUnreachableError (None: wait as long as it
            takes; `connect(timeout=None)` asks for that per call). Once a connection
            was made, reconnects retry as `backoff` says, without this bound.
        request_timeout: Seconds allowed for a reply (subscribe, unary calls), and how
            long a unary call waits for a connection before raising NotConnectedError.
        probe_interval: With several endpoints, seconds between checks whether a more
            preferred endpoint (gRPC) is back while connected to a fallback.
        metadata: Sent with every call (for example an authorization header).

    Authentication (docs/security.md, "Token provider"):
        token_provider: Callable, plain or async, returning a bearer token (no
            "Bearer " prefix). Asked at every connection attempt and ahead of expiry;
            its token goes in `authorization` metadata (replacing one in `metadata`).
            A refusal (UNAUTHENTICATED) asks it once more; a second refusal stops the
            client (OFFLINE with TokenRefusedError, and a TokenRefused event).
        token_refresh_margin: Seconds before the token's `exp` at which the next token
            is asked for and sent in band (RefreshToken) on the open stream (for a
            token living less than twice that: halfway through its life).
        clock: POSIX time for token expiry (`time()`, `sleep_until(t)`); tests
            inject their own.

    Liveness:
        heartbeat_interval: Seconds between client heartbeats; None follows the
            server's advertised interval (Welcome.server_info).
        heartbeat_timeout: Seconds of silence from the server after which the connection
            counts as dead; None means 2 x the server's interval + `heartbeat_margin`.
        heartbeat_margin: Slack added to the derived timeout.
        fallback_heartbeat_interval: Used when the server advertises no interval.

    Publishing:
        outbox_limit: Unacknowledged publishes kept at most (OutboxFullError beyond).
        outbox_path: SQLite file that keeps the outbox across process restarts
            (None: memory only); written by a writer thread, off the event loop (see
            `client.outbox.SqliteOutboxStore`).
        max_in_flight: Publishes sent and not yet acknowledged, at most, per connection
            (several per collection when the server keeps publish order across
            refusals, `ServerInfo.publish_holds`; else at most one per collection, so
            refusals cannot reorder a collection).
        close_flush_timeout: Seconds `close()` waits for the outbox to drain.
        replica_id: Replica id put on published deltas ("" picks a random one).

    Delivery:
        event_buffer: Events buffered for `events()`. When it is full, a subscription
            stops taking deltas and rejoins from its offset once the application has
            read half of the buffer; the server replays the rest from history
            (0 = unbounded). Presence events that find it full are dropped and
            reported once by an `ErrorEvent` ("presence_events_dropped").
        event_buffer_bytes: The same bound in bytes of delta payload (0 = unbounded).
        send_buffer_bytes: Bytes of requests waiting to be sent on a connection (the
            server reads them no faster than it can answer); a request beyond it fails
            with `SendBufferFullError`; publishes wait for room instead.

    Channels:
        channel: gRPC keepalive and size settings for the default channel factory.
        channel_factory: Builds a channel for an endpoint (override for credentials).
    """

    backoff: Backoff = field(default_factory=Backoff)
    connect_timeout: float = 10.0
    first_connect_timeout: float | None = 10.0
    request_timeout: float = 10.0
    probe_interval: float = 30.0
    metadata: tuple[tuple[str, str], ...] = ()
    token_provider: TokenProvider | None = None
    token_refresh_margin: float = 30.0
    clock: Clock = SYSTEM_CLOCK
    heartbeat_interval: float | None = None
    heartbeat_timeout: float | None = None
    heartbeat_margin: float = 2.0
    fallback_heartbeat_interval: float = 25.0
    outbox_limit: int = 10_000
    outbox_path: str | os.PathLike[str] | None = None
    max_in_flight: int = 128
    close_flush_timeout: float = 5.0
    replica_id: str = ""
    event_buffer: int = 10_000
    event_buffer_bytes: int = 16 * 1024 * 1024
    send_buffer_bytes: int = 4 * 1024 * 1024
    channel: ChannelSettings = field(default_factory=ChannelSettings)
    channel_factory: ChannelFactory = open_channel

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "request_timeout", "probe_interval"):
            _positive(name, getattr(self, name))
        for name in ("heartbeat_interval", "heartbeat_timeout", "first_connect_timeout"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        _positive("fallback_heartbeat_interval", self.fallback_heartbeat_interval)
        if self.heartbeat_margin < 0:
            raise ValueError(f"heartbeat_margin must be >= 0, got {self.heartbeat_margin}")
        if self.token_refresh_margin < 0:
            raise ValueError(f"token_refresh_margin must be >= 0, got {self.token_refresh_margin}")
        if self.close_flush_timeout < 0:
            raise ValueError(f"close_flush_timeout must be >= 0, got {self.close_flush_timeout}")
        for name in ("outbox_limit", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("event_buffer", "event_buffer_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.send_buffer_bytes < 1024:
            raise ValueError(f"send_buffer_bytes must be >= 1024, got {self.send_buffer_bytes}")

    def liveness(self, advertised: int | None) -> tuple[float, float]:
        """(send interval, dead-after timeout) for a server advertising `advertised` s."""
        server_interval = float(advertised) if advertised else None
        interval = self.heartbeat_interval or server_interval or self.fallback_heartbeat_interval
        silence = server_interval or interval
        timeout = self.heartbeat_timeout or 2 * silence + self.heartbeat_margin
        return interval, timeout


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
