"""A session's publish order per collection across refusals for now.

Clients pipeline publishes on one Sync stream. When the server refuses one for now
(any refusal with `retry_after_ms` > 0: `rate_limited`, `broker_unavailable`,
`hook_failed`, ...) it goes on reading, so without a rule a later publish of the same
collection would be stored before the refused one. `PublishHolds` is that rule: the
refused publish *holds* its collection on the session, and every later publish of the
collection with another `client_message_id` is refused for now too (ABORTED,
`publish_held`, uncharged, unapplied) until the held one arrives again.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cachetools import TTLCache

from syncwire.v1 import types_pb2

from .errors import RequestError

PUBLISH_HELD = "publish_held"
"""Reason code of a publish refused because an earlier one of its collection is held."""

HOLD_SECONDS = 60.0
"""How long after its refusal a hold lasts when the held publish does not come back."""

MAX_HOLDS = 256
"""Collections a session holds at once; beyond it the least recently used hold ends."""


@dataclass(frozen=True, slots=True)
class _Hold:
    client_message_id: bytes
    """Digest of the held publish's client_message_id (`_digest`)."""
    until: float
    """When the refusal's wait ends (holds clock, seconds)."""


def _digest(text: str) -> bytes:
    """16 bytes standing for `text`: what a hold keeps of ids a client chose, whatever
    their length (a refused request's ids are not validated yet)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class PublishHolds:
    """One session's holds: collection id -> the publish refused for now that holds it.

    `clock` (monotonic seconds, default `time.monotonic`) drives both the expiry
    (`ttl` seconds after the refusal) and the remaining wait held publishes are told;
    at most `max_holds` collections are held (the least recently used hold ends first),
    each kept as two 16-byte digests, so a session's holds take a few hundred bytes
    each, whatever the ids' lengths.
    Publishes without a `client_message_id` are never held and hold nothing: the server
    cannot tell their retry from a new publish.
    """

    def __init__(
        self,
        *,
        ttl: float = HOLD_SECONDS,
        max_holds: int = MAX_HOLDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._holds: TTLCache[bytes, _Hold] = TTLCache(max_holds, ttl, timer=clock)

    def __len__(self) -> int:
        self._holds.expire()
        return len(self._holds)

    def check(self, delta: types_pb2.Delta) -> None:
        """Lets `delta` through, ending the hold when it is the held publish itself;
        raises RequestError(ABORTED, "publish_held", retry_after_ms = the remaining wait
        of the refusal that holds the collection, at least 1) when another publish of
        its collection holds it."""
        if not self._holds or not delta.client_message_id:  # the common case: no hashing
            return
        collection = _digest(delta.collection_id)
        hold = self._holds.get(collection)
        if hold is None:
            return
        if hold.client_message_id == _digest(delta.client_message_id):
            del self._holds[collection]
            return
        wait = max(1, math.ceil((hold.until - self._clock()) * 1000))
        raise RequestError(
            grpc.StatusCode.ABORTED,
            PUBLISH_HELD,
            f"an earlier publish of {delta.collection_id!r} on this stream was refused "
            f"for now; send it again first, then this one (retry in {wait} ms)",
            collection_id=delta.collection_id,
            retry_after_ms=wait,
        )

    def refused(self, delta: types_pb2.Delta, error: RequestError) -> None:
        """Records that `delta` was refused with `error`: a refusal for now
        (retry_after_ms > 0) of a publish with a client_message_id holds its collection,
        unless another publish holds it already."""
        if error.retry_after_ms <= 0 or not delta.client_message_id:
            return
        collection = _digest(delta.collection_id)
        if error.reason_code == PUBLISH_HELD or collection in self._holds:
            return
        self._holds[collection] = _Hold(
            _digest(delta.client_message_id), self._clock() + error.retry_after_ms / 1000
        )
