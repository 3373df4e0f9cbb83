"""The asyncio driver of one multiplexed connection, shared by both ends.

As python-websockets keeps one asyncio ``Connection`` over its sans-I/O protocol, this
is the one driver over the sans-I/O multiplexers of ``wire.mux``: a reader task feeds
received WebSocket messages to the multiplexer and hands its events to the end's
``_dispatch``; a single writer task sends everything the multiplexer queued, so frames
queued while the socket is busy go out coalesced into one WebSocket message
(``wire.write_queue``). Writers of call messages wait for the call's flow-control window and
while more than ``send_buffer_bytes`` are queued: a slow reader slows the sender down
instead of growing memory.

The ends configure it by subclassing (``server.ws.connection.ServerConnectionDriver``,
``client._ws_connection.ClientConnectionDriver``): they dispatch call events to their
own call objects and say what a lost connection means for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from websockets.exceptions import ConnectionClosed

from wire.events import Event, FrameDiscarded, PeerProtocolError
from wire.flag import Flag
from wire.mux import CallStateError, Multiplexer
from wire.protocol import CLOSE_INTERNAL_ERROR, CLOSE_POLICY_VIOLATION, KEEPALIVE_TIMEOUT
from wire.send_now import send_now
from wire.tasks import cancel_and_wait
from wire.transport import MessageTransport

_LOG = logging.getLogger(__name__)

# How receivers from before ConnectionSettings/Ping describe a call-0 frame they discard.
_PRE_KEEPALIVE_DISCARD = "is not valid on call 0"

MultiplexerT = TypeVar("MultiplexerT", bound=Multiplexer[Any])

# At most one log line about discarded frames per connection per this many seconds.
DISCARD_LOG_INTERVAL_SECONDS = 10.0


class ConnectionDriver(Generic[MultiplexerT]):
    """Runs one multiplexer over one message transport until the transport closes.

    Subclasses implement ``_dispatch`` (one event from the multiplexer; must not wait)
    and ``_connection_lost`` (called once, when the connection is over for any reason).
    """

    # Slots: a server holds one driver per connection (an instance dict of this many
    # attributes costs ~1.5 KiB).
    __slots__ = (
        "_clock",
        "_closing",
        "_data_ready",
        "_direct",
        "_drained",
        "_flush_scheduled",
        "_keepalive",
        "_loop",
        "_next_discard_log",
        "_peer",
        "_ping_nonce",
        "_ping_sent_at",
        "_ping_timer",
        "_space",
        "_task_prefix",
        "_transport",
        "_unlogged_discards",
        "_writing",
        "closed",
        "last_received",
        "max_pending_bytes",
        "mux",
        "send_buffer_bytes",
    )

    def __init__(
        self,
        transport: MessageTransport,
        mux: MultiplexerT,
        *,
        send_buffer_bytes: int,
        task_prefix: str = "ws",
        peer: str = "peer",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._peer = peer  # names the other end in log lines
        self._clock = clock
        self._next_discard_log = float("-inf")
        self._unlogged_discards = 0
        self._task_prefix = task_prefix  # names the writer task "<prefix>-writer"
        self.mux = mux
        self.send_buffer_bytes = send_buffer_bytes
        self._data_ready = Flag()
        self._space = Flag()
        self._space.set()
        self._drained = Flag()
        self.closed = False
        self.max_pending_bytes = 0  # high-water mark of the send buffer, for observability
        self._loop = asyncio.get_running_loop()
        self.last_received = self._loop.time()  # loop time of the last message received
        self._keepalive: tuple[float, float] | None = None  # (interval, timeout) seconds
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_sent_at = 0.0
        self._ping_nonce = 0
        self._closing: asyncio.Task[None] | None = None
        self._writing = False  # the writer task is inside transport.send
        # Transports that can take a message synchronously (websockets connections).
        self._direct = hasattr(transport, "protocol")
        self._flush_scheduled = False  # a _flush_now is due in this loop iteration

    async def run(self) -> None:
        """Serves the connection until the peer goes away, the transport fails or it is
        closed locally; then ends the end's calls (``_connection_lost``) and returns.
        The caller's task is the reader; the writer runs in a task of its own."""
        writer = asyncio.create_task(self._write_loop(), name=f"{self._task_prefix}-writer")
        try:
            await self._read_loop()
        except ConnectionClosed as exc:
            close = exc.rcvd or exc.sent
            detail = f"{close.code} {close.reason}".strip() if close else "no close frame"
            self._lost(f"connection lost ({detail})")
        except Exception as exc:  # a broken transport or driver must still end the calls
            _LOG.exception("WebSocket connection reader failed")
            self._lost(f"connection failed: {exc!r}")
            try:
                await self._transport.close(CLOSE_INTERNAL_ERROR, "internal error")
            except Exception:  # the transport is broken already: note it, end the calls
                _LOG.warning("closing the failed WebSocket connection failed", exc_info=True)
        finally:
            self._lost("connection lost")
            await cancel_and_wait(writer, _LOG, "the WebSocket connection writer")

    async def send_message(
        self, call_id: int, payload: bytes, window: asyncio.Event | Flag
    ) -> None:
        """Queues one call message, first waiting for the call's flow-control window
        (``window`` is set when it reopens) and while the send buffer holds
        ``send_buffer_bytes`` or more. Raises MessageTooLargeError over the peer's limit,
        CallStateError once the call or the connection is over."""
        mux = self.mux
        while not mux.can_send(call_id) and not self.closed:
            window.clear()
            await window.wait()
        while mux.write_queue.pending_bytes >= self.send_buffer_bytes and not self.closed:
            self._space.clear()
            await self._space.wait()
        if self.closed:
            raise CallStateError("connection closed")
        mux.send_message(call_id, payload)
        self.max_pending_bytes = max(self.max_pending_bytes, mux.write_queue.pending_bytes)
        self.schedule_flush()

    def schedule_flush(self) -> None:
        """The multiplexer has queued frames that need no waiting for (a fast path of the
        end). Over a transport that can take a message synchronously
        (``wire.send_now``), they are written by a callback at the end of this loop
        iteration instead of by the writer task (woken only if they cannot go at once):
        a fan-out writes to many connections without a task switch per connection, and
        what one iteration queued for a connection still goes out as one batch."""
        if not self._direct:
            self._data_ready.set()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        """Writes what is queued straight to the transport when the writer task is idle
        and the transport takes it without waiting (see ``schedule_flush``); whatever
        remains wakes the writer."""
        self._flush_scheduled = False
        mux = self.mux
        if self.closed:
            return
        queue = mux.write_queue
        if not self._writing:
            while (batch := queue.take_batch()) is not None:
                if not send_now(self._transport, batch):
                    queue.push_front(batch)
                    break
        if queue:
            self._data_ready.set()
        elif not self._writing:
            self._space.set()  # senders waiting for room in the send buffer may go on

    def consumed(self, call_id: int, payload_bytes: int) -> None:
        """The application took one received message of the call: widen the peer's
        flow-control window for it (``payload_bytes``: the message's length)."""
        mux = self.mux
        mux.consumed(call_id, payload_bytes)
        if mux.write_queue:  # a window update is due
            self.schedule_flush()

    def flush(self) -> None:
        """Wakes the writer: the multiplexer has queued frames."""
        self._data_ready.set()

    async def drain(self, timeout: float) -> None:
        """Waits until everything queued so far was handed to the transport (or the
        writer stopped), for at most ``timeout`` seconds."""
        self._drained.clear()
        self._data_ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout)

    def start_keepalive(self, interval: float, timeout: float) -> None:
        """Sends an application-level Ping (call 0) every ``interval`` seconds. When
        nothing at all arrives within ``timeout`` seconds after a Ping, the peer is dead:
        the calls end (``_connection_lost`` with ``keepalive ping timeout``) and the
        transport is closed with 1011, as websockets does for its control pings."""
        self.stop_keepalive()
        if self.closed:
            return
        self._keepalive = (interval, timeout)
        self._ping_timer = self._loop.call_later(interval, self._send_ping)

    @property
    def keepalive_active(self) -> bool:
        """Whether call-0 Pings are being sent (``start_keepalive``, not stopped since)."""
        return self._keepalive is not None

    def stop_keepalive(self) -> None:
        """Stops sending application-level Pings."""
        self._keepalive = None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    # For subclasses.

    def _peer_predates_keepalive(self, event: PeerProtocolError) -> bool:
        """Whether the peer's ProtocolError says it discarded one of our call-0 frames as
        an implementation from before ConnectionSettings and Ping does ("frame kind
        'settings' is not valid on call 0"); if so, it would discard Pings too, so none
        are sent to it from now on (docs/protocol.md, "Compatibility")."""
        if not event.details.endswith(_PRE_KEEPALIVE_DISCARD):
            return False
        self.stop_keepalive()
        return True

    def _dispatch(self, event: Event) -> None:
        raise NotImplementedError

    def _connection_lost(self, details: str) -> None:
        raise NotImplementedError

    def _log_discards(self, event: FrameDiscarded | PeerProtocolError) -> None:
        """Logs frames dropped by either end: at most one WARNING per connection per
        DISCARD_LOG_INTERVAL_SECONDS, counting the frames of the lines held back."""
        self._unlogged_discards += event.count if isinstance(event, FrameDiscarded) else 1
        if self.mux.violation is not None:
            return  # the line that closes the connection says it all
        now = self._clock()
        if now < self._next_discard_log:
            return
        self._next_discard_log = now + DISCARD_LOG_INTERVAL_SECONDS
        count, self._unlogged_discards = self._unlogged_discards, 0
        side = "discarded" if isinstance(event, FrameDiscarded) else "peer discarded"
        _LOG.warning(
            "%s: %s %d frame(s) in the last %g s, latest: %s",
            self._peer,
            side,
            count,
            DISCARD_LOG_INTERVAL_SECONDS,
            event.details,
        )

    async def _close_for_violation(self, reason: str) -> None:
        """The peer exceeded the invalid-frame budget: flush the last ProtocolError, close
        with 1008 and ``reason``, and end the calls."""
        _LOG.warning("%s: closing the connection (1008): %s", self._peer, reason)
        self._lost(f"connection closed: {reason}")
        await self.drain(1.0)
        with contextlib.suppress(ConnectionClosed):
            await self._transport.close(CLOSE_POLICY_VIOLATION, reason)

    def _lost(self, details: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._space.set()
        self.stop_keepalive()
        self._connection_lost(details)

    def _send_ping(self) -> None:
        if self._keepalive is None or self.closed:
            return
        self._ping_sent_at = self._loop.time()
        self._ping_nonce += 1
        self.mux.send_ping(self._ping_nonce)
        self._data_ready.set()
        self._ping_timer = self._loop.call_later(self._keepalive[1], self._check_answer)

    def _check_answer(self) -> None:
        if self._keepalive is None or self.closed:
            return
        if self.last_received >= self._ping_sent_at:
            next_ping = self._ping_sent_at + self._keepalive[0]
            self._ping_timer = self._loop.call_at(next_ping, self._send_ping)
            return
        self._lost(KEEPALIVE_TIMEOUT)
        fail_now = getattr(self._transport, "fail_now", None)  # wire.keepalive
        if fail_now is not None:
            fail_now(CLOSE_INTERNAL_ERROR, KEEPALIVE_TIMEOUT)  # no closing handshake
            return
        self._closing = self._loop.create_task(
            self._transport.close(CLOSE_INTERNAL_ERROR, KEEPALIVE_TIMEOUT)
        )
        self._closing.add_done_callback(_log_failed_close)

    # Internals.

    async def _read_loop(self) -> None:
        transport, mux, dispatch = self._transport, self.mux, self._dispatch
        clock = self._loop.time
        while True:
            message = await transport.recv()
            self.last_received = clock()
            for event in mux.receive(message):
                dispatch(event)
            if mux.write_queue:  # answers (Pong, ends, window updates) go out
                self.schedule_flush()
            if mux.violation is not None:
                await self._close_for_violation(mux.violation)
                return

    async def _write_loop(self) -> None:
        try:
            await self._write_batches()
        except ConnectionClosed:
            pass  # the reader notices too and ends the calls
        finally:
            self._drained.set()  # nothing more will be flushed

    async def _write_batches(self) -> None:
        mux, transport = self.mux, self._transport
        while True:
            batch = mux.data_to_send()
            if batch is None:
                self._space.set()
                self._drained.set()
                self._data_ready.clear()
                await self._data_ready.wait()
                continue
            if mux.write_queue.pending_bytes < self.send_buffer_bytes:
                self._space.set()  # refill while this batch is in flight
            self._writing = True
            try:
                await transport.send(batch)
            finally:
                self._writing = False


def _log_failed_close(task: asyncio.Task[None]) -> None:
    """Done callback of a background close: a failure is logged (WARNING, with its
    traceback); the connection is gone either way."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        _LOG.warning("closing the dead WebSocket connection failed", exc_info=error)
