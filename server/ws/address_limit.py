"""Counting open connections per client address against a limit."""

from __future__ import annotations


class AddressCounter:
    """Counts open connections per client address against a limit (0 = unlimited).
    ``None`` addresses (sockets without one) are never counted nor refused."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def count(self, address: str | None) -> int:
        """Connections open from ``address``."""
        return self._counts.get(address, 0) if address is not None else 0

    def full(self, address: str | None) -> bool:
        """Whether one more connection from ``address`` would exceed the limit."""
        return self.limit > 0 and address is not None and self.count(address) >= self.limit

    def add(self, address: str | None) -> None:
        """One more connection from ``address``."""
        if address is not None:
            self._counts[address] = self._counts.get(address, 0) + 1

    def remove(self, address: str | None) -> None:
        """One connection from ``address`` fewer."""
        if address is None:
            return
        left = self._counts.get(address, 0) - 1
        if left > 0:
            self._counts[address] = left
        else:
            self._counts.pop(address, None)
