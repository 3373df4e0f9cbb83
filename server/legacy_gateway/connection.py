"""One legacy JSON client on the WebSocket listener, driven like any other Session.

A reader task turns frames into typed requests (through the pure translator in
`server.legacy`) and feeds them to the session; a writer task renders what the session
queue yields back into legacy text frames. All output goes through the session queue,
so a client sees its error replies, acks and rebroadcasts in the order they happened.
Whichever task finishes first decides how the WebSocket closes; presence is released
before the close handshake, so the remaining peers hear "disconnected" at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

import grpc
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.errors import RequestError, validate_collection_id
from server.event_queue import SessionEnd, SessionEnded
from server.legacy import (
    LegacyProtocolError,
    check_message_size,
    decode_client_message,
    error_response,
    render_for_legacy,
)
from server.legacy_gateway.handshake import close_reason
from server.legacy_gateway.render_cache import LegacyRenderCache
from server.session import Session
from syncwire.v1 import sync_pb2
from wire.keepalive import FailFastKeepalive
from wire.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
)
from wire.send_now import send_now
from wire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TRANSPORT: Final = "legacy"
"""Transport label of legacy sessions in metrics and logs."""

# Session-scoped events (presence) from collections other than the home collection are
# not passed on: shape A has no collection field, so a receiver would read them as news
# of its own room. Deltas carry their collection (wrapper form or Delta body) and pass.
_SCOPED_EVENTS: Final = frozenset({"peer_join", "peer_leave", "presence"})


CLOSE_UNAUTHENTICATED: Final = 4401
"""Close code (private range, after HTTP 401): missing, invalid or expired token."""
CLOSE_FORBIDDEN: Final = 4403
"""Close code (private range, after HTTP 403): the token does not grant the home
collection."""


@dataclass(frozen=True, slots=True)
class Close:
    """How the WebSocket ends: close code and reason (None = the client already closed)."""

    code: int
    reason: str


def close_for(end: SessionEnd) -> Close:
    """The WebSocket close for a session the server ended.

    idle_timeout -> 1000 "idle timeout" (README 5.8); shutdown -> 1001; slow_consumer ->
    1013 (try again later: the connection is healthy, the reader was too slow); token
    expired or revoked -> 4401; disconnected by the admin API -> 1001 (reconnect advised)
    or 1008 (not); a clean end -> 1000; anything else -> 1011 with the reason.
    """
    if end.code == grpc.StatusCode.UNAUTHENTICATED:
        return Close(CLOSE_UNAUTHENTICATED, close_reason(end.reason))
    if end.label == "idle_timeout":
        return Close(CLOSE_NORMAL, "idle timeout")
    if end.label == "shutdown":
        return Close(CLOSE_GOING_AWAY, "server shutting down")
    if end.label == "admin_disconnect":
        code = CLOSE_GOING_AWAY if end.reconnect else CLOSE_POLICY_VIOLATION
        return Close(code, close_reason(end.reason))
    if end.label == "slow_consumer":
        return Close(CLOSE_TRY_AGAIN_LATER, close_reason(end.reason))
    if end.code == grpc.StatusCode.OK:
        return Close(CLOSE_NORMAL, close_reason(end.reason))
    return Close(CLOSE_INTERNAL_ERROR, close_reason(end.reason))


class LegacyConnection:
    """Serves one legacy client: welcome, home presence, requests, events, close."""

    def __init__(
        self,
        websocket: ServerConnection,
        session: Session,
        *,
        home: str,
        renders: LegacyRenderCache,
        max_message_bytes: int,
    ) -> None:
        self._ws = websocket
        self._session = session
        self._home = home
        self._renders = renders
        self._max_message_bytes = max_message_bytes
        self._wrapper = False
        """Set once the client sent a valid wrapper: its deltas go out in wrapper form."""
        self._sent = session.core.metrics.messages_out.labels(TRANSPORT)

    async def run(self) -> None:
        """Serves the connection until either side ends it; releases the session."""
        session = self._session
        reader: asyncio.Task[Close | None] | None = None
        writer: asyncio.Task[Close | None] | None = None
        close: Close | None = None
        dead = False
        try:
            welcome = render_for_legacy(session.welcome())
            assert welcome is not None
            await self._ws.send(welcome, text=True)
            # Attach first, then announce: the newcomer hears its own "connected" too.
            await session.handle(
                sync_pb2.SyncRequest(
                    subscribe=sync_pb2.Subscribe(collection_id=self._home, join_presence=True)
                )
            )
            reader = asyncio.create_task(self._read(), name=f"legacy-read-{session.peer_id}")
            writer = asyncio.create_task(self._write(), name=f"legacy-write-{session.peer_id}")
            session.queue.write_now = self._write_now
            # A slow consumer's writer may be stuck in a send that never drains: the
            # abandoned queue ends the connection without waiting for it.
            abandoned = asyncio.create_task(session.queue.abandoned())
            done, _ = await asyncio.wait(
                (reader, writer, abandoned), return_when=asyncio.FIRST_COMPLETED
            )
            abandoned.cancel()
            if abandoned in done and not abandoned.cancelled():
                end = abandoned.result()
                close = close_for(end)
                # Heartbeat silence with bytes still unsent: the peer is dead, not slow;
                # a closing handshake with it could only time out.
                dead = end.label == "idle_timeout" and _unsent_bytes(self._ws) > 0
            else:
                close = _outcome(reader if reader in done else writer)
        except ConnectionClosed:
            close = None
        finally:
            session.queue.write_now = None
            for task, what in ((reader, "legacy reader"), (writer, "legacy writer")):
                if task is not None and not task.done():
                    await cancel_and_wait(task, log, what)
            await session.close("disconnected")
        if close is None:
            return
        if dead and isinstance(self._ws, FailFastKeepalive):
            self._ws.fail_now(close.code, close.reason)
        else:
            await self._ws.close(close.code, close.reason)

    # ------------------------------------------------------------------- inbound

    async def _read(self) -> Close | None:
        """Frames in until the client goes away (None) or a frame fails the connection."""
        ws = self._ws
        while True:
            try:
                # Text frames arrive as str (websockets checks UTF-8 and closes with 1007
                # itself), binary frames as bytes, so the frame type is never lost.
                frame = await ws.recv()
            except ConnectionClosed:
                return None
            self._session.last_seen = time.monotonic()  # any frame counts as liveness
            if not await self._session.admit(0, _frame_size(frame)):
                continue  # refused with a rate_limited error; reading paused meanwhile
            if isinstance(frame, str):
                close = await self._on_text(frame)
                if close is not None:
                    return close
            else:
                await self._on_binary(frame)

    async def _on_text(self, frame: str) -> Close | None:
        try:
            message = decode_client_message(frame, limit=self._max_message_bytes)
        except LegacyProtocolError as error:
            if error.close_code is not None:
                log.warning("legacy frame fails the connection: %s", error.reason)
                return Close(error.close_code, close_reason(error.reason))
            self._reject(error, "text", len(frame))
            return None
        request = message.request
        kind = request.WhichOneof("kind")
        if kind == "publish":
            delta = request.publish.delta
            if not message.is_wrapper:
                delta.collection_id = self._home
            else:
                try:
                    validate_collection_id(delta.collection_id)
                except RequestError as exc:
                    rejection = LegacyProtocolError(
                        "invalid_message", f"Delta.collection_id: {exc.message}", message.message_id
                    )
                    self._reject(rejection, "text", len(frame))
                    return None
                await self._follow(delta.collection_id)
        elif kind == "presence":
            request.presence.collection_id = self._home
        if message.is_wrapper:
            self._wrapper = True
        await self._session.handle(request)
        return None

    async def _on_binary(self, frame: bytes) -> None:
        """Opaque bytes: acknowledged to the sender alone, never parsed or relayed."""
        try:
            check_message_size(frame, self._max_message_bytes)
        except LegacyProtocolError as error:
            self._reject(error, "binary", len(frame))
            return
        await self._session.handle(sync_pb2.SyncRequest(blob=sync_pb2.Blob(data=frame)))

    async def _follow(self, collection_id: str) -> None:
        """Subscribes to a collection the client publishes wrapper Deltas to (once), so it
        receives that collection's deltas as well; subscribing first means its own delta
        comes back to it too, like a home `sync`."""
        if collection_id not in self._session.subscriptions:
            await self._session.handle(
                sync_pb2.SyncRequest(subscribe=sync_pb2.Subscribe(collection_id=collection_id))
            )

    def _reject(self, error: LegacyProtocolError, frame_type: str, size: int) -> None:
        """Bad input: log it, answer the sender with an `error`, keep the connection."""
        log.warning(
            "legacy message rejected (%s): %s",
            error.code,
            error.reason,
            extra={"error_code": error.code, "frame_type": frame_type, "frame_length": size},
        )
        self._session.core.metrics.request_errors.labels(error.code).inc()
        self._session.reply(0, error_response(error))

    # ------------------------------------------------------------------ outbound

    def _render(self, event: sync_pb2.SyncResponse) -> bytes | None:
        """The text frame for an event, or None when this client does not get it."""
        kind = event.WhichOneof("kind")
        if kind in _SCOPED_EVENTS and _collection_of(event, kind) != self._home:
            return None
        return self._renders.render(event, wrapper=self._wrapper)

    def _write_now(self, event: sync_pb2.SyncResponse) -> bool:
        """The session queue's write-now hook (`EventQueue.write_now`): renders the
        event and writes it from the caller's loop when the socket takes it without
        waiting (`wire.send_now`); False leaves it to the writer task."""
        payload = self._render(event)
        if payload is None:
            return True  # not for this client: nothing to send
        if not send_now(self._ws, payload, text=True):
            return False
        self._sent.inc()
        return True

    async def _write(self) -> Close | None:
        """Session events out as text frames until the session ends."""
        ws = self._ws
        queue = self._session.queue
        sent = self._sent
        while True:
            try:
                event = await queue.get()
            except SessionEnded as ended:
                return close_for(ended.end)
            payload = self._render(event)
            if payload is None:
                continue
            try:
                await ws.send(payload, text=True)
            except ConnectionClosed:
                return None
            sent.inc()


def _unsent_bytes(websocket: ServerConnection) -> int:
    """Bytes written to the connection that the socket has not taken yet."""
    transport = websocket.transport
    return transport.get_write_buffer_size() if transport is not None else 0


def _frame_size(frame: str | bytes) -> int:
    return len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))


def _collection_of(event: sync_pb2.SyncResponse, kind: str) -> str:
    if kind == "peer_join":
        return event.peer_join.collection_id
    if kind == "peer_leave":
        return event.peer_leave.collection_id
    return event.presence.collection_id


def _outcome(task: asyncio.Task[Close | None]) -> Close | None:
    """The close a finished reader/writer asks for; an unexpected failure closes 1011."""
    error = task.exception()
    if error is None:
        return task.result()
    if isinstance(error, ConnectionClosed):
        return None
    log.error("legacy connection failed", exc_info=error)
    return Close(CLOSE_INTERNAL_ERROR, "internal error")
