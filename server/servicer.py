"""The SyncService servicer: plain business logic over generated types.

It knows nothing of the transport: the same instance is registered on the grpc.aio
server and on the WebSocket adapter. Sessions and publishing live in `SyncCore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import Message

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from wire.tasks import cancel_and_wait

from .auth import Principal
from .broker import HistorySlice
from .clock import now_timestamp
from .core import SyncCore
from .errors import validate_collection_id
from .event_queue import SessionEnd, SessionEnded
from .hooks import caller_of
from .logs import bind_connection
from .malformed import MalformedRequestError
from .metrics import LATENCY_SAMPLE_EVERY
from .response_bounds import ByteBudget, within_bytes
from .rpc_status import (
    Context,
    domain_errors,
    maps_domain_errors,
    receive_limit_of,
    transport_of,
)
from .session import Session

log = logging.getLogger(__name__)

HISTORY_READ_CHUNK = 32
"""Deltas GetHistory reads from the broker at a time while filling one byte-bounded
slice (`SyncServicer._history_within_bytes`)."""


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    """Serves sync streams and the unary calls for one `SyncCore`."""

    def __init__(self, core: SyncCore) -> None:
        self.core = core

    # ----------------------------------------------------------------- stream

    async def Sync(
        self,
        request_iterator: AsyncIterator[sync_pb2.SyncRequest],
        context: Context,
    ) -> AsyncIterator[sync_pb2.SyncResponse]:
        """The client's session (docs/protocol.md "The Sync stream"): `Welcome` first, then
        answers and pushed events until the session ends. Refusals before the session
        opens (auth, connection limits, shutdown) end the call with their status through
        `rpc_status.domain_errors`; later ends send a `Disconnect` first, and a client
        half-close ends it OK.
        """
        async with domain_errors(self.core.metrics, context):
            session = await self.core.connect(
                transport=transport_of(context),
                peer_address=context.peer(),
                principal=self.core_principal(context),
            )
        bind_connection(
            peer_id=session.peer_id, transport=session.transport, peer=session.peer_address
        )
        reader = asyncio.create_task(self._read(request_iterator, session))
        metrics = self.core.metrics
        sent = metrics.messages_out.labels(session.transport)
        deltas = 0
        try_write = getattr(context, "try_write", None)  # WebSocket calls offer it
        if try_write is not None:
            session.queue.write_now = _write_now(try_write, sent.inc, metrics.observe_delivery)
        try:
            yield session.welcome()
            while True:
                try:
                    event = await session.queue.get()
                except SessionEnded as ended:
                    end = ended.end
                    if end.code == grpc.StatusCode.OK:
                        return
                    yield end.to_response()
                    await context.abort(end.code, end.reason)
                yield event
                sent.inc()
                if event.HasField("delta"):
                    deltas += 1
                    if deltas % LATENCY_SAMPLE_EVERY == 0:
                        metrics.observe_delivery(event.delta.server_time.ToNanoseconds())
        finally:
            session.queue.write_now = None
            await cancel_and_wait(reader, log, "sync stream request reader")
            await session.close()

    def core_principal(self, context: Context) -> Principal | None:
        """The authenticated identity of the call (None while auth is off); raises
        RequestError(UNAUTHENTICATED) without a valid token."""
        return self.core.authenticate(context.invocation_metadata())

    def _admit_call(self, request: Message, context: Context) -> Principal | None:
        """A unary call's rate-limit charge, then its principal (so floods of bad tokens
        are limited too); raises RequestError."""
        self.core.charge(context.peer(), request.ByteSize())
        return self.core_principal(context)

    @staticmethod
    async def _read(
        request_iterator: AsyncIterator[sync_pb2.SyncRequest], session: Session
    ) -> None:
        try:
            async for request in request_iterator:
                publish = request.publish.delta if request.HasField("publish") else None
                if await session.admit(request.request_id, request.ByteSize(), publish):
                    await session.handle(request)
        except MalformedRequestError as exc:
            session.end(SessionEnd(grpc.StatusCode.INVALID_ARGUMENT, str(exc), reconnect=False))
        except asyncio.CancelledError:
            raise
        except (grpc.RpcError, grpc.aio.AbortError):
            # The client went away, or this server ended the call (an abort during a
            # drain, while this reader waits): either way the stream is over, quietly.
            session.end(SessionEnd(grpc.StatusCode.CANCELLED, "client went away"))
        except Exception as exc:
            log.exception("sync request failed", extra={"peer_id": session.peer_id})
            session.end(SessionEnd(grpc.StatusCode.INTERNAL, f"internal error: {exc}"))
        else:
            session.end(SessionEnd(grpc.StatusCode.OK, "client closed the stream"))

    # ------------------------------------------------------------------ unary

    @maps_domain_errors
    async def Publish(
        self, request: sync_pb2.PublishRequest, context: Context
    ) -> sync_pb2.PublishResponse:
        """Publishes one delta without a session (its `peer_id` stays empty); answers the
        `PublishAck`. Rate limit, auth and validation failures and BrokerError become the
        call's status (`maps_domain_errors`).
        """
        principal = self._admit_call(request, context)
        caller = caller_of("", transport_of(context), context.peer(), principal)
        ack = await self.core.publish(request.delta, caller=caller, principal=principal)
        return sync_pb2.PublishResponse(ack=ack)

    @maps_domain_errors
    async def GetPresence(
        self, request: sync_pb2.GetPresenceRequest, context: Context
    ) -> sync_pb2.GetPresenceResponse:
        """The presence entries of `request.collection_id` (needs subscribe permission),
        by peer id, after `after_peer_id`; the answer stops early, `truncated` set, once
        its entries would pass `ServerConfig.response_bytes` for the caller's
        `receive_limit_of` (at least one entry when any is due). Errors become the call's
        status (`maps_domain_errors`).
        """
        principal = self._admit_call(request, context)
        validate_collection_id(request.collection_id)
        self.core.authorize(principal, "subscribe", request.collection_id)
        present = await self.core.broker.presence_members(request.collection_id)
        members, truncated = within_bytes(
            sorted(
                (member for member in present if member.peer_id > request.after_peer_id),
                key=lambda member: member.peer_id,
            ),
            self.core.config.response_bytes(receive_limit_of(context)),
        )
        return sync_pb2.GetPresenceResponse(
            collection_id=request.collection_id, members=members, truncated=truncated
        )

    @maps_domain_errors
    async def GetHistory(
        self, request: sync_pb2.GetHistoryRequest, context: Context
    ) -> sync_pb2.GetHistoryResponse:
        """Up to min(`limit`, `history_size`) deltas after `since_offset` (`limit` 0:
        `history_size`), classified like a Subscribe's recovery; needs subscribe permission.
        The slice stops early, `truncated` set, once its deltas would pass
        `ServerConfig.response_bytes` for the caller's `receive_limit_of` (at least one
        delta when any is due).
        Errors become the call's status (`maps_domain_errors`).
        """
        limit = self.core.config.history_size
        if request.limit:
            limit = min(limit, request.limit)
        principal = self._admit_call(request, context)
        validate_collection_id(request.collection_id)
        self.core.authorize(principal, "subscribe", request.collection_id)
        history, deltas, truncated = await self._history_within_bytes(
            request, limit, self.core.config.response_bytes(receive_limit_of(context))
        )
        return sync_pb2.GetHistoryResponse(
            collection_id=request.collection_id,
            epoch=history.epoch,
            deltas=deltas,
            truncated=truncated,
            offset=history.offset,
            recovery=history.recovery,  # type: ignore[arg-type]
            oldest_offset=history.oldest_offset,
        )

    async def _history_within_bytes(
        self, request: sync_pb2.GetHistoryRequest, limit: int, budget_bytes: int
    ) -> tuple[HistorySlice, list[types_pb2.Delta], bool]:
        """The first broker read of `request` (its classification and offsets), the
        deltas that fit `budget_bytes` (`ByteBudget`), and whether more
        were due. Reads HISTORY_READ_CHUNK deltas at a time, so a slice of a few large
        deltas never fetches the whole history from the broker; stops early (truncated)
        when history moves between reads (the caller continues and sees how)."""
        broker, collection_id = self.core.broker, request.collection_id
        asked = min(limit, HISTORY_READ_CHUNK)
        history = await broker.history(collection_id, request.since_offset, request.epoch, asked)
        budget = ByteBudget(budget_bytes)
        deltas: list[types_pb2.Delta] = []
        page = history
        while True:
            for event in page.events:
                if not budget.take(event.delta):
                    return history, deltas, True
                deltas.append(event.delta)
            if len(page.events) < asked or len(deltas) >= limit:
                return history, deltas, False
            asked = min(limit - len(deltas), HISTORY_READ_CHUNK)
            page = await broker.history(collection_id, deltas[-1].offset, history.epoch, asked)
            if page.recovery != sync_pb2.RECOVERY_STATUS_RECOVERED:
                return history, deltas, True

    @maps_domain_errors
    async def GetServerInfo(
        self, request: sync_pb2.GetServerInfoRequest, context: Context
    ) -> sync_pb2.GetServerInfoResponse:
        """The server's `ServerInfo` and its current time. Rate limit and auth failures
        become the call's status (`maps_domain_errors`).
        """
        self._admit_call(request, context)
        return sync_pb2.GetServerInfoResponse(
            server_info=self.core.server_info(), timestamp=now_timestamp()
        )


def _write_now(
    try_write: Callable[[sync_pb2.SyncResponse], bool],
    count: Callable[[], None],
    observe: Callable[[int], None],
) -> Callable[[sync_pb2.SyncResponse], bool]:
    """The session queue's write-now hook for a call that can write without waiting
    (`EventQueue.write_now`): sends through `try_write` and counts what went out as the
    stream loop does (`count` per message, `observe` a sampled delta's server time)."""
    deltas = 0

    def write_now(event: sync_pb2.SyncResponse) -> bool:
        nonlocal deltas
        if not try_write(event):
            return False
        count()
        if event.HasField("delta"):
            deltas += 1
            if deltas % LATENCY_SAMPLE_EVERY == 0:
                observe(event.delta.server_time.ToNanoseconds())
        return True

    return write_now
