"""A grpc.aio.Channel that multiplexes every call over one lazily opened message pipe.

Subclasses only say how to open the pipe (a WebSocket, or an in-memory pair to an
in-process server); calls, reconnection, state and close live here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from client._call_credentials import check_secure
from client._ws_calls import (
    CALL_CLASSES,
    Deserializer,
    Serializer,
    StreamStreamMultiCallable,
    StreamUnaryMultiCallable,
    UnaryStreamMultiCallable,
    UnaryUnaryMultiCallable,
)
from client._ws_connection import ClientConnectionDriver
from client._ws_interceptors import ClientInterceptor, Interceptors
from wire.protocol import DEFAULT_RECEIVE_MESSAGE_BYTES
from wire.transport import MessageTransport

if TYPE_CHECKING:
    from client._ws_calls import _Call

_LOG = logging.getLogger(__name__)

Connectivity = grpc.ChannelConnectivity
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = DEFAULT_RECEIVE_MESSAGE_BYTES  # grpc's default


class MultiplexedChannel(grpc.aio.Channel):
    """Common channel machinery; subclasses implement ``_open_transport``."""

    _connect_failures: tuple[type[Exception], ...] = (OSError, TimeoutError)
    """What ``_open_transport`` raises when the server cannot be reached or refuses the
    connection (the state becomes TRANSIENT_FAILURE). Anything else it raises is a
    fault."""

    def __init__(
        self,
        *,
        max_receive_message_bytes: int | None = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        max_send_message_bytes: int | None = None,
        send_buffer_bytes: int = 256 * 1024,
        interceptors: Sequence[ClientInterceptor] | None = None,
        secure: bool = False,
        keepalive: tuple[float, float] | None = None,
    ) -> None:
        """``keepalive``: (interval, timeout) in seconds of call-0 Pings each connection
        sends (the server's ConnectionSettings replace the numbers), None for none."""
        self._keepalive = keepalive
        self._interceptors = Interceptors(interceptors)
        self._secure = secure
        self._max_receive = max_receive_message_bytes
        self._max_send = max_send_message_bytes
        self._send_buffer_bytes = send_buffer_bytes
        self._connection: ClientConnectionDriver | None = None
        self._connect_lock = asyncio.Lock()
        self._calls: set[_Call[Any, Any]] = set()
        self._state = Connectivity.IDLE
        self._state_changed = asyncio.Event()
        self._closed = False
        self._connecting: set[asyncio.Task[ClientConnectionDriver]] = set()

    async def _open_transport(self) -> tuple[MessageTransport, int | None]:
        """Opens the pipe; returns it and the server's max message size, if announced."""
        raise NotImplementedError

    # Connection management.

    async def _get_connection(self) -> ClientConnectionDriver:
        """The open connection, opening one if there is none (one at a time)."""
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        async with self._connect_lock:
            self._check_open()
            connection = self._connection
            if connection is not None and connection.usable:
                return connection
            self._set_state(Connectivity.CONNECTING)
            try:
                transport, server_limit = await self._open_transport()
            except BaseException:
                if not self._closed:
                    self._set_state(Connectivity.TRANSIENT_FAILURE)
                raise
            if self._closed:  # closed while connecting: this connection has no use
                await transport.close()
                self._check_open()
            limits = [limit for limit in (self._max_send, server_limit) if limit is not None]
            connection = ClientConnectionDriver(
                transport,
                max_receive_bytes=self._max_receive,
                max_send_bytes=min(limits) if limits else None,
                send_buffer_bytes=self._send_buffer_bytes,
                on_closed=self._connection_closed,
                keepalive=self._keepalive,
            )
            connection.start()
            self._connection = connection
            self._set_state(Connectivity.READY)
            return connection

    def _connection_closed(self, connection: ClientConnectionDriver) -> None:
        if self._connection is connection:
            self._connection = None
            if not self._closed:
                self._set_state(Connectivity.IDLE)

    def _set_state(self, state: Connectivity) -> None:
        if state is not self._state:
            self._state = state
            self._state_changed.set()
            self._state_changed = asyncio.Event()

    def _check_open(self) -> None:
        if self._closed:
            raise grpc.aio.UsageError("Cannot invoke RPC: channel is closed")

    @property
    def authority_url(self) -> str:
        """The URL whose authority names the server (call credentials' service_url)."""
        return ""

    def _start_call(
        self,
        kind: str,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        request: Any,
        timeout: float | None,
        metadata: Any,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
    ) -> Any:
        """Starts a call of `kind` ("unary_unary", ...) past the interceptors; raises
        grpc.aio.UsageError for call credentials on an insecure channel."""
        check_secure(credentials, self._secure)
        return CALL_CLASSES[kind](
            self,
            method,
            serializer,
            deserializer,
            request,
            timeout,
            metadata,
            wait_for_ready,
            credentials,
        )

    def _track(self, call: _Call[Any, Any]) -> None:
        self._calls.add(call)

    def _untrack(self, call: _Call[Any, Any]) -> None:
        self._calls.discard(call)

    @property
    def connection_count(self) -> int:
        """1 while a connection is open, else 0 (all calls share it)."""
        return 0 if self._connection is None else 1

    # grpc.aio.Channel interface.

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """IDLE, CONNECTING, READY, TRANSIENT_FAILURE or SHUTDOWN."""
        if try_to_connect and self._state in (Connectivity.IDLE, Connectivity.TRANSIENT_FAILURE):
            task = asyncio.get_running_loop().create_task(self._get_connection())
            self._connecting.add(task)
            task.add_done_callback(self._background_connect_done)
        return self._state

    def _background_connect_done(self, task: asyncio.Task[ClientConnectionDriver]) -> None:
        """Reports how a connect started by ``get_state(try_to_connect=True)`` ended: a
        cancelled one (the channel closed) is not a failure; an unreachable server is
        logged at DEBUG (the state says TRANSIENT_FAILURE); any other error is logged at
        ERROR with its traceback."""
        self._connecting.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, grpc.aio.UsageError):
            _LOG.debug("background connect skipped: %s", exc)
        elif isinstance(exc, self._connect_failures):
            _LOG.debug("background connect to %s failed: %r", self.authority_url, exc)
        else:
            _LOG.error(
                "background connect to %s failed unexpectedly", self.authority_url, exc_info=exc
            )

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """Returns once the state differs from ``last_observed_state``."""
        while self._state is last_observed_state:
            await self._state_changed.wait()

    async def channel_ready(self) -> None:
        """Connects, retrying with backoff (0.1 s doubling to 5 s) while the server cannot
        be reached (each failure logged at DEBUG); bound it with asyncio.timeout() as
        with grpc. Raises grpc.aio.UsageError once the channel is closed, and any other
        error of opening the connection (a fault, not an unreachable server) as is."""
        delay = 0.1
        while True:
            try:
                await self._get_connection()
                return
            except self._connect_failures as exc:
                _LOG.debug(
                    "connecting to %s failed: %r; retrying in %.1f s",
                    self.authority_url,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self, grace: float | None = None) -> None:
        """Lets open calls finish for up to ``grace`` seconds, cancels the rest, closes
        the connection."""
        if self._closed:
            return
        self._closed = True
        for connecting in list(self._connecting):
            connecting.cancel()
        if grace and self._calls:
            pending = [asyncio.create_task(call._done.wait()) for call in self._calls]
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
        for call in list(self._calls):
            call.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        self._set_state(Connectivity.SHUTDOWN)

    async def __aenter__(self) -> MultiplexedChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close(None)

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> UnaryUnaryMultiCallable[Any, Any]:
        return UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> UnaryStreamMultiCallable[Any, Any]:
        return UnaryStreamMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> StreamUnaryMultiCallable[Any, Any]:
        return StreamUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> StreamStreamMultiCallable[Any, Any]:
        return StreamStreamMultiCallable(self, method, request_serializer, response_deserializer)
