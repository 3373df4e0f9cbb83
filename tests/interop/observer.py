"""What the interop servicer's handlers saw: how each handler ended, per call.

The harness compares these records across transports, so a transport that ends a
handler differently from grpc.aio (a CancelledError where grpc.aio ends the request
iterator, an exception type grpc.aio does not raise) fails the comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HandlerRecord:
    """How one handler invocation ended.

    ``outcome`` is ``"returned"`` or the name of the exception type that left the
    handler; ``requests_ended`` says whether the handler saw its request stream end
    (normal end of ``async for`` over the requests) before that.
    """

    method: str
    outcome: str
    requests_ended: bool


class HandlerObserver:
    """Collects HandlerRecords; tests wait for them (no sleeping)."""

    def __init__(self) -> None:
        self.records: list[HandlerRecord] = []
        self._changed = asyncio.Event()

    @contextlib.contextmanager
    def handler(self, method: str) -> Iterator[HandlerProgress]:
        """Wraps one handler body; records how it ended (and re-raises)."""
        progress = HandlerProgress()
        try:
            yield progress
        except BaseException as exc:
            self._add(HandlerRecord(method, type(exc).__name__, progress.requests_ended))
            raise
        self._add(HandlerRecord(method, "returned", progress.requests_ended))

    def _add(self, record: HandlerRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[HandlerRecord]:
        """The first ``count`` records, waiting up to ``timeout`` seconds for them."""
        async with asyncio.timeout(timeout):
            while len(self.records) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.records[:count]

    def clear(self) -> None:
        """Forgets every record."""
        self.records.clear()


class HandlerProgress:
    """What a handler reports while it runs."""

    def __init__(self) -> None:
        self.requests_ended = False
