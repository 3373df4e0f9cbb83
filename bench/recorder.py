"""Per-message bookkeeping on the receiving side: delivery counts inside the measured
window, latency of messages published inside it, and ordering (gaps, reordering)."""

from __future__ import annotations

from dataclasses import dataclass, field
from time import monotonic_ns
from typing import Any

from bench.histogram import Histogram

NEVER = 1 << 62


@dataclass(slots=True)
class Window:
    """The measured interval [t0, t1) on CLOCK_MONOTONIC, in ns; empty until armed."""

    t0: int = NEVER
    t1: int = NEVER
    latency: Histogram = field(default_factory=Histogram)


class Tracker:
    """Sink of one subscriber: counts what arrives and checks it arrives in order."""

    __slots__ = ("gaps", "in_window", "last", "out_of_order", "received", "window")

    def __init__(self, window: Window) -> None:
        self.window = window
        self.last = 0
        self.received = 0
        self.in_window = 0
        self.gaps = 0
        self.out_of_order = 0

    def __call__(self, seq: int, sent_ns: int) -> None:
        now = monotonic_ns()
        window = self.window
        if window.t0 <= now < window.t1:
            self.in_window += 1
        if window.t0 <= sent_ns < window.t1:
            window.latency.add((now - sent_ns) // 1000)
        self.received += 1
        last = self.last
        if seq != last + 1:
            if seq <= last:
                self.out_of_order += 1
                return
            self.gaps += seq - last - 1
        self.last = seq


def summarize(trackers: list[Tracker], expected_last: int) -> dict[str, Any]:
    """Totals over a worker's subscribers for the parent to merge."""
    return {
        "subscribers": len(trackers),
        "in_window": sum(t.in_window for t in trackers),
        "received": sum(t.received for t in trackers),
        "expected": expected_last * len(trackers),
        "missing": sum(max(0, expected_last - t.last) + t.gaps for t in trackers),
        "out_of_order": sum(t.out_of_order for t in trackers),
    }


class EchoTracker:
    """Sink of the publisher's own subscription: the highest sequence echoed back, so
    the publisher can bound how many messages it has in flight."""

    __slots__ = ("_waiter", "_waiting_for", "last")

    def __init__(self) -> None:
        self.last = 0
        self._waiter: Any = None
        self._waiting_for = NEVER

    def __call__(self, seq: int, sent_ns: int) -> None:
        if seq > self.last:
            self.last = seq
            if seq >= self._waiting_for and self._waiter is not None:
                if not self._waiter.done():
                    self._waiter.set_result(None)

    async def wait_for(self, seq: int, loop: Any) -> None:
        """Returns once `seq` (or a later one) has been echoed."""
        if self.last >= seq:
            return
        self._waiting_for = seq
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._waiting_for = NEVER
