"""When SyncClient asks its token provider again (pure: no server, a manual clock)."""

from __future__ import annotations

import pytest

from client.tokens import MIN_REFRESH_INTERVAL, TokenProviderError, TokenSource, token_expiry

from .clock_harness import ManualClock
from .security_harness import make_token


def source(clock: ManualClock, lifetime: float, margin: float = 30.0) -> TokenSource:
    return TokenSource(lambda: make_token(exp=int(clock.time() + lifetime)), margin, clock)


async def test_refresh_is_due_a_margin_before_exp() -> None:
    clock = ManualClock(start=1000.0)
    tokens = source(clock, lifetime=300)
    await tokens.fetch()
    assert tokens.refresh_at() == 1000.0 + 300 - 30


async def test_a_token_shorter_lived_than_the_margin_is_refreshed_at_half_its_life() -> None:
    clock = ManualClock(start=1000.0)
    tokens = source(clock, lifetime=20)
    await tokens.fetch()
    assert tokens.refresh_at() == 1000.0 + 10
    tiny = source(clock, lifetime=1)
    await tiny.fetch()
    assert tiny.refresh_at() == 1000.0 + MIN_REFRESH_INTERVAL


async def test_a_token_fetched_long_ago_is_due_at_once() -> None:
    clock = ManualClock(start=1000.0)
    tokens = source(clock, lifetime=60, margin=10)
    await tokens.fetch()
    clock.advance(55)  # past exp - margin: due, not pushed further out
    due = tokens.refresh_at()
    assert due is not None and due <= clock.time()


async def test_opaque_tokens_have_no_refresh_time() -> None:
    tokens = TokenSource(lambda: "opaque-token", 30.0, ManualClock())
    assert await tokens.fetch() == "opaque-token"
    assert tokens.refresh_at() is None and token_expiry("opaque-token") is None


@pytest.mark.parametrize("provider", [lambda: "", lambda: None, lambda: 1 / 0])
async def test_a_provider_without_a_token_is_a_provider_error(provider: object) -> None:
    tokens = TokenSource(provider, 30.0, ManualClock())  # type: ignore[arg-type]
    with pytest.raises(TokenProviderError):
        await tokens.fetch()
    assert tokens.token is None
