"""grpc.aio call objects and multi-callables for calls multiplexed over one connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio

from client._call_credentials import CredentialsFailed, credentials_metadata
from client._ws_interceptors import INTERCEPTED_CALLS
from wire.metadata import MetadataError, MetadataPairs
from wire.mux import CallIdsExhaustedError, CallStateError, MessageTooLargeError
from wire.sentinels import EOF

if TYPE_CHECKING:
    from client._ws_channel_base import MultiplexedChannel
    from client._ws_connection import ClientConnectionDriver

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None

_LOG = logging.getLogger(__name__)
_CANCELLED_DETAILS = "Locally cancelled by application!"
# grpc.aio's own words (grpc/aio/_call.py), so callers can match on them.
_RPC_ALREADY_FINISHED_DETAILS = "RPC already finished."
_RPC_HALF_CLOSED_DETAILS = 'RPC is half closed after calling "done_writing".'
_API_STYLE_ERROR = "The iterator and read/write APIs may not be mixed on a single RPC."


class _Call(Generic[RequestT, ResponseT]):
    """State shared by the four call kinds: start, responses, status, cancellation.

    A call starts in a task (the connection opens lazily); it ends exactly once, through
    ``on_end`` from the connection, the deadline, ``cancel()`` or a local failure.
    """

    _request_streaming = False

    def __init__(
        self,
        channel: MultiplexedChannel,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        request: Any,
        timeout: float | None,
        metadata: MetadataPairs | None,
        wait_for_ready: bool | None,
        credentials: grpc.CallCredentials | None = None,
    ) -> None:
        self._channel = channel
        self._credentials = credentials
        self._method = method
        self._serialize: Callable[[Any], bytes] = serializer or _identity
        self._deserialize: Callable[[bytes], Any] = deserializer or _identity
        self._metadata = metadata
        self._wait_for_ready = bool(wait_for_ready)
        self._loop = asyncio.get_running_loop()
        self._deadline = None if timeout is None else self._loop.time() + timeout
        self._timer = (
            None if self._deadline is None else self._loop.call_at(self._deadline, self._expire)
        )
        self._connection: ClientConnectionDriver | None = None
        self._call_id = 0
        self._started = asyncio.Event()
        self._headers = asyncio.Event()
        self._initial_metadata = grpc.aio.Metadata()
        self._responses: deque[bytes] = deque()
        self._window = asyncio.Event()  # set when the call's send window reopens
        self._response_ready = asyncio.Event()
        self._done = asyncio.Event()
        self._code = grpc.StatusCode.UNKNOWN
        self._details = ""
        self._trailers = grpc.aio.Metadata()
        self._locally_cancelled = False
        self._done_callbacks: list[Callable[[Any], None]] = []
        self._writing_done = False
        self._done_writing_flag = False
        """The request side is half-closed (grpc.aio's name: its interceptor wrappers
        read it before a write())."""
        self._iterator_given = request is not None and self._request_streaming
        self._start_task = self._loop.create_task(self._start(request), name=f"ws-call {method}")
        channel._track(self)

    # Sink interface (called by the connection, never blocks).

    def on_headers(self, metadata: grpc.aio.Metadata) -> None:
        self._initial_metadata = metadata
        self._headers.set()

    def on_message(self, payload: bytes) -> None:
        self._headers.set()
        self._responses.append(payload)  # flow control bounds how many wait here
        self._response_ready.set()

    def on_window_opened(self) -> None:
        self._window.set()

    def on_end(self, code: grpc.StatusCode, details: str, trailers: grpc.aio.Metadata) -> None:
        if self._done.is_set():
            return
        self._code, self._details, self._trailers = code, details, trailers
        self._done.set()
        self._window.set()
        self._headers.set()
        self._started.set()
        self._response_ready.set()
        if self._timer is not None:
            self._timer.cancel()
        if not self._start_task.done() and self._start_task is not asyncio.current_task():
            self._start_task.cancel()
        for callback in self._done_callbacks:
            self._loop.call_soon(callback, self)
        self._done_callbacks.clear()
        self._channel._untrack(self)

    # Starting and sending.

    async def _start(self, request: Any) -> None:
        try:
            if self._wait_for_ready:
                await self._channel.channel_ready()
            metadata = self._metadata
            if self._credentials is not None:
                extra = await credentials_metadata(
                    self._credentials, self._channel.authority_url, self._method
                )
                metadata = [*(metadata or ()), *extra]
            connection = await self._channel._get_connection()
            self._call_id = connection.start_call(
                self._method, metadata, self.time_remaining(), self
            )
            self._connection = connection
            self._started.set()
            if not self._request_streaming:
                await self._send(request)
                connection.half_close(self._call_id)
            elif request is not None:
                await self._consume(request)
        except asyncio.CancelledError:
            pass
        except CredentialsFailed as exc:
            self.on_end(grpc.StatusCode.UNAVAILABLE, str(exc), grpc.aio.Metadata())
        except MetadataError as exc:
            self.on_end(grpc.StatusCode.INTERNAL, f"invalid metadata: {exc}", grpc.aio.Metadata())
        except (CallIdsExhaustedError, CallStateError) as exc:
            self.on_end(grpc.StatusCode.UNAVAILABLE, str(exc), grpc.aio.Metadata())
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass  # the call ended while its request was being sent
        except Exception as exc:  # connecting failed
            self.on_end(
                grpc.StatusCode.UNAVAILABLE, f"failed to connect: {exc}", grpc.aio.Metadata()
            )

    async def _consume(self, requests: Any) -> None:
        try:
            if isinstance(requests, AsyncIterable):
                async for request in requests:
                    await self._send(request)
            else:
                for request in requests:
                    await self._send(request)
        except (grpc.RpcError, asyncio.CancelledError, asyncio.InvalidStateError):
            raise
        except Exception as exc:
            _LOG.exception("request iterator of %s failed", self._method)
            self._fail(grpc.StatusCode.UNKNOWN, f"Exception iterating requests: {exc!r}")
            return
        await self._half_close()

    async def _send(self, request: Any) -> None:
        await self._started.wait()
        self._raise_if_done()
        assert self._connection is not None
        try:
            payload = self._serialize(request)
        except Exception as exc:
            self._fail(grpc.StatusCode.INTERNAL, f"Exception serializing request: {exc!r}")
            self._raise_if_done()
        try:
            await self._connection.send_message(self._call_id, payload, self._window)
        except MessageTooLargeError as exc:
            self._fail(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except CallStateError:
            await self._done.wait()  # the end is on its way (or already here)
        self._raise_if_done()

    async def _half_close(self) -> None:
        self._done_writing_flag = True
        await self._started.wait()
        if not self._done.is_set() and self._connection is not None:
            self._connection.half_close(self._call_id)

    def _fail(self, code: grpc.StatusCode, details: str) -> None:
        """Ends the call locally and tells the server to stop it."""
        if self._connection is not None:
            self._connection.cancel(self._call_id)
        self.on_end(code, details, grpc.aio.Metadata())

    def _expire(self) -> None:
        self._timer = None
        self._fail(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _raise_if_done(self) -> None:
        """Raises what a write on a finished call raises in grpc.aio."""
        if not self._done.is_set():
            return
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        if self._code is not grpc.StatusCode.OK:
            raise self._error()
        raise asyncio.InvalidStateError(_RPC_ALREADY_FINISHED_DETAILS)

    def _error(self) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(
            self._code, self._initial_metadata, self._trailers, self._details, None
        )

    # Receiving.

    async def _wait_done(self) -> None:
        """Waits for the status; cancelling the waiting task cancels the call, as in grpc."""
        try:
            await self._done.wait()
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def _read(self) -> Any:
        """The next response, EOF after an OK end, or the call's error."""
        while not self._responses and not self._done.is_set():
            self._response_ready.clear()
            try:
                await self._response_ready.wait()
            except asyncio.CancelledError:
                self.cancel()
                raise
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        if not self._responses:
            if self._code is not grpc.StatusCode.OK:
                raise self._error()
            return EOF
        payload = self._responses.popleft()
        if self._connection is not None:
            self._connection.consumed(self._call_id, len(payload))
        try:
            return self._deserialize(payload)
        except Exception as exc:
            self._fail(grpc.StatusCode.INTERNAL, f"Exception deserializing response: {exc!r}")
            raise self._error() from exc

    async def _unary_response(self) -> Any:
        await self._wait_done()
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        if self._code is grpc.StatusCode.OK and len(self._responses) != 1:
            self._code = grpc.StatusCode.INTERNAL
            self._details = f"unary call ended OK with {len(self._responses)} response messages"
        if self._code is not grpc.StatusCode.OK:
            raise self._error()
        try:
            return self._deserialize(self._responses[0])
        except Exception as exc:
            self._code = grpc.StatusCode.INTERNAL
            self._details = f"Exception deserializing response: {exc!r}"
            raise self._error() from exc

    async def _iterate(self) -> AsyncIterator[Any]:
        while (response := await self._read()) is not EOF:
            yield response

    # grpc.aio.Call interface.

    def cancel(self) -> bool:
        """Cancels the call; False if it had already ended."""
        if self._done.is_set():
            return False
        self._locally_cancelled = True
        self._fail(grpc.StatusCode.CANCELLED, _CANCELLED_DETAILS)
        return True

    def cancelled(self) -> bool:
        """Whether the call ended as CANCELLED."""
        return self._done.is_set() and self._code is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        """Whether the call has its final status."""
        return self._done.is_set()

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline, or None."""
        return None if self._deadline is None else max(self._deadline - self._loop.time(), 0.0)

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Calls ``callback(call)`` once the call is done."""
        if self._done.is_set():
            self._loop.call_soon(callback, self)
        else:
            self._done_callbacks.append(callback)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        """The server's response headers (empty if it sent none)."""
        await self._headers.wait()
        return self._initial_metadata

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        """The trailers sent with the status."""
        await self._wait_done()
        return self._trailers

    async def code(self) -> grpc.StatusCode:
        """The final status code."""
        await self._wait_done()
        return self._code

    async def details(self) -> str:
        """The final status details."""
        await self._wait_done()
        return self._details

    async def wait_for_connection(self) -> None:
        """Returns once the server answered (headers, a message or the end); raises the
        call's error if it ended with one."""
        await self._headers.wait()
        if self._done.is_set() and not self._responses:
            with contextlib.suppress(asyncio.InvalidStateError):
                self._raise_if_done()

    # Client-streaming interface (used by the two streaming-request kinds).

    async def write(self, request: RequestT) -> None:
        """Sends one request. Raises as grpc.aio does: grpc.aio.UsageError when a request
        iterator was given, asyncio.InvalidStateError once the call is over (cancelled
        included) or after done_writing(), the call's error if it ends while sending."""
        if self._iterator_given:
            raise grpc.aio.UsageError(_API_STYLE_ERROR)
        if self._done.is_set():
            raise asyncio.InvalidStateError(_RPC_ALREADY_FINISHED_DETAILS)
        if self._writing_done:
            raise asyncio.InvalidStateError(_RPC_HALF_CLOSED_DETAILS)
        await self._send(request)

    async def done_writing(self) -> None:
        """Tells the server no more requests come (idempotent; nothing once the call is
        over); grpc.aio.UsageError when a request iterator was given."""
        if self._iterator_given:
            raise grpc.aio.UsageError(_API_STYLE_ERROR)
        if not self._writing_done:
            self._writing_done = True
            await self._half_close()


