"""One call being served over a WebSocket connection: requests in, handler, status out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from server.ws.context import ConnectionInfo, WebSocketServicerContext
from server.ws.handlers import invoke_handler
from wire.flag import Flag
from wire.metadata import InvocationMetadata, MetadataPairs
from wire.mux import CallStateError, MessageTooLargeError
from wire.sentinels import EOF

if TYPE_CHECKING:
    from server.ws.connection import ServerConnectionDriver

_LOG = logging.getLogger(__name__)


class CallTerminated(Exception):
    """The call already has its final status; the handler should stop."""


class ServerCall:
    """Runtime state of one call: its request queue, its handler task, its outcome.

    The handler task ends the call with the context's status; deadline expiry, client
    cancel, a protocol failure, a lost connection or shutdown end it from outside
    (``terminate``), which also cancels the task.
    """

    def __init__(
        self,
        driver: ServerConnectionDriver,
        call_id: int,
        method: str,
        metadata: InvocationMetadata,
        timeout: float | None,
        connection: ConnectionInfo,
    ) -> None:
        self._driver = driver
        self._cached_serialize = driver.serialize
        self.call_id = call_id
        self.method = method
        self._loop = asyncio.get_running_loop()
        self.context: WebSocketServicerContext[Any, Any] = WebSocketServicerContext(
            self, metadata, connection
        )
        self._requests: deque[bytes] = deque()
        self.window = Flag()  # set when the call's send window reopens
        self._half_closed = False
        self._request_ready = Flag()
        self._deserialize: Callable[[bytes], Any] = _identity
        self._serialize: Callable[[Any], bytes] = _identity
        self._done_callbacks: list[Callable[[Any], None]] = []
        self.terminated = False
        self.finished = False
        self.last_token = 0  # for SerializationCache
        self._shared_responses = True
        self.task: asyncio.Task[None] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            self._deadline = self._loop.time() + timeout
            self._timer = self._loop.call_at(self._deadline, self._expire)

    def start(self) -> None:
        """Runs the call in its own task."""
        self.task = self._loop.create_task(self._run(), name=f"ws-call-{self.call_id}")

    # Events from the connection.

    def deliver(self, payload: bytes) -> None:
        """Queues one request message (flow control bounds how many wait here)."""
        self._requests.append(payload)
        self._request_ready.set()

    def deliver_half_close(self) -> None:
        """The client sends no more requests."""
        self._half_closed = True
        self._request_ready.set()

    def terminate(self, code: grpc.StatusCode, details: str, *, notify_peer: bool = True) -> None:
        """Ends the call from outside the handler (client cancel, deadline, lost connection,
        shutdown), then stops the handler as grpc.aio does: its request stream ends first
        (a blocked read returns EOF), and the handler task is cancelled on the next loop
        turn, so the CancelledError lands at the handler's next await."""
        if self.terminated:
            return
        self.terminated = True
        self._requests.clear()  # what was not read yet is dropped, as gRPC core does
        if notify_peer:
            self.end(code, details)
        else:
            self._mark_finished()
        task = self.task
        if task is not None and task is not asyncio.current_task():
            self._loop.call_soon(task.cancel)

    def _expire(self) -> None:
        self._timer = None
        self.terminate(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    # Used by the context.

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline, or None."""
        if self._deadline is None:
            return None
        return max(self._deadline - self._loop.time(), 0.0)

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Calls back with the context once the call is done."""
        if self.finished:
            self._loop.call_soon(callback, self.context)
        else:
            self._done_callbacks.append(callback)

    async def read_request(self) -> Any:
        """The next deserialized request, or EOF after half-close."""
        while not self._requests:
            if self._half_closed or self.finished:
                return EOF  # as grpc.aio: a finished call's request stream just ends
            self._request_ready.clear()
            await self._request_ready.wait()
        payload = self._requests.popleft()
        self._driver.consumed(self.call_id, len(payload))
        # A deserializer's exception reaches the handler (or, for a unary request, ends
        # the call before it) and the call ends UNKNOWN, as in grpc.aio.
        return self._deserialize(payload)

    def requests(self) -> RequestIterator:
        """The request stream as handed to streaming-request handlers."""
        return RequestIterator(self)

    async def send_response(self, message: Any) -> None:
        """Serializes (once per broadcast) and queues one response, honouring back-pressure."""
        if self.finished:
            raise CallTerminated()
        # A serializer's exception ends the call UNKNOWN through the handler, as in grpc.aio.
        payload = self._payload(message)
        try:
            if not self._driver.try_send_message(self.call_id, payload, self._shared_responses):
                await self._driver.send_message(self.call_id, payload, self.window)
        except MessageTooLargeError as exc:
            self._fail_now(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except CallStateError:
            raise CallTerminated() from None

    def _payload(self, message: Any) -> bytes:
        """The serialized response: once per broadcast object for streams (a
        SerializationCache), afresh for a unary response."""
        if self._shared_responses:
            payload: bytes = self._cached_serialize(message, self._serialize, self)
            return payload
        payload = self._serialize(message)
        return payload

    def try_send_response(self, message: Any) -> bool:
        """Sends one response only if it goes without waiting (see
        ``ConnectionDriver.try_send_message``); False, nothing sent, otherwise: the
        caller then uses ``send_response``, which waits and reports failures."""
        if self.finished:
            return False
        payload = self._payload(message)
        try:
            return self._driver.try_send_message(self.call_id, payload, self._shared_responses)
        except MessageTooLargeError:
            return False  # send_response ends the call with the reason

    def send_initial_metadata(self, metadata: MetadataPairs) -> None:
        """Sends response headers now."""
        if self.finished:
            raise CallTerminated()
        try:
            self._driver.send_headers(self.call_id, metadata)
        except CallStateError as exc:
            raise grpc.aio.UsageError(str(exc)) from None

    # Ending.

    def finish(
        self, code: grpc.StatusCode, details: str = "", trailers: MetadataPairs | None = None
    ) -> None:
        """Sends the final status, once; later calls do nothing. Raises what encoding the
        end raises (see ``end`` for the variant that cannot fail)."""
        if self.finished:
            return
        self._driver.send_end(self.call_id, code, details, trailers)
        self._mark_finished()

    def end(
        self, code: grpc.StatusCode, details: str = "", trailers: MetadataPairs | None = None
    ) -> None:
        """Ends the call with this status; if that status cannot be sent (trailers or
        details that do not encode), logs why once and ends the call INTERNAL instead.
        Whatever happens, the call is finished afterwards."""
        try:
            self.finish(code, details, trailers)
        except Exception as exc:
            _LOG.error(
                "could not end call %s of %s with %s: %s; ending it INTERNAL",
                self.call_id,
                self.method,
                code.name,
                exc,
            )
            try:
                self.finish(grpc.StatusCode.INTERNAL, f"Failed to send status: {exc}")
            except Exception:  # the connection is gone: nothing more can be sent
                _LOG.debug("could not end call %s at all", self.call_id, exc_info=True)
        finally:
            self._mark_finished()

    def _fail_now(self, code: grpc.StatusCode, details: str) -> Any:
        self.end(code, details)
        raise CallTerminated()

    def _mark_finished(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._request_ready.set()  # wake a reader blocked on a finished call
        self.window.set()  # and a writer waiting for flow control
        self._driver.forget(self.call_id)
        for callback in self._done_callbacks:
            self._loop.call_soon(callback, self.context)
        self._done_callbacks.clear()

    async def _run(self) -> None:
        """Runs interceptors and the handler, then ends the call with the context's
        status. Any exception from an interceptor, the handler, a (de)serializer or
        while ending ends the call too (UNKNOWN, or the code the handler set, with
        grpc.aio's ``Unexpected <type>: <message>`` details) and is logged once; no call
        outlives its task."""
        context = self.context
        try:
            handler = await self._driver.find_handler(self.method, context.invocation_metadata())
            if handler is None:
                self.end(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
                return
            self._deserialize = handler.request_deserializer or _identity
            self._serialize = handler.response_serializer or _identity
            # Only streams share response objects with other calls (broadcasts): a unary
            # response is serialized and encoded for this call alone, uncached.
            self._shared_responses = handler.response_streaming
            await invoke_handler(handler, self, context)
        except (grpc.aio.AbortError, CallTerminated):
            pass  # the status is on the context, or the call already ended
        except asyncio.CancelledError as exc:
            if not self.terminated:  # raised by the handler itself, not by terminate()
                self._fail_unexpectedly(exc)
            return
        except Exception as exc:
            self._fail_unexpectedly(exc)
            return
        finally:
            if not self.finished and sys.exc_info()[0] is not None:
                # KeyboardInterrupt, SystemExit, ...: still end the call before leaving.
                self.end(grpc.StatusCode.UNKNOWN, "servicer method exited abnormally")
        self.end(context.code(), context.details(), context.trailing_metadata())

    def _fail_unexpectedly(self, exc: BaseException) -> None:
        """Logs the exception (once, as grpc.aio does, even when the call already ended
        from outside) and ends the call with it if it is still open."""
        _LOG.error(
            "unexpected %s raised by servicer method %s",
            type(exc).__name__,
            self.method,
            exc_info=exc,
        )
        if self.finished:
            return
        code = self.context.code()
        self.end(
            grpc.StatusCode.UNKNOWN if code is grpc.StatusCode.OK else code,
            f"Unexpected {type(exc)}: {exc}",
            self.context.trailing_metadata(),
        )


class RequestIterator(AsyncIterator[Any], Iterator[Any]):
    """A call's requests: async iteration in handlers, plain iteration from the worker
    thread a synchronous handler runs in (grpc's ``_MaybeAsyncIterator``)."""

    def __init__(self, call: ServerCall) -> None:
        self._call = call
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> RequestIterator:
        return self

    async def __anext__(self) -> Any:
        request = await self._call.read_request()
        if request is EOF:
            raise StopAsyncIteration
        return request

    def __iter__(self) -> RequestIterator:
        return self

    def __next__(self) -> Any:
        future = asyncio.run_coroutine_threadsafe(self._call.read_request(), self._loop)
        with contextlib.suppress(CallTerminated):
            request = future.result()
            if request is not EOF:
                return request
        raise StopIteration


def _identity(value: Any) -> Any:
    return value
