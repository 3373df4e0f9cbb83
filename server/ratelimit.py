"""Per-connection rate limits (token buckets) and per-address connection counts.

A connection is keyed by its peer string (`ipv4:1.2.3.4:5678`, one per TCP connection),
so a gRPC connection's Sync stream and its unary calls share one budget. Each key has
two buckets, messages/s and bytes/s, holding up to `burst` seconds of their rate; a
message is admitted when both hold enough tokens, otherwise it is refused with
RESOURCE_EXHAUSTED, reason `rate_limited` and the time until it would be admitted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import grpc

from .config import ServerConfig
from .errors import RequestError
from .ws.address_limit import AddressCounter as ConnectionCounter

RATE_LIMITED: Final = "rate_limited"
TOO_MANY_FROM_ADDRESS: Final = "too_many_connections_per_address"
_EPSILON: Final = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """Refills at `rate` per second up to `capacity`. A cost above the capacity is
    admitted from a full bucket and leaves it in debt, so no message is refused forever."""

    rate: float
    capacity: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        """Adds what the rate earned since the last refill (monotonic seconds `now`)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` is admitted (0: now); call after `refill`. Shortfalls
        below `_EPSILON` tokens are float noise of the clock arithmetic, not a refusal."""
        missing = min(cost, self.capacity) - self.tokens
        return missing / self.rate if missing > _EPSILON else 0.0

    def full(self, now: float) -> bool:
        """Whether the bucket would be at capacity at `now` (then it can be forgotten)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.capacity


class ConnectionBudget:
    """The message and byte buckets of one connection (either may be absent)."""

    __slots__ = ("_buckets",)

    def __init__(self, messages: float, bytes_: float, burst: float, now: float) -> None:
        self._buckets = [
            (TokenBucket(rate, rate * burst, rate * burst, now), is_bytes)
            for rate, is_bytes in ((messages, False), (bytes_, True))
            if rate > 0
        ]

    def charge(self, size: int, now: float) -> float:
        """Takes one message of `size` bytes and returns 0, or takes nothing and returns
        the seconds to wait before it would be admitted."""
        wait = 0.0
        for bucket, is_bytes in self._buckets:
            bucket.refill(now)
            wait = max(wait, bucket.wait_for(size if is_bytes else 1))
        if wait > 0:
            return wait
        for bucket, is_bytes in self._buckets:
            bucket.tokens -= size if is_bytes else 1
        return 0.0

    def full(self, now: float) -> bool:
        """Whether every bucket of the connection is full at `now`."""
        return all(bucket.full(now) for bucket, _ in self._buckets)


class RateLimiter:
    """The budgets of every connection of the node.

    Budgets are created on first use and dropped once full again (a full budget is
    what a new one would be, so forgetting it loses nothing); the sweep runs when the
    table has doubled since the last one, so its cost is amortised.
    """

    def __init__(
        self,
        messages_per_second: float,
        bytes_per_second: float,
        burst_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.messages_per_second = messages_per_second
        self.bytes_per_second = bytes_per_second
        self.burst_seconds = burst_seconds
        self._clock = clock
        self._budgets: dict[str, ConnectionBudget] = {}
        self._next_sweep = 1024

    @classmethod
    def from_config(cls, config: ServerConfig) -> RateLimiter | None:
        """The configured limiter, or None when both rates are 0 (unlimited)."""
        if config.rate_limit_messages <= 0 and config.rate_limit_bytes <= 0:
            return None
        return cls(config.rate_limit_messages, config.rate_limit_bytes, config.rate_limit_burst)

    def __len__(self) -> int:
        return len(self._budgets)

    def charge(self, key: str, size: int) -> None:
        """Admits one message of `size` bytes from connection `key`, or raises
        RequestError(RESOURCE_EXHAUSTED, "rate_limited") with retry_after_ms."""
        now = self._clock()
        budget = self._budgets.get(key)
        if budget is None:
            if len(self._budgets) >= self._next_sweep:
                self._sweep(now)
            budget = ConnectionBudget(
                self.messages_per_second, self.bytes_per_second, self.burst_seconds, now
            )
            self._budgets[key] = budget
        wait = budget.charge(size, now)
        if wait > 0:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                RATE_LIMITED,
                f"rate limit exceeded ({self._describe()} per connection); "
                f"retry in {math.ceil(wait * 1000)} ms",
                retry_after_ms=max(1, math.ceil(wait * 1000)),
            )

    def _describe(self) -> str:
        parts = []
        if self.messages_per_second > 0:
            parts.append(f"{self.messages_per_second:g} messages/s")
        if self.bytes_per_second > 0:
            parts.append(f"{self.bytes_per_second:g} bytes/s")
        return ", ".join(parts)

    def _sweep(self, now: float) -> None:
        self._budgets = {k: b for k, b in self._budgets.items() if not b.full(now)}
        self._next_sweep = max(1024, 2 * len(self._budgets))


def peer_host(peer: str) -> str | None:
    """The client IP address of a gRPC-style peer string (`ipv4:1.2.3.4:5`,
    `ipv6:[::1]:5`, grpc's `ipv6:%5B::1%5D:5`); None for other peers (in-process, unix)."""
    family, _, rest = peer.partition(":")
    if family not in ("ipv4", "ipv6"):
        return None
    host = unquote(rest).rpartition(":")[0]
    return host.strip("[]") or None


class AddressCounter(ConnectionCounter):
    """Counts open connections per client address against a limit (0 = unlimited), and
    words the refusal of one too many for the sync service."""

    def refusal(self, address: str) -> RequestError:
        """The error for one connection too many from `address`."""
        return RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            TOO_MANY_FROM_ADDRESS,
            f"too many connections from {address} (limit {self.limit})",
            retry_after_ms=1000,
        )
