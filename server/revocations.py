"""Revoked tokens: by token id (`jti`) or by user, each until a time.

A user is a session's user id: its token's `sub`, or (authentication off) the user id
the connect hook attached. Every node holds the same list (the admin API's RevokeToken
reaches every node through the broker, see `server.admin_commands`); `SyncCore` checks
it whenever a token is authenticated and when the connect hook names the user, on every
transport, and ends the sessions it covers.
"""

from __future__ import annotations

from typing import Final

from .auth import Principal

MAX_REVOCATIONS: Final = 100_000
"""Most revocations kept per kind; beyond it the one ending soonest is forgotten."""


class Revocations:
    """Token ids and users refused until a time (POSIX seconds of the authenticator's
    clock)."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._users: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._tokens) + len(self._users)

    def revoke(self, *, jti: str = "", user_id: str = "", until: float) -> None:
        """Refuses the token `jti`, or every token of `user_id`, until `until`."""
        table, key = (self._tokens, jti) if jti else (self._users, user_id)
        table[key] = max(until, table.get(key, 0.0))
        if len(table) > MAX_REVOCATIONS:
            del table[min(table, key=table.__getitem__)]

    def refuses_user(self, user_id: str, now: float) -> bool:
        """Whether every session of `user_id` (not "") is refused at `now`."""
        return bool(user_id) and bool(self._users) and self._users.get(user_id, 0.0) > now

    def refuses(self, principal: Principal, now: float) -> bool:
        """Whether `principal`'s token (its `jti`, or its user `sub`) is revoked at `now`."""
        if self.refuses_user(principal.subject, now):
            return True
        jti = principal.claims.get("jti")
        return bool(self._tokens) and isinstance(jti, str) and self._tokens.get(jti, 0.0) > now

    def entries(self) -> list[tuple[str, str, float]]:
        """Every revocation as (jti, user_id, until); one of the first two is ""."""
        tokens = [(jti, "", until) for jti, until in self._tokens.items()]
        return tokens + [("", user, until) for user, until in self._users.items()]

    def prune(self, now: float) -> None:
        """Forgets revocations that ended."""
        for table in (self._tokens, self._users):
            for key in [key for key, until in table.items() if until <= now]:
                del table[key]
