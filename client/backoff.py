"""Reconnect delays: capped exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential bound) spreads the reconnects
of many clients that lost the same server, instead of having them all return at once.
Defaults follow Centrifugo's client: 0.5 s growing to 20 s, unlimited attempts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect policy.

    Attributes:
        base: Bound of the first delay, in seconds.
        cap: Largest bound, in seconds; no delay ever exceeds it.
        multiplier: Growth of the bound per failed attempt.
        max_attempts: Consecutive failed attempts before the client gives up and goes
            OFFLINE (None: never give up).
    """

    base: float = 0.5
    cap: float = 20.0
    multiplier: float = 2.0
    max_attempts: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, got {self.max_attempts}")

    def bound(self, attempt: int) -> float:
        """Upper bound of the delay before attempt number `attempt` (1-based)."""
        exponent = min(max(attempt - 1, 0), 64)  # bounded: no float overflow on long outages
        return min(self.cap, self.base * self.multiplier**exponent)

    def delay(self, attempt: int) -> float:
        """A full-jitter delay before attempt `attempt`: uniform in [0, bound(attempt)]."""
        return self.rng.uniform(0.0, self.bound(attempt))

    def exhausted(self, failures: int) -> bool:
        """True once `failures` consecutive attempts failed and the policy says stop."""
        return self.max_attempts is not None and failures >= self.max_attempts