class _SingleResponse(_Call[RequestT, ResponseT]):
    """``await call`` gives the one response."""

    def __await__(self) -> Any:
        response: ResponseT = yield from self._unary_response().__await__()
        return response


class _ResponseStream(_Call[RequestT, ResponseT]):
    """``async for`` or ``read()`` give the responses."""

    _responses_iterator: AsyncIterator[ResponseT] | None = None

    def __aiter__(self) -> AsyncIterator[ResponseT]:
        if self._responses_iterator is None:
            self._responses_iterator = self._iterate()
        return self._responses_iterator

    async def read(self) -> Any:
        """The next response, or grpc.aio.EOF."""
        return await self._read()


class UnaryUnaryCall(
    _SingleResponse[RequestT, ResponseT], grpc.aio.UnaryUnaryCall[RequestT, ResponseT]
):
    """One request, one response."""


class UnaryStreamCall(
    _ResponseStream[RequestT, ResponseT], grpc.aio.UnaryStreamCall[RequestT, ResponseT]
):
    """One request, a response stream."""


class StreamUnaryCall(
    _SingleResponse[RequestT, ResponseT], grpc.aio.StreamUnaryCall[RequestT, ResponseT]
):
    """A request stream (an iterator, or write()/done_writing()), one response."""

    _request_streaming = True


