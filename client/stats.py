"""Counters a SyncClient keeps about itself (for tests, logs and dashboards)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ClientStats:
    """Monotonic counters since the client was created."""

    connect_attempts: int = 0
    """Streams opened or tried, on any endpoint."""
    connections: int = 0
    """Connections that reached CONNECTED."""
    disconnects: int = 0
    """Connections that ended while the client was open."""
    deltas: int = 0
    """Deltas delivered to the application."""
    duplicates_dropped: int = 0
    """Deltas dropped because their offset was already delivered."""
    pauses: int = 0
    """Times a subscription paused because the application's event buffer was full."""
    rejoins_retried: int = 0
    """Rejoins the server refused for now (e.g. broker_unavailable) and that were sent
    again after its retry_after instead of dropping the subscription."""
    deltas_deferred: int = 0
    """Deltas dropped while paused (the rejoin replays them from history)."""
    presence_dropped: int = 0
    """Presence events dropped because the application's event buffer was full."""
    gaps: int = 0
    """Recovery outcomes that lost deltas (epoch mismatch, gap too old, offset ahead)."""
    publishes_sent: int = 0
    """Publish requests sent, retries included (minus acknowledged = resent)."""
    heartbeats_sent: int = 0
    """Heartbeats sent."""
    token_requests: int = 0
    """Times the token provider was asked for a token."""
    token_refreshes: int = 0
    """In-band token refreshes the server accepted."""
