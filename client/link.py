"""One open Sync stream: request ids and replies, heartbeats and liveness.

A `SyncLink` lives for one connection. It hands every server message, in order, to the
client's handler before resolving the reply future of the request it answers, so state
derived from a reply (a subscription's epoch and offset) is in place before the next
message (the first replayed delta) is handled. The link ends exactly once, with the
`SyncError` that says why; everything waiting on it then fails with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from wire.tasks import cancel_and_wait

from .endpoints import Endpoint
from .errors import (
    ConnectionLost,
    HeartbeatTimeout,
    SendBufferFullError,
    ServerDisconnected,
    SyncError,
    from_rpc_error,
)
from .stats import ClientStats

log = logging.getLogger(__name__)

ResponseHandler = Callable[["SyncLink", sync_pb2.SyncResponse], None]
"""Handles one server message; must not block (the link reads nothing meanwhile)."""

_MIN_TICK = 0.02


class SyncLink:
    """The client's side of one Sync stream on one channel."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        endpoint: Endpoint,
        handler: ResponseHandler,
        *,
        metadata: tuple[tuple[str, str], ...] = (),
        stats: ClientStats | None = None,
        send_buffer_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.channel = channel
        self.endpoint = endpoint
        self.stub = sync_pb2_grpc.SyncServiceStub(channel)
        self._handler = handler
        self._metadata = metadata
        self._loop = asyncio.get_running_loop()
        self._requests: asyncio.Queue[sync_pb2.SyncRequest | None] = asyncio.Queue()
        self._send_buffer_bytes = send_buffer_bytes
        self._queued_bytes = 0
        self._send_room = asyncio.Event()
        self._send_room.set()
        self._pending: dict[int, asyncio.Future[sync_pb2.SyncResponse]] = {}
        self._next_request_id = 0
        self._call: (
            grpc.aio.StreamStreamCall[sync_pb2.SyncRequest, sync_pb2.SyncResponse] | None
        ) = None
        self._tasks: list[asyncio.Task[None]] = []
        self._disconnect: sync_pb2.Disconnect | None = None
        self.last_received = self._loop.time()
        self.welcome = types_pb2.Welcome()
        self.ended: asyncio.Future[SyncError] = self._loop.create_future()
        self._stats = stats or ClientStats()

    # ------------------------------------------------------------------ opening

    async def open(self, timeout: float) -> types_pb2.Welcome:
        """Starts the stream and waits for the server's Welcome."""
        call = self._call = self.stub.Sync(self._request_stream(), metadata=self._metadata or None)
        try:
            async with asyncio.timeout(timeout):
                first = await call.read()
        except TimeoutError:
            self._end(
                ConnectionLost(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no Welcome from {self.endpoint.url} within {timeout:g} s",
                )
            )
            raise self.ended.result() from None
        except grpc.aio.AioRpcError as error:
            self._end(from_rpc_error(error, what=f"connecting to {self.endpoint.url}"))
            raise self.ended.result() from None
        if not isinstance(first, sync_pb2.SyncResponse) or not first.HasField("welcome"):
            self._end(
                ConnectionLost(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{self.endpoint.url} did not start the stream with a Welcome",
                )
            )
            raise self.ended.result()
        self.welcome = first.welcome
        self.last_received = self._loop.time()
        self._tasks.append(asyncio.create_task(self._read(), name="syncwire-link-reader"))
        return self.welcome

    def start_heartbeats(self, interval: float, timeout: float) -> None:
        """Sends a Heartbeat every `interval` s; ends the link after `timeout` s without
        any message from the server."""
        self._tasks.append(
            asyncio.create_task(self._liveness(interval, timeout), name="syncwire-heartbeat")
        )

    async def _request_stream(self) -> AsyncIterator[sync_pb2.SyncRequest]:
        while (request := await self._requests.get()) is not None:
            self._queued_bytes -= request.ByteSize()
            if self._queued_bytes < self._send_buffer_bytes:
                self._send_room.set()
            yield request

    async def wait_for_send_room(self) -> None:
        """Returns once requests may be queued again (or the link ended)."""
        while not self._send_room.is_set() and not self.ended.done():
            ended: asyncio.Future[SyncError] = self.ended
            room = asyncio.ensure_future(self._send_room.wait())
            await asyncio.wait((room, ended), return_when=asyncio.FIRST_COMPLETED)
            room.cancel()

    # ----------------------------------------------------------------- requests

    @property
    def alive(self) -> bool:
        """True until the link ended (see `ended`)."""
        return not self.ended.done()

    def request(self, **kind: Any) -> asyncio.Future[sync_pb2.SyncResponse]:
        """Sends a request; the future gets its reply (an answer or an Error message),
        or the link's end error."""
        request_id = self.send(**kind)
        future: asyncio.Future[sync_pb2.SyncResponse] = self._loop.create_future()
        future.add_done_callback(_mark_retrieved)
        self._pending[request_id] = future
        return future

    def send(self, **kind: Any) -> int:
        """Sends a request that expects no answer; returns its request id. Raises the
        link's end error once it ended, and `SendBufferFullError` while more than
        `send_buffer_bytes` of requests wait to be sent (one request alone always fits)."""
        if self.ended.done():
            raise self.ended.result()
        request = sync_pb2.SyncRequest(request_id=self._next_request_id + 1, **kind)
        size = request.ByteSize()
        if self._queued_bytes and self._queued_bytes + size > self._send_buffer_bytes:
            self._send_room.clear()
            raise SendBufferFullError(self._send_buffer_bytes)
        self._next_request_id += 1
        self._queued_bytes += size
        self._requests.put_nowait(request)
        return self._next_request_id

    def is_pending(self, request_id: int) -> bool:
        """Whether request `request_id` still awaits its reply."""
        return request_id in self._pending

    # ------------------------------------------------------------------ reading

    async def _read(self) -> None:
        call = self._call
        assert call is not None
        try:
            while True:
                response = await call.read()
                if not isinstance(response, sync_pb2.SyncResponse):  # EOF: ended with OK
                    self._end(self._closed_error("the server closed the stream"))
                    return
                self.last_received = self._loop.time()
                if response.HasField("disconnect"):
                    self._disconnect = response.disconnect
                self._handler(self, response)
                future = self._pending.pop(response.request_id, None)
                if future is not None and not future.done():
                    future.set_result(response)
        except grpc.aio.AioRpcError as error:
            self._end(self._closed_error("", error))
        except asyncio.CancelledError:
            self._end(ConnectionLost(grpc.StatusCode.CANCELLED, "link closed"))
            raise
        except Exception as exc:
            log.exception("sync stream handler failed")
            self._end(
                SyncError(grpc.StatusCode.INTERNAL, f"client failed handling a message: {exc}")
            )

    def _closed_error(self, message: str, error: grpc.aio.AioRpcError | None = None) -> SyncError:
        """Why the stream ended: the server's Disconnect if it sent one."""
        if self._disconnect is not None:
            return ServerDisconnected(self._disconnect)
        if error is not None:
            return from_rpc_error(error, what="sync stream")
        return ConnectionLost(grpc.StatusCode.UNAVAILABLE, message)

    async def _liveness(self, interval: float, timeout: float) -> None:
        next_beat = self._loop.time() + interval
        while not self.ended.done():
            now = self._loop.time()
            deadline = min(next_beat, self.last_received + timeout)
            await asyncio.sleep(max(deadline - now, _MIN_TICK))
            now = self._loop.time()
            silence = now - self.last_received
            if silence >= timeout:
                log.warning(
                    "server silent, dropping connection",
                    extra={"endpoint": self.endpoint.url, "silence": round(silence, 2)},
                )
                self._end(HeartbeatTimeout(silence))
                return
            if now >= next_beat:
                next_beat = now + interval
                stamp = Timestamp()
                stamp.GetCurrentTime()
                with contextlib.suppress(SyncError):
                    self.send(heartbeat=types_pb2.Heartbeat(timestamp=stamp))
                    self._stats.heartbeats_sent += 1

    # ------------------------------------------------------------------ ending

    def fail(self, error: SyncError) -> None:
        """Ends the link with `error` (for example the heartbeat or a planned switch)."""
        self._end(error)

    def _end(self, error: SyncError) -> None:
        if self.ended.done():
            return
        self.ended.set_result(error)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        self._requests.put_nowait(None)
        if self._call is not None:
            self._call.cancel()

    async def close(self) -> None:
        """Ends the link (if it is not already) and waits for its tasks to stop."""
        self._end(ConnectionLost(grpc.StatusCode.CANCELLED, "link closed by the client"))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                await cancel_and_wait(task, log, task.get_name())


def _mark_retrieved(future: asyncio.Future[sync_pb2.SyncResponse]) -> None:
    if not future.cancelled():
        future.exception()


def supervised(link: SyncLink, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
    """Runs `work` for the life of `link`. If it fails (anything but cancellation), the
    failure is logged with its traceback and ends the link with an INTERNAL error, so the
    client reconnects and starts it again instead of carrying on without it (an outbox
    pump that died would otherwise stop flushing silently)."""
    task = asyncio.create_task(work, name=what)

    def check(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        if not link.alive:  # it failed because the link ended: nothing more to say
            log.debug("%s ended with the link: %r", what, error)
            return
        log.error("%s failed; reconnecting", what, exc_info=error)
        link.fail(SyncError(grpc.StatusCode.INTERNAL, f"{what} failed: {error!r}"))

    task.add_done_callback(check)
    return task
