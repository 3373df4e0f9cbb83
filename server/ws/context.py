"""The ServicerContext handed to servicer methods called over the WebSocket framing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

import grpc
import grpc.aio

from wire.metadata import InvocationMetadata, MetadataPairs, encode_metadata
from wire.protocol import MAX_MESSAGE_BYTES_HEADER
from wire.status import as_status_code

if TYPE_CHECKING:
    from server.ws.call import ServerCall

TRANSPORT = "websocket"
"""Transport name of calls carried over the WebSocket framing (metrics, logs, sessions)."""

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What is known about the WebSocket connection a call arrived on.

    ``headers`` are the HTTP headers of the opening handshake (lower-case names), so auth
    can read a bearer token there; ``path`` is the request path with its query string.
    """

    peer: str
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    subprotocol: str | None = None

    @property
    def receive_limit(self) -> int | None:
        """The client's max receive message size (bytes) from its handshake header
        (`wire.protocol.MAX_MESSAGE_BYTES_HEADER`), if it sent a valid one."""
        value = self.headers.get(MAX_MESSAGE_BYTES_HEADER, "")
        return int(value) if value.isdigit() else None


class WebSocketServicerContext(
    grpc.aio.ServicerContext[RequestT, ResponseT], Generic[RequestT, ResponseT]
):
    """grpc.aio.ServicerContext semantics for one call carried over a WebSocket.

    ``invocation_metadata()`` is the call's metadata; when it has no ``authorization``
    entry, the handshake's ``Authorization`` header is appended to it, so one auth check
    reads both transports. The full handshake is in ``connection``. ``transport`` names
    the transport ('websocket'; grpc.aio's own contexts have no such attribute).
    """

    transport = TRANSPORT

    def __init__(
        self, call: ServerCall, metadata: InvocationMetadata, connection: ConnectionInfo
    ) -> None:
        self.receive_limit = connection.receive_limit
        """The largest response the client announced it receives (bytes), or None;
        grpc.aio's contexts have no such attribute (`rpc_status.receive_limit_of`)."""
        self._call = call
        self.try_write: Callable[[ResponseT], bool] = call.try_send_response
        """Sends one response at once if it can go without waiting (the call's window
        open, the connection's send buffer below its limit); returns False, having sent
        nothing, otherwise (then ``write`` it). Not part of grpc.aio: a broadcast calls it
        for many calls from one loop, with no task switch per call."""
        self._metadata = metadata
        self.connection = connection
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailers: tuple[tuple[str, str | bytes], ...] = ()
        self._aborted = False

    # Reading and writing messages.

    async def read(self) -> RequestT:
        """The next request, or grpc.aio.EOF after the client's half-close."""
        request: RequestT = await self._call.read_request()
        return request

    async def write(self, message: ResponseT) -> None:
        """Sends one response; waits while the connection's send buffer is full."""
        await self._call.send_response(message)

    async def send_initial_metadata(self, initial_metadata: MetadataPairs) -> None:
        """Sends the response headers now (at most once, before any message)."""
        self._call.send_initial_metadata(initial_metadata)

    # Status.

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: MetadataPairs = (),
    ) -> NoReturn:
        """Ends the call with a non-OK status, like grpc.aio: raises grpc.aio.AbortError,
        which the adapter catches. ``code`` may also be the code's number (grpc.aio
        accepts an int, and gRPC's interop servicer passes one); numbers gRPC does not
        define read as UNKNOWN. OK is not a failure and becomes UNKNOWN."""
        if self._aborted:
            raise grpc.aio.UsageError("Abort already called!")
        self._aborted = True
        status = as_status_code(code)
        self._code = grpc.StatusCode.UNKNOWN if status is grpc.StatusCode.OK else status
        if details or not self._details:
            self._details = details
        if trailing_metadata:
            self.set_trailing_metadata(trailing_metadata)
        raise grpc.aio.AbortError("Locally aborted.")

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """abort() with a grpc.Status."""
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        """Status code the call ends with when the handler returns (a StatusCode or its
        number, as grpc.aio accepts)."""
        self._code = as_status_code(code)

    def set_details(self, details: str) -> None:
        """Status details the call ends with when the handler returns."""
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: MetadataPairs) -> None:
        """Trailers sent with the status; validated now, like grpc."""
        pairs = tuple(trailing_metadata)
        encode_metadata(pairs)
        self._trailers = pairs

    def code(self) -> grpc.StatusCode:
        """The code set so far (OK until set)."""
        return self._code or grpc.StatusCode.OK

    def details(self) -> str:
        """The details set so far."""
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        """The trailers set so far."""
        return self._trailers

    # Call information.

    def invocation_metadata(self) -> InvocationMetadata:  # type: ignore[override]
        """Request metadata (plus the handshake's authorization, see the class doc), as
        grpc.aio returns it: a tuple of ``(key, value)`` pairs (grpc's ``_Metadatum``, with
        ``.key`` and ``.value``) in the order they arrived, repeated keys where the client
        put them."""
        return self._metadata

    def peer(self) -> str:
        """The client's address, as grpc writes it: ``ipv4:127.0.0.1:54321``."""
        return self.connection.peer

    def peer_identities(self) -> Iterable[bytes] | None:
        """No client certificates are inspected over WebSocket."""
        return None

    def peer_identity_key(self) -> str | None:
        """No client certificates are inspected over WebSocket."""
        return None

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        """Transport security facts, as grpc reports them for TLS connections."""
        return {}

    def time_remaining(self) -> float | None:  # type: ignore[override]
        """Seconds until the deadline (never negative), or None without one, like grpc."""
        return self._call.time_remaining()

    def cancelled(self) -> bool:
        """Whether the call was ended from outside the handler: client cancel, deadline,
        lost connection or server shutdown."""
        return self._call.terminated

    def done(self) -> bool:
        """Whether the call's status is final."""
        return self._call.finished

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Calls ``callback(context)`` once the call is done."""
        self._call.add_done_callback(callback)

    # Compression is negotiated per connection (permessage-deflate), not per call.

    def set_compression(self, compression: grpc.Compression) -> None:
        """No-op: compression is per connection (permessage-deflate)."""

    def disable_next_message_compression(self) -> None:
        """No-op: compression is per connection (permessage-deflate)."""
