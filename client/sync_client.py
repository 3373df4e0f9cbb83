"""SyncClient: the typed, reconnecting client an application uses.

One background task owns the connection: it connects (trying endpoints in order of
preference), rejoins every subscription from its last offset and epoch, flushes the
outbox in order, keeps the link alive with heartbeats, and on any failure reconnects
with full-jitter backoff. The application sees typed events, acknowledgements and state
changes; it never sees a duplicate delta, and never misses a gap without being told.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from syncwire.v1 import sync_pb2, types_pb2
from wire.tasks import cancel_and_wait

from .channels import ChannelPool
from .config import ClientConfig
from .delivery import Delivery
from .endpoints import Endpoint, as_endpoint
from .errors import (
    FATAL_CODES,
    ClientClosedError,
    ConnectionLost,
    NotConnectedError,
    NotSubscribedError,
    RequestFailed,
    ServerDisconnected,
    ServerUnreachableError,
    SwitchingEndpoint,
    SyncError,
    TokenRefusedError,
    from_rpc_error,
)
from .events import (
    ErrorEvent,
    SyncEvent,
    TokenRefused,
)
from .hybrid import EndpointSelector, probe
from .inbox import Inbox
from .link import SyncLink, supervised
from .outbox import Outbox, OutboxEntry
from .paging import history_pages, presence_pages
from .publishing import PendingPublish, PublishPump, check_size
from .state import ConnectionState, StateChange, StateTracker
from .stats import ClientStats
from .subscription import Subscription
from .tokens import TokenSource, with_token

log = logging.getLogger(__name__)

CrdtType: TypeAlias = types_pb2.CrdtType.ValueType
PayloadEncoding: TypeAlias = types_pb2.PayloadEncoding.ValueType
PresenceAction: TypeAlias = types_pb2.PresenceAction.ValueType


class _Default(enum.Enum):
    DEFAULT = enum.auto()


_DEFAULT: Final = _Default.DEFAULT
"""`connect(timeout=...)` not given: `ClientConfig.first_connect_timeout` applies."""


class SyncClient:
    """A connection to a syncwire server over gRPC, WebSocket or in-process.

    Args:
        endpoints: One endpoint, or several in order of preference (hybrid mode), as
            URLs (``grpc://host:port``, ``ws://host:port``) or `Endpoint` objects.
        config: Timeouts, backoff, heartbeats, outbox and channel settings.

    Use it as an async context manager (``async with SyncClient(...) as client:``);
    entering starts connecting in the background, leaving closes everything.
    """

    def __init__(
        self,
        endpoints: str | Endpoint | Sequence[str | Endpoint],
        config: ClientConfig | None = None,
    ) -> None:
        if isinstance(endpoints, str | Endpoint):
            endpoints = [endpoints]
        self.config = config or ClientConfig()
        self._selector = EndpointSelector([as_endpoint(e) for e in endpoints])
        self._pool = ChannelPool(
            self.config.channel_factory,
            dataclasses.replace(self.config.channel, connect_timeout=self.config.connect_timeout),
        )
        self._replica_id = self.config.replica_id or str(uuid.uuid4())
        self._outbox = Outbox.open(self.config.outbox_path, self.config.outbox_limit)
        self._inbox: Inbox[SyncEvent] = Inbox(
            self.config.event_buffer, self.config.event_buffer_bytes
        )
        self._tracker = StateTracker(ConnectionState.OFFLINE)
        self._subscriptions: dict[str, Subscription] = {}
        self._link: SyncLink | None = None
        self._connected_link: SyncLink | None = None
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._reconnect_now = False
        self._closed = False
        self._ever_connected = False
        self.stats = ClientStats()
        self._delivery = Delivery(self._subscriptions, self._inbox, self.stats, self._revoked)
        self._tokens = (
            None
            if self.config.token_provider is None
            else TokenSource(
                self.config.token_provider, self.config.token_refresh_margin, self.config.clock
            )
        )
        self._token_retried = False

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> SyncClient:
        await self.connect(wait=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(
        self, *, wait: bool = True, timeout: float | Literal[_Default.DEFAULT] | None = _DEFAULT
    ) -> None:
        """Starts connecting (again, if the client gave up and went OFFLINE).

        With `wait`, returns once CONNECTED and raises the last error if the client goes
        OFFLINE first. Until the client's first connection succeeds, the wait is bounded
        by `timeout` seconds (default `ClientConfig.first_connect_timeout`, 10 s; None
        waits as long as it takes): past it, raises ServerUnreachableError and the client
        keeps trying in the background. After a first success, reconnects retry as
        `ClientConfig.backoff` says and `connect()` waits for them without a bound.
        """
        self._check_open()
        if self._runner is None:
            self._tracker.set(ConnectionState.CONNECTING)
            self._runner = asyncio.create_task(self._run(), name="syncwire-client")
        elif self.state is ConnectionState.OFFLINE:
            await self.reconnect()
        if not wait:
            return
        limit = self.config.first_connect_timeout if isinstance(timeout, _Default) else timeout
        waiting = self._tracker.wait_for(
            ConnectionState.CONNECTED, ConnectionState.OFFLINE, ConnectionState.CLOSED
        )
        if self._ever_connected or limit is None:
            state = await waiting
        else:
            try:
                async with asyncio.timeout(limit):
                    state = await waiting
            except TimeoutError:
                last = self._tracker.last_change
                raise ServerUnreachableError(
                    [e.url for e in self._selector.endpoints],
                    limit,
                    last.error if last is not None else None,
                ) from None
        if state is ConnectionState.CONNECTED:
            return
        last = self._tracker.last_change
        if state is ConnectionState.OFFLINE and last is not None and last.error is not None:
            raise last.error
        raise ClientClosedError()

    async def close(self, *, flush_timeout: float | None = None) -> None:
        """Waits up to `flush_timeout` (default: config.close_flush_timeout) for the outbox
        to drain while connected, then closes the stream and every channel. Publishes
        still unacknowledged fail with ClientClosedError (and stay in the outbox file,
        if there is one)."""
        if self._closed:
            return
        timeout = self.config.close_flush_timeout if flush_timeout is None else flush_timeout
        if timeout > 0 and len(self._outbox) and self.state is ConnectionState.CONNECTED:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.wait_empty(), timeout)
        self._closed = True
        self._wake.set()
        if self._runner is not None:
            await cancel_and_wait(self._runner, log, "the connection runner")
        if self._link is not None:
            await self._link.close()
        await self._pool.close()
        self._outbox.close()
        for subscription in self._subscriptions.values():
            subscription.detach()
            if not subscription.activated.done():
                subscription.activated.set_exception(ClientClosedError())
                subscription.activated.exception()
        self._tracker.set(ConnectionState.CLOSED)
        self._inbox.close()

    async def reconnect(self) -> None:
        """Reconnects now: from OFFLINE, during a backoff wait, or dropping the current
        connection."""
        self._check_open()
        if self._runner is None:
            await self.connect(wait=False)
            return
        self._reconnect_now = True
        link = self._link
        if link is not None:
            link.fail(ConnectionLost(grpc.StatusCode.CANCELLED, "reconnect requested"))
        elif self.state is ConnectionState.OFFLINE:
            self._tracker.set(self._retrying_state())
        self._wake.set()

    # ------------------------------------------------------------ observation

    @property
    def state(self) -> ConnectionState:
        """The connection state (CONNECTING, CONNECTED, RECONNECTING, OFFLINE, CLOSED)."""
        return self._tracker.state

    def state_changes(self) -> AsyncIterator[StateChange]:
        """Every state change from now on (ends after CLOSED)."""
        return self._tracker.changes()

    def on_state_change(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """Calls `callback` on every state change; returns a function that stops it."""
        return self._tracker.add_listener(callback)

    async def wait_for_state(self, *states: ConnectionState) -> ConnectionState:
        """Returns once the state is one of `states` (or CLOSED)."""
        return await self._tracker.wait_for(*states)

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint of the live connection, if any."""
        link = self._connected_link
        return link.endpoint if link is not None and link.alive else None

    @property
    def peer_id(self) -> str:
        """This connection's peer id as the server assigned it ("" when offline)."""
        link = self._connected_link
        return link.welcome.peer_id if link is not None else ""

    @property
    def server_info(self) -> types_pb2.ServerInfo | None:
        """The connected server's `ServerInfo` (from its Welcome); None while not
        connected.
        """
        link = self._connected_link
        return link.welcome.server_info if link is not None else None

    @property
    def replica_id(self) -> str:
        """The replica id put on published deltas (`ClientConfig.replica_id`, or a random
        UUID chosen at construction).
        """
        return self._replica_id

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """A snapshot of the subscriptions by collection id."""
        return dict(self._subscriptions)

    @property
    def outbox_size(self) -> int:
        """Publishes not yet acknowledged (queued or in flight)."""
        return len(self._outbox)

    def events(self) -> AsyncIterator[SyncEvent]:
        """Deltas, presence, recovery notices and unclaimed errors, in arrival order.
        Meant for one consumer; ends when the client is closed and drained."""
        return aiter(self._inbox)

    def __aiter__(self) -> AsyncIterator[SyncEvent]:
        return self.events()

    # ---------------------------------------------------------- subscriptions

    async def subscribe(
        self,
        collection_id: str,
        *,
        join_presence: bool = False,
        user_info: types_pb2.UserInfo | None = None,
        last_offset: int | None = None,
        epoch: str = "",
    ) -> Subscription:
        """Joins a collection and returns its handle once the server confirmed it.

        Pass `last_offset` and `epoch` to resume from a position the application saved;
        the handle's `recovery` says whether everything after it was replayed. Offline,
        this waits for the connection (bound it with asyncio.timeout). After reconnects
        the client rejoins by itself; a rejoin refused for now (retryable, e.g.
        `broker_unavailable`) is sent again after the server's `retry_after`, one refused
        for good ends the subscription with an `ErrorEvent`. Raises RequestFailed if the
        server refuses the first subscribe.
        """
        self._check_open()
        if collection_id in self._subscriptions:
            raise SyncError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"already subscribed to {collection_id!r}",
                reason_code="already_subscribed",
            )
        subscription = Subscription(
            self,
            collection_id,
            join_presence=join_presence,
            user_info=user_info,
            last_offset=last_offset,
            epoch=epoch,
        )
        self._subscriptions[collection_id] = subscription
        link = self._link
        if link is not None and link.alive:
            self._send_subscribe(link, subscription)
        try:
            await asyncio.shield(subscription.activated)
        except asyncio.CancelledError:
            if self._subscriptions.get(collection_id) is subscription:
                await self._forget(subscription)
            raise
        return subscription

    async def unsubscribe(self, collection_id: str) -> None:
        """Leaves a collection; no event of it is delivered afterwards, and it is not
        rejoined after reconnects. Raises NotSubscribedError without a subscription; the
        server's `Unsubscribed` is awaited up to `ClientConfig.request_timeout` seconds
        when connected (a lost answer is not an error: the client has already left)."""
        subscription = self._subscriptions.get(collection_id)
        if subscription is None:
            raise NotSubscribedError(collection_id)
        await self._forget(subscription)

    async def _forget(self, subscription: Subscription) -> None:
        del self._subscriptions[subscription.collection_id]
        if not subscription.activated.done():
            subscription.activated.set_exception(
                SyncError(
                    grpc.StatusCode.CANCELLED,
                    f"unsubscribed from {subscription.collection_id!r} before it was confirmed",
                    reason_code="unsubscribed",
                )
            )
            subscription.activated.exception()
        link = self._link
        if subscription.sent_on(link) and link is not None and link.alive:
            reply = link.request(
                unsubscribe=sync_pb2.Unsubscribe(collection_id=subscription.collection_id)
            )
            with contextlib.suppress(SyncError, TimeoutError):
                await asyncio.wait_for(reply, self.config.request_timeout)
        subscription.detach()

    def _send_subscribe(
        self, link: SyncLink, subscription: Subscription
    ) -> asyncio.Future[sync_pb2.SyncResponse] | None:
        """Sends the Subscribe unless it already went out on this link."""
        if subscription.sent_on(link):
            return None
        subscription.mark_sent(link)
        reply = link.request(subscribe=subscription.subscribe_message())
        reply.add_done_callback(lambda future: self._subscribe_answered(link, subscription, future))
        return reply

    def _subscribe_answered(
        self,
        link: SyncLink,
        subscription: Subscription,
        future: asyncio.Future[sync_pb2.SyncResponse],
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the link ended; the next one rejoins
        if self._subscriptions.get(subscription.collection_id) is not subscription:
            return
        response = future.result()
        if response.HasField("error"):
            error = RequestFailed.from_proto(response.error)
            if subscription.activated.done() and error.retryable:
                self._retry_rejoin(link, subscription, error)
                return
            del self._subscriptions[subscription.collection_id]
            subscription.detach()
            if subscription.activated.done():
                self._inbox.put(ErrorEvent(error, "subscribe"))
            else:
                subscription.activated.set_exception(error)
            return
        if not subscription.activated.done():
            subscription.activated.set_result(None)
        if subscription.presence is not None and link.alive:
            link.send(presence=subscription.presence)

    def _retry_rejoin(
        self, link: SyncLink, subscription: Subscription, error: RequestFailed
    ) -> None:
        """A rejoin refused for now (e.g. `broker_unavailable` while the node's Redis
        fails over): the subscription stays and is sent again on the same link after
        the server's `retry_after` (1 s without one); if the link ends first, the next
        one rejoins it. Dropping it would leave the collection silent."""
        log.info("rejoining %r refused (%s); retrying", subscription.collection_id, error)
        self.stats.rejoins_retried += 1

        def again() -> None:
            if (
                link.alive
                and subscription.sent_on(link)
                and self._subscriptions.get(subscription.collection_id) is subscription
            ):
                subscription.detach()
                self._send_subscribe(link, subscription)

        asyncio.get_running_loop().call_later(error.retry_after or 1.0, again)

    # ------------------------------------------------------------- publishing

    def submit(
        self,
        collection_id: str,
        data: bytes,
        *,
        crdt_type: CrdtType = types_pb2.CRDT_TYPE_UNSPECIFIED,
        encoding: PayloadEncoding = types_pb2.PAYLOAD_ENCODING_UNSPECIFIED,
        replica_id: str | None = None,
    ) -> PendingPublish:
        """Queues a delta in the outbox and returns at once; `await` the result for the
        acknowledgement.

        Raises OutboxFullError when the outbox is at its limit, MessageTooLargeError when
        the connected server's message limit is known and the delta exceeds it. A delta
        the server refuses for good fails the awaitable with RequestFailed (deltas an
        earlier process left in the outbox file, which nobody awaits, are reported as
        ErrorEvent instead)."""
        self._check_open()
        timestamp = Timestamp()
        timestamp.GetCurrentTime()
        delta = types_pb2.Delta(
            collection_id=collection_id,
            crdt_type=crdt_type,
            delta=data,
            timestamp=timestamp,
            replica_id=self._replica_id if replica_id is None else replica_id,
            encoding=encoding,
            client_message_id=str(uuid.uuid4()),
        )
        info = self.server_info
        check_size(delta, info.max_message_bytes if info is not None else 0)
        return PendingPublish(self._outbox.add(delta))

    async def publish(
        self,
        collection_id: str,
        data: bytes,
        *,
        crdt_type: CrdtType = types_pb2.CRDT_TYPE_UNSPECIFIED,
        encoding: PayloadEncoding = types_pb2.PAYLOAD_ENCODING_UNSPECIFIED,
        replica_id: str | None = None,
    ) -> sync_pb2.PublishAck:
        """Publishes a delta and returns the server's acknowledgement (its offset).

        Offline, the delta waits in the outbox and this returns after the reconnect
        flushed it; a retryable refusal (e.g. `broker_unavailable` while the server's
        Redis is away) is retried after its `retry_after_ms` the same way, so bound the
        wait with asyncio.timeout (`submit(...).last_error` says why it is still
        pending). Publishes of one collection take effect in the order they were made,
        also across such refusals (`PublishPump`). Cancelling the wait does not
        withdraw the delta."""
        pending = self.submit(
            collection_id, data, crdt_type=crdt_type, encoding=encoding, replica_id=replica_id
        )
        return await pending

    async def flush(self) -> None:
        """Returns once every queued publish has been acknowledged."""
        await self._outbox.wait_empty()

    def _publish_rejected(self, entry: OutboxEntry, error: RequestFailed) -> None:
        if entry.waiter is None:  # left by an earlier process: nobody else will hear of it
            self._inbox.put(ErrorEvent(error, "publish"))

    # --------------------------------------------------------------- presence

    def set_presence(
        self,
        collection_id: str,
        *,
        status: str = "",
        action: PresenceAction = types_pb2.PRESENCE_ACTION_UPDATE,
        user_info: types_pb2.UserInfo | None = None,
    ) -> None:
        """Sets this client's presence in a subscribed collection. Offline, it is sent
        after the reconnect; errors arrive as ErrorEvent. Raises SendBufferFullError when
        the connection's send buffer is full (the state is kept and sent on the next
        connection, or by calling again later)."""
        subscription = self._subscriptions.get(collection_id)
        if subscription is None:
            raise NotSubscribedError(collection_id)
        message = sync_pb2.SetPresence(collection_id=collection_id, action=action, status=status)
        if user_info is not None:
            message.user_info.CopyFrom(user_info)
        subscription.presence = None if action == types_pb2.PRESENCE_ACTION_LEAVE else message
        link = self._link
        if link is not None and link.alive and subscription.active and subscription.sent_on(link):
            link.send(presence=message)

    async def presence(self, collection_id: str) -> list[types_pb2.Presence]:
        """Who is present in `collection_id`: the presence entries (peer id, user info,
        status, action, timestamp), by peer id, via the unary GetPresence on the current
        connection, paging through the server's byte-bounded answers (`presence_pages`).

        Raises NotConnectedError when no connection comes up within
        `ClientConfig.request_timeout` seconds, and SyncError with the call's code and
        the server's reason code when it fails (`errors.from_rpc_error`): PERMISSION_DENIED
        without subscribe permission, INVALID_ARGUMENT for a bad collection id,
        DEADLINE_EXCEEDED; ConnectionLost for UNAVAILABLE (also broker_unavailable while
        the server's broker is away) and CANCELLED.
        """
        link = await self._ready_link("presence")
        response = await presence_pages(
            lambda request: self._unary(link.stub.GetPresence, request, "GetPresence"),
            sync_pb2.GetPresenceRequest(collection_id=collection_id),
        )
        return list(response.members)

    async def history(
        self, collection_id: str, *, since_offset: int = 0, epoch: str = "", limit: int = 0
    ) -> sync_pb2.GetHistoryResponse:
        """A slice of `collection_id`'s history (to resynchronise after a gap): deltas
        with offset > `since_offset` in `epoch` ("" accepts any), at most `limit`
        (0: the server's `history_size`, also the most it returns), with the epoch, the
        latest and oldest offsets and the recovery classification (docs/protocol.md,
        "The sync service"). The server bounds each GetHistory answer by bytes
        (`truncated`); this pages on from the last delta, in the first answer's epoch,
        until nothing more is due up to the first answer's latest offset
        (`history_pages`). Raises as `presence` does.
        """
        link = await self._ready_link("history")
        return await history_pages(
            lambda request: self._unary(link.stub.GetHistory, request, "GetHistory"),
            sync_pb2.GetHistoryRequest(
                collection_id=collection_id, since_offset=since_offset, epoch=epoch, limit=limit
            ),
        )

    async def _unary(self, method: Callable[..., Awaitable[Any]], request: Any, what: str) -> Any:
        """`method(request)` with the request timeout and call metadata; its failure
        becomes a SyncError (`errors.from_rpc_error`, naming `what`)."""
        try:
            return await method(
                request,
                timeout=self.config.request_timeout,
                metadata=self._call_metadata() or None,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, what=what) from None

    async def send_blob(self, data: bytes) -> types_pb2.BinaryAck:
        """Sends an opaque blob (`data`, bytes) on the stream; returns the server's
        BinaryAck (`peer_id`, `size` in bytes, `timestamp`). The blob is never relayed.

        Raises NotConnectedError when no connection comes up within
        `ClientConfig.request_timeout` seconds, RequestFailed with DEADLINE_EXCEEDED
        (reason "timeout") when the server does not answer within it, RequestFailed with
        the server's code when it refuses, ConnectionLost when the connection drops first.
        """
        response = await self._stream_request("send_blob", "blob", blob=sync_pb2.Blob(data=data))
        return response.binary_ack

    async def put_snapshot(
        self, collection_id: str, offset: int, data: bytes, *, epoch: str = ""
    ) -> sync_pb2.SnapshotStored:
        """Stores `data` (opaque bytes, at most the server's `--max-snapshot-bytes`) as
        `collection_id`'s snapshot: its state including every delta up to `offset` of
        `epoch` ("" = the current one). Late joiners whose position history cannot cover
        receive it (docs/protocol.md, "Snapshots"). Returns the stored `SnapshotStored`
        (collection id, offset, epoch). Needs a server started with `--client-snapshots`
        and permission to publish to the collection.

        Raises RequestFailed with the server's code and reason: PERMISSION_DENIED
        `snapshots_not_allowed`, INVALID_ARGUMENT `snapshot_too_large`, OUT_OF_RANGE
        `snapshot_offset_ahead`, FAILED_PRECONDITION `snapshot_epoch_mismatch` /
        `snapshot_outdated`; and as `send_blob` does when not connected or unanswered.
        """
        put = sync_pb2.PutSnapshot(
            collection_id=collection_id, offset=offset, data=data, epoch=epoch
        )
        response = await self._stream_request("put_snapshot", "snapshot", put_snapshot=put)
        return response.snapshot_stored

    async def _stream_request(self, what: str, noun: str, **request: Any) -> sync_pb2.SyncResponse:
        """Sends one request on the Sync stream and returns its direct answer; raises as
        `send_blob` documents (`noun` names the request in the timeout message)."""
        link = await self._ready_link(what)
        timeout = self.config.request_timeout
        try:
            response = await asyncio.wait_for(link.request(**request), timeout)
        except TimeoutError:
            raise RequestFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{noun} not acknowledged within {timeout:g} s",
                reason_code="timeout",
            ) from None
        if response.HasField("error"):
            raise RequestFailed.from_proto(response.error)
        return response

    async def _ready_link(self, what: str) -> SyncLink:
        """The connected link, waiting up to request_timeout for one."""
        self._check_open()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                while True:
                    link = self._connected_link
                    if link is not None and link.alive:
                        return link
                    await self._tracker.wait_for(ConnectionState.CONNECTED)
                    self._check_open()
        except TimeoutError:
            raise NotConnectedError(what) from None

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError()

    def _call_metadata(self) -> tuple[tuple[str, str], ...]:
        """`config.metadata`, with the token provider's current token if there is one."""
        token = self._tokens.token if self._tokens is not None else None
        return with_token(self.config.metadata, token)

    def _revoked(self, collection_id: str, error: RequestFailed) -> None:
        """The server ended one subscription (PERMISSION_DENIED pushed for it): drop it
        and tell the application; the connection carries on."""
        subscription = self._subscriptions.pop(collection_id, None)
        if subscription is None:
            return
        subscription.detach()
        if not subscription.activated.done():
            subscription.activated.set_exception(error)
            subscription.activated.exception()
        self._inbox.put(ErrorEvent(error, "subscribe"))

    # -------------------------------------------------------- connection loop

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                link = await self._connect_any()
            except SyncError as error:
                retry, error = self._token_refusal(error, endpoint=None)
                if retry:
                    continue
                failures += 1
                if await self._after_failure(error, failures, endpoint=None):
                    failures = 0
                continue
            end, reached = await self._serve(link)
            if self._closed:
                return
            self.stats.disconnects += 1
            retry, end = self._token_refusal(end, endpoint=link.endpoint)
            if retry:
                continue
            if isinstance(end, SwitchingEndpoint):
                self._tracker.set(
                    ConnectionState.RECONNECTING,
                    endpoint=link.endpoint.url,
                    transport=link.endpoint.transport,
                    error=end,
                    delay=0.0,
                )
                failures = 0
                continue
            # A connection that never got its subscriptions back counts as a failure.
            failures = 1 if reached else failures + 1
            if await self._after_failure(end, failures, endpoint=link.endpoint):
                failures = 0

    def _token_refusal(
        self, error: SyncError, *, endpoint: Endpoint | None
    ) -> tuple[bool, SyncError]:
        """With a token provider, an UNAUTHENTICATED failure asks the provider once more
        at once: returns (True, error) to retry now. A second refusal in a row becomes
        TokenRefusedError, reported as a TokenRefused event: returns (False, it), and
        `_after_failure` then stops (UNAUTHENTICATED is fatal). Other errors pass."""
        if self._tokens is None or error.code is not grpc.StatusCode.UNAUTHENTICATED:
            return False, error
        if not isinstance(error, TokenRefusedError):
            if not self._token_retried:
                self._token_retried = True
                log.info("token refused (%s); asking the token provider once more", error)
                self._tracker.set(
                    self._retrying_state(),
                    endpoint=endpoint.url if endpoint is not None else None,
                    transport=endpoint.transport if endpoint is not None else None,
                    error=error,
                    delay=0.0,
                )
                return True, error
            error = TokenRefusedError(error)
        self._inbox.put(TokenRefused(error))
        return False, error

    async def _after_failure(
        self, error: SyncError, failures: int, *, endpoint: Endpoint | None
    ) -> bool:
        """Goes OFFLINE (and waits for `reconnect()`) or waits out a backoff delay.
        Returns True when `reconnect()` asked for a fresh start."""
        url = endpoint.url if endpoint is not None else None
        transport = endpoint.transport if endpoint is not None else None
        give_up = (
            error.code in FATAL_CODES
            or (isinstance(error, ServerDisconnected) and not error.reconnect)
            or self.config.backoff.exhausted(failures)
        )
        self._wake.clear()
        if self._reconnect_now:
            self._reconnect_now = False
            return True
        if give_up:
            log.warning("giving up reconnecting: %s", error)
            self._tracker.set(
                ConnectionState.OFFLINE, endpoint=url, transport=transport, error=error
            )
            await self._wake.wait()  # reconnect() (which leaves OFFLINE) or close()
            self._reconnect_now = False
            self._token_retried = False
            return True
        delay = self.config.backoff.delay(failures)
        self._tracker.set(
            self._retrying_state(), endpoint=url, transport=transport, error=error, delay=delay
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        restart, self._reconnect_now = self._reconnect_now, False
        return restart

    def _retrying_state(self) -> ConnectionState:
        return ConnectionState.RECONNECTING if self._ever_connected else ConnectionState.CONNECTING

    async def _connect_any(self) -> SyncLink:
        """A link to the most preferred endpoint that answers."""
        last_error: SyncError | None = None
        if self._tokens is not None:
            self.stats.token_requests += 1
            await self._tokens.fetch()
        metadata = self._call_metadata()
        for endpoint in self._selector.candidates():
            self.stats.connect_attempts += 1
            link = SyncLink(
                self._pool.get(endpoint),
                endpoint,
                self._delivery.handle,
                metadata=metadata,
                stats=self.stats,
                send_buffer_bytes=self.config.send_buffer_bytes,
            )
            try:
                await link.open(self.config.connect_timeout)
            except SyncError as error:
                log.info("cannot connect to %s: %s", endpoint.url, error)
                last_error = error
                await link.close()
                self._pool.discard(endpoint)
                if error.code is grpc.StatusCode.UNAUTHENTICATED:
                    raise  # the token is the problem, not the endpoint
                continue
            except asyncio.CancelledError:
                await link.close()
                raise
            return link
        assert last_error is not None
        raise last_error

    async def _serve(self, link: SyncLink) -> tuple[SyncError, bool]:
        """Runs one connection until it ends; returns why, and whether it got as far
        as CONNECTED."""
        self._link = link
        info = link.welcome.server_info
        advertised = (
            info.heartbeat_interval_seconds if info.HasField("heartbeat_interval_seconds") else None
        )
        interval, timeout = self.config.liveness(advertised)
        link.start_heartbeats(interval, timeout)
        background: list[asyncio.Task[None]] = []
        reached = False
        try:
            try:
                await self._restore(link)
            except SyncError as error:
                link.fail(error)
            if link.alive:
                reached = True
                self._token_retried = False
                self._connected_link = link
                self._ever_connected = True
                self.stats.connections += 1
                self._tracker.set(
                    ConnectionState.CONNECTED,
                    endpoint=link.endpoint.url,
                    transport=link.endpoint.transport,
                )
                pump = PublishPump(
                    self._outbox,
                    link,
                    self.config.max_in_flight,
                    self._publish_rejected,
                    self.stats,
                )
                background.append(supervised(link, pump.run(), "outbox pump"))
                background.append(
                    supervised(
                        link,
                        self._delivery.resume_paused(link, self._send_subscribe),
                        "paused-subscription rejoin",
                    )
                )
                if self._tokens is not None:
                    background.append(
                        supervised(
                            link, self._keep_token_fresh(link, self._tokens), "token refresh"
                        )
                    )
                preferred = self._selector.preferred_over(link.endpoint)
                if preferred:
                    background.append(
                        supervised(link, self._probe_preferred(link, preferred), "endpoint probe")
                    )
            end = await asyncio.shield(link.ended)
        finally:
            for task in background:
                await cancel_and_wait(task, log, task.get_name())
            await link.close()
            self._link = None
            self._connected_link = None
            for subscription in self._subscriptions.values():
                subscription.detach()
            # Never reuse a channel whose connection failed (it may be half-open), and
            # leave a fallback endpoint's channel behind when switching back.
            self._pool.discard(link.endpoint)
        log.info("connection to %s ended: %s", link.endpoint.url, end)
        return end, reached

    async def _restore(self, link: SyncLink) -> None:
        """Rejoins every subscription from its position; returns once all answered."""
        replies = [
            reply
            for subscription in list(self._subscriptions.values())
            if (reply := self._send_subscribe(link, subscription)) is not None
        ]
        if not replies:
            return
        _, unanswered = await asyncio.wait(replies, timeout=self.config.request_timeout)
        if unanswered and link.alive:
            raise ConnectionLost(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{len(unanswered)} subscriptions not confirmed within "
                f"{self.config.request_timeout:g} s",
            )

    async def _probe_preferred(self, link: SyncLink, preferred: tuple[Endpoint, ...]) -> None:
        """While on a fallback, moves back to a preferred endpoint once it answers."""
        while link.alive:
            await asyncio.sleep(self.config.probe_interval)
            for endpoint in preferred:
                channel = self._pool.get(endpoint)
                if await probe(channel, self.config.connect_timeout, self._call_metadata()):
                    log.info("preferred endpoint %s is back", endpoint.url)
                    link.fail(SwitchingEndpoint(endpoint.url))
                    return
                self._pool.discard(endpoint)

    async def _keep_token_fresh(self, link: SyncLink, tokens: TokenSource) -> None:
        """Runs for one connected link: ahead of each token's expiry, asks the provider
        for the next one and sends it in band (RefreshToken). A refusal asks once more;
        a second one ends the link with TokenRefusedError. A server that cannot refresh
        in band (any other Error) gets the new token by a reconnect instead."""
        retried = False
        while link.alive:
            if not retried:
                when = tokens.refresh_at()
                if when is None:
                    return  # no exp: the next reconnect asks the provider
                await tokens.clock.sleep_until(when)
            if not link.alive:
                return
            try:
                self.stats.token_requests += 1
                token = await tokens.fetch()
                reply = await asyncio.wait_for(
                    link.request(refresh_token=sync_pb2.RefreshToken(token=token)),
                    self.config.request_timeout,
                )
            except TimeoutError:
                link.fail(
                    ConnectionLost(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"token refresh not answered within {self.config.request_timeout:g} s",
                    )
                )
                return
            except SyncError as error:  # the link ended, or the provider failed
                link.fail(error)
                return
            if reply.HasField("token_refreshed"):
                self.stats.token_refreshes += 1
                retried = False
                continue
            refusal = RequestFailed.from_proto(reply.error)
            if refusal.code is not grpc.StatusCode.UNAUTHENTICATED:
                log.warning("in-band token refresh refused (%s); reconnecting instead", refusal)
                link.fail(
                    ConnectionLost(
                        grpc.StatusCode.UNAVAILABLE,
                        f"in-band token refresh refused ({refusal}); reconnecting with the "
                        "new token",
                        reason_code="token_refresh",
                    )
                )
                return
            if retried:
                link.fail(TokenRefusedError(refusal))
                return
            log.info("refreshed token refused (%s); asking the token provider once more", refusal)
            retried = True
