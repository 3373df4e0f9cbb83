"""Sending the outbox: in order, a bounded window in flight, retries with the same id.

A `PublishPump` lives for one connection. It sends outbox entries in sequence order and
removes each from the outbox when its acknowledgement arrives. When the connection
drops, unacknowledged entries simply stay in the outbox and the next connection's pump
sends them again from the start; the server answers a repeat with the first offset and
`duplicate=True`, so each delta takes effect once.

Order within a collection: the server may refuse any publish for now (rate_limited,
broker_unavailable). A server whose `ServerInfo.publish_holds` is set then refuses every
later publish of that collection on the stream (ABORTED, `publish_held`) until the
refused one comes back, so publishes of one collection are pipelined up to the window;
on any refusal for now the pump pauses until `retry_after` and sends again from the
oldest refused entry, in order. An older server accepts the next publish it reads, so
against it a collection never has more than one publish in flight: a refused-for-now
publish holds its collection (head of line) until it is sent again after `retry_after`,
first, and the entries after it follow in order. Publishes of different collections
share the window either way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Generator
from typing import Any

from syncwire.v1 import sync_pb2, types_pb2

from .errors import MessageTooLargeError, RequestFailed, SendBufferFullError, SyncError
from .link import SyncLink
from .outbox import Outbox, OutboxEntry
from .stats import ClientStats

log = logging.getLogger(__name__)


class PendingPublish:
    """A publish in the outbox; `await` it for the server's acknowledgement.

    Cancelling the wait does not withdraw the publish: it stays in the outbox until
    acknowledged (or refused for good).
    """

    def __init__(self, entry: OutboxEntry) -> None:
        assert entry.waiter is not None
        self._entry = entry
        self._waiter = entry.waiter

    @property
    def client_message_id(self) -> str:
        """The id the server de-duplicates this publish by."""
        return self._entry.client_message_id

    @property
    def collection_id(self) -> str:
        """The collection published to."""
        return self._entry.delta.collection_id

    def done(self) -> bool:
        """True once acknowledged or refused for good."""
        return self._waiter.done()

    @property
    def acknowledged(self) -> bool:
        """True once the server acknowledged the publish."""
        waiter = self._waiter
        return waiter.done() and not waiter.cancelled() and waiter.exception() is None

    @property
    def last_error(self) -> SyncError | None:
        """Why the latest attempt was refused for now (it is being retried), or None."""
        return self._entry.last_error

    async def first_refusal(self) -> SyncError:
        """The first retryable refusal of this publish (`last_error` at that moment),
        once there is one; the client goes on retrying. For a caller that gives up
        sooner than the client, such as a one-shot command."""
        await self._entry.refused.wait()
        assert self._entry.last_error is not None
        return self._entry.last_error

    async def wait(self) -> sync_pb2.PublishAck:
        """The acknowledgement (offset, epoch, duplicate flag); raises RequestFailed if
        the server refused the delta, ClientClosedError if the client closed first."""
        return await asyncio.shield(self._waiter)

    def __await__(self) -> Generator[Any, None, sync_pb2.PublishAck]:
        return self.wait().__await__()


RejectHandler = Callable[[OutboxEntry, RequestFailed], None]

_REQUEST_OVERHEAD = 32
"""Upper bound of what a SyncRequest adds around its delta (request id, tags, lengths)."""


def check_size(delta: types_pb2.Delta, limit: int) -> None:
    """Raises MessageTooLargeError when `delta` cannot fit a server message of `limit`
    bytes (0: the limit is unknown)."""
    size = delta.ByteSize() + _REQUEST_OVERHEAD
    if limit and size > limit:
        raise MessageTooLargeError(size, limit, delta.collection_id)


class PublishPump:
    """Sends one connection's share of the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        link: SyncLink,
        window: int,
        on_reject: RejectHandler,
        stats: ClientStats,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._slots = asyncio.Semaphore(window)
        self._on_reject = on_reject
        self._cursor = 0  # highest seq sent on this link
        self._resume = asyncio.Event()
        self._resume.set()
        self._stats = stats
        self._held: dict[str, int] = {}
        """Collection id -> seq of its publish in flight or refused for now."""
        self._released = asyncio.Event()
        """Set when a collection's hold ends."""
        self._pipelined = link.welcome.server_info.publish_holds
        """The server keeps publish order across refusals: no per-collection hold here."""
        self._round = 0
        """Sends since the last resend from a refused entry (pipelined mode)."""
        self._rewind_seq: int | None = None
        """Oldest entry refused for now in this round, to resend from (pipelined mode)."""
        self._rewind: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Sends outbox entries on the link, in order, with at most `window`
        unacknowledged; runs until the link ends.
        """
        while self._link.alive:
            await self._resume.wait()
            entry = await self._outbox.wait_for_entry_after(lambda: self._cursor)
            cursor = self._cursor
            if not self._pipelined:
                await self._wait_released(entry.delta.collection_id)
            await self._slots.acquire()
            if (
                not self._resume.is_set()
                or self._cursor != cursor  # rewound meanwhile: look again from there
                or not self._outbox.contains(entry)
            ):
                self._slots.release()
                continue
            self._cursor = entry.seq
            try:
                check_size(entry.delta, self._link.welcome.server_info.max_message_bytes)
            except MessageTooLargeError as error:
                self._slots.release()
                self._refuse(entry, error)
                continue
            entry.attempts += 1
            try:
                reply = self._link.request(publish=sync_pb2.Publish(delta=entry.delta))
            except SendBufferFullError:
                self._slots.release()
                entry.attempts -= 1
                self._cursor = entry.seq - 1  # send it again once there is room
                await self._link.wait_for_send_room()
                continue
            except SyncError:
                self._slots.release()
                return  # the link ended; the next one resends
            self._stats.publishes_sent += 1
            if not self._pipelined:
                self._held[entry.delta.collection_id] = entry.seq
            reply.add_done_callback(functools.partial(self._answered, entry, self._round))

    async def _wait_released(self, collection_id: str) -> None:
        """Waits while `collection_id` has a publish in flight or refused for now."""
        while collection_id in self._held:
            self._released.clear()
            await self._released.wait()

    def _release(self, entry: OutboxEntry) -> None:
        """Ends the hold `entry` has on its collection, if it has one."""
        collection_id = entry.delta.collection_id
        if self._held.get(collection_id) == entry.seq:
            del self._held[collection_id]
            self._released.set()

    def _answered(
        self, entry: OutboxEntry, sent_in: int, future: asyncio.Future[sync_pb2.SyncResponse]
    ) -> None:
        self._slots.release()
        if future.cancelled() or future.exception() is not None:
            return  # connection lost: the entry stays and is sent again by the next pump
        response = future.result()
        if response.HasField("publish_ack"):
            self._release(entry)
            self._outbox.acknowledge(entry, response.publish_ack)
            return
        error = RequestFailed.from_proto(response.error)
        if error.retryable:
            entry.last_error = error
            entry.refused.set()
            if not self._pipelined:
                self._retry_from(entry, error.retry_after or 1.0)
            elif sent_in == self._round:  # else already sent again from an older entry
                self._rewind_to(entry, error.retry_after or 1.0)
            return
        self._release(entry)
        self._refuse(entry, error)

    def _refuse(self, entry: OutboxEntry, error: RequestFailed) -> None:
        log.warning("publish refused: %s", error, extra={"collection_id": error.collection_id})
        self._outbox.reject(entry, error)
        self._on_reject(entry, error)

    def _retry_from(self, entry: OutboxEntry, delay: float) -> None:
        """Sends `entry` and everything after it again once `delay` has passed (the
        server de-duplicates whatever it already accepted); until then `entry` keeps its
        collection held, so no later publish of the collection overtakes it."""
        self._resume.clear()

        def resume() -> None:
            self._cursor = min(self._cursor, entry.seq - 1)
            self._release(entry)
            self._resume.set()
            self._outbox.wake()  # the pump may be waiting for an entry after the old cursor

        asyncio.get_running_loop().call_later(delay, resume)

    def _rewind_to(self, entry: OutboxEntry, delay: float) -> None:
        """Pipelined mode: pauses sending and, once `delay` seconds have passed (the
        latest of this round's refusals), sends again from the oldest entry refused for
        now in this round, in order. The server refused every later publish of that
        entry's collection (publish_held) and de-duplicates whatever of other
        collections it accepted. Answers to this round's sends that arrive after the
        resend are stale: a refusal among them does not rewind again."""
        self._resume.clear()
        if self._rewind_seq is None or entry.seq < self._rewind_seq:
            self._rewind_seq = entry.seq
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if self._rewind is not None:
            if self._rewind.when() >= when:
                return
            self._rewind.cancel()
        self._rewind = loop.call_at(when, self._resend)

    def _resend(self) -> None:
        assert self._rewind_seq is not None
        self._cursor = min(self._cursor, self._rewind_seq - 1)
        self._rewind_seq = None
        self._rewind = None
        self._round += 1
        self._resume.set()
        self._outbox.wake()  # the pump may be waiting for an entry after the old cursor