class StreamStreamCall(
    _ResponseStream[RequestT, ResponseT], grpc.aio.StreamStreamCall[RequestT, ResponseT]
):
    """Request and response streams."""

    _request_streaming = True


class _MultiCallable:
    """Starts calls of one kind (``_call_class``) for one method; the four public
    multi-callables differ only in their grpc.aio base and call class."""

    _kind: str

    def __init__(
        self,
        channel: MultiplexedChannel,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer

    def __call__(
        self,
        request: Any = None,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        """Starts a call, as grpc.aio's multi-callables do.

        Args:
            request: The request, or for streaming requests an (async) iterator of
                requests, or None to use write()/done_writing().
            timeout: Seconds the call may take (None: no deadline).
            metadata: Call metadata (pairs).
            credentials: Per-call credentials (`grpc.access_token_call_credentials`,
                `grpc.metadata_call_credentials`, composites): on a secure channel
                (wss://) their metadata is appended to the call's; on an insecure one
                grpc.aio.UsageError is raised, as grpc.aio does. A failing metadata
                plugin ends the call UNAVAILABLE.
            wait_for_ready: Wait for the connection instead of failing fast.
            compression: Accepted and ignored: permessage-deflate on the WebSocket
                already compresses every message of every call.

        The channel's interceptors of this call kind run first, as on grpc.aio.
        """
        channel = self._channel
        channel._check_open()
        # grpc.aio makes the call's metadata a grpc.aio.Metadata (repeated keys grouped at
        # the first one's place) before interceptors see it and before it is sent.
        if not isinstance(metadata, grpc.aio.Metadata):
            metadata = grpc.aio.Metadata.from_tuple(tuple(metadata or ()))
        interceptors = channel._interceptors.of_kind(self._kind)
        if interceptors:
            # grpc.aio hands interceptors the method as bytes.
            return INTERCEPTED_CALLS[self._kind](
                interceptors,
                request,
                timeout,
                metadata,
                credentials,
                wait_for_ready,
                channel,
                self._method.encode(),
                self._serializer,
                self._deserializer,
                asyncio.get_running_loop(),
            )
        return channel._start_call(
            self._kind,
            self._method,
            self._serializer,
            self._deserializer,
            request,
            timeout,
            metadata,
            credentials,
            wait_for_ready,
        )


class UnaryUnaryMultiCallable(
    _MultiCallable, grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT]
):
    """Starts unary-unary calls."""

    _kind = "unary_unary"


class UnaryStreamMultiCallable(
    _MultiCallable, grpc.aio.UnaryStreamMultiCallable[RequestT, ResponseT]
):
    """Starts unary-stream calls."""

    _kind = "unary_stream"


class StreamUnaryMultiCallable(
    _MultiCallable, grpc.aio.StreamUnaryMultiCallable[RequestT, ResponseT]
):
    """Starts stream-unary calls."""

    _kind = "stream_unary"


class StreamStreamMultiCallable(
    _MultiCallable, grpc.aio.StreamStreamMultiCallable[RequestT, ResponseT]
):
    """Starts stream-stream calls."""

    _kind = "stream_stream"


def _identity(value: Any) -> Any:
    return value


CALL_CLASSES: dict[str, type[_Call[Any, Any]]] = {
    "unary_unary": UnaryUnaryCall,
    "unary_stream": UnaryStreamCall,
    "stream_unary": StreamUnaryCall,
    "stream_stream": StreamStreamCall,
}
