"""Where a SyncClient's token comes from and when it asks for the next one.

A *token provider* is any callable, plain or async, that returns a bearer token (a JWT)
as a string; Centrifugo's SDKs call the same thing `getToken`. The client asks it at
every connection attempt and ahead of the token's expiry: at `exp` (read from the
token's claims without verifying them; the server verifies) minus
`ClientConfig.token_refresh_margin`. A token without a readable `exp` (an opaque token)
is only replaced at the next reconnect.

Time comes from a `Clock` (the system clock by default) so tests can move it forward
instead of waiting for a token to expire.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import grpc
import jwt

from .errors import SyncError

TokenProvider = Callable[[], str | Awaitable[str]]
"""Returns a fresh bearer token (without the "Bearer " prefix), synchronously or not."""

MIN_REFRESH_INTERVAL: Final = 1.0
"""Seconds at least between two refreshes, however short-lived the tokens are."""


class Clock(Protocol):
    """POSIX seconds now, and a way to wait until a moment on the same scale."""

    def time(self) -> float:
        """POSIX seconds now."""

    async def sleep_until(self, when: float) -> None:
        """Returns once `time()` reaches `when` (POSIX seconds)."""


class SystemClock:
    """The wall clock (`time.time`) and `asyncio.sleep`."""

    def time(self) -> float:
        """`time.time()`."""
        return time.time()

    async def sleep_until(self, when: float) -> None:
        """Sleeps until `when` (POSIX seconds; at once when it has passed)."""
        await asyncio.sleep(max(when - time.time(), 0.0))


SYSTEM_CLOCK: Final = SystemClock()


class TokenProviderError(SyncError):
    """The token provider raised or returned something other than a non-empty string.
    The attempt counts as a failed connection: the client retries with backoff."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, message, reason_code="token_provider_failed")


def token_expiry(token: str) -> float | None:
    """The `exp` claim (POSIX seconds) of a JWT, read without checking the signature;
    None for a token that is not a JWT or has no numeric `exp`."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def with_token(
    metadata: tuple[tuple[str, str], ...], token: str | None
) -> tuple[tuple[str, str], ...]:
    """`metadata` with its `authorization` entry replaced by `Bearer <token>` (unchanged
    when `token` is None)."""
    if token is None:
        return metadata
    kept = tuple((key, value) for key, value in metadata if key.lower() != "authorization")
    return (*kept, ("authorization", f"Bearer {token}"))


class TokenSource:
    """Asks the provider for tokens and says when the current one needs replacing.

    Args:
        provider: The application's token provider.
        margin: Seconds before `exp` at which to ask for the next token.
        clock: What "now" is.
    """

    def __init__(self, provider: TokenProvider, margin: float, clock: Clock) -> None:
        self._provider = provider
        self._margin = margin
        self.clock = clock
        self.token: str | None = None
        """The latest token the provider returned (None before the first)."""
        self.expires_at: float | None = None
        """Its `exp`, when it has one."""
        self.requests = 0
        """How many times the provider was asked."""
        self._fetched_at = 0.0

    async def fetch(self) -> str:
        """Asks the provider for a token and makes it current. Raises TokenProviderError
        when the provider raises or returns no token."""
        self.requests += 1
        try:
            result = self._provider()
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise TokenProviderError(f"token provider failed: {exc!r}") from exc
        if not isinstance(result, str) or not result:
            raise TokenProviderError(
                f"token provider returned {type(result).__name__} {result!r}, not a token"
            )
        self.token = result
        self.expires_at = token_expiry(result)
        self._fetched_at = self.clock.time()
        return result

    def refresh_at(self) -> float | None:
        """When to ask for the next token: `exp` minus the margin, but not before half
        the token's lifetime (at least `MIN_REFRESH_INTERVAL`) has passed since it was
        fetched, so tokens shorter-lived than the margin do not cause a refresh storm.
        None without `exp`."""
        if self.expires_at is None:
            return None
        fetched = self._fetched_at
        earliest = fetched + max((self.expires_at - fetched) / 2, MIN_REFRESH_INTERVAL)
        return max(self.expires_at - self._margin, earliest)
