"""One client's sync session, independent of the transport that carries it.

The gRPC servicer, the WebSocket adapter (through the same servicer) and the legacy
JSON handler all drive a `Session`: they feed it `SyncRequest`s and send on what its
`EventQueue` yields. Subscriptions, recovery, presence and acknowledgements live here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from syncwire.v1 import sync_pb2, types_pb2

from .auth import INVALID_TOKEN, forbidden, unauthenticated
from .broker import BrokerError, HistorySlice
from .broker.base import StoredSnapshot
from .broker.seam import LiveJoin
from .clock import now_timestamp
from .errors import RequestError, broker_unavailable, validate_collection_id
from .event_queue import EventQueue, Replay, SessionEnd
from .hooks import Caller, caller_of
from .publish_order import PublishHolds

if TYPE_CHECKING:
    from .auth import Principal
    from .core import SyncCore

log = logging.getLogger(__name__)

_SNAPSHOT_RECOVERIES = (
    sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD,
    sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH,
)
"""Outcomes after which a covering snapshot is sent (history could not cover)."""


@dataclass(slots=True)
class _Subscription:
    """A collection this session receives. Its live events reach the session through a
    `LiveJoin` sink (which joins them to the history replay without gap or duplicate)
    and, until its `replay` is sent, wait behind the replay in the session queue."""

    collection_id: str
    replay: Replay


class Session:
    """State and behaviour of one connected peer."""

    def __init__(self, core: SyncCore, *, transport: str, peer_address: str) -> None:
        self.core = core
        self.peer_id = str(uuid.uuid4())
        self.transport = transport
        self.peer_address = peer_address
        self.queue = EventQueue(core.config.subscriber_queue, core.config.subscriber_queue_bytes)
        self.last_seen = time.monotonic()
        self.principal: Principal | None = None
        self.user_info: types_pb2.UserInfo | None = None
        """User information the connect hook attached: presence shows it instead of the
        client's own."""
        self.expires_at: float | None = None
        """When the session's token stops being accepted (authenticator clock)."""
        self._end_timer: asyncio.TimerHandle | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        self._sinks: dict[str, object] = {}
        self._present: set[str] = set()
        self._closed = False
        self._release: asyncio.Task[None] | None = None
        self.publish_holds = PublishHolds(clock=core.hold_clock)
        """Collections held behind a publish refused for now (`server.publish_order`)."""

    # ----------------------------------------------------------------- lifecycle

    @property
    def user_id(self) -> str:
        """The user this session belongs to: its token's `sub`, else the user id the
        connect hook attached, else ""."""
        if self.principal is not None:
            return self.principal.subject
        return self.user_info.user_id if self.user_info is not None else ""

    def caller(self) -> Caller:
        """This session as hooks see it (token subject and claims as of now)."""
        return caller_of(self.peer_id, self.transport, self.peer_address, self.principal)

    def welcome(self) -> sync_pb2.SyncResponse:
        """The `Welcome{peer_id, timestamp, server_info}` that opens the stream."""
        return sync_pb2.SyncResponse(
            welcome=types_pb2.Welcome(
                peer_id=self.peer_id,
                timestamp=now_timestamp(),
                server_info=self.core.server_info(),
            )
        )

    def end(self, end: SessionEnd, *, discard_pending: bool = False) -> None:
        """Asks the transport to finish the stream with `end` (after a Disconnect)."""
        if not self.queue.ended:
            self.core.metrics.disconnects.labels(end.metric_label).inc()
            log.info(
                "session ending",
                extra={"peer_id": self.peer_id, "code": end.code.name, "reason": end.reason},
            )
        self.queue.end(end, discard_pending=discard_pending)

    def authorize_until(self, principal: Principal, deadline: float, now: float) -> None:
        """Puts `principal` in force until `deadline` (POSIX seconds of the
        authenticator's clock, `now` on it): the session then ends UNAUTHENTICATED
        ("token expired") unless a RefreshToken moves the deadline first. The core's
        upkeep also checks `expires_at` against that clock, so an injected clock ends
        the session when it passes the deadline."""
        self.principal = principal
        self.expires_at = deadline
        if self._end_timer is not None:
            self._end_timer.cancel()
        self._end_timer = asyncio.get_running_loop().call_later(
            max(deadline - now, 0.0), self.expire_token
        )

    def expire_token(self) -> None:
        """Ends the session because its token expired."""
        self.end(
            SessionEnd(grpc.StatusCode.UNAUTHENTICATED, "token expired", label="token_expired")
        )

    async def close(self, reason: str = "closed") -> None:
        """Releases everything the session holds: subscriptions and presence."""
        if self._closed:
            return
        self._closed = True
        if self._end_timer is not None:
            self._end_timer.cancel()
        self.queue.end(SessionEnd(grpc.StatusCode.CANCELLED, reason))
        for collection_id in list(self._subscriptions):
            await self._drop_subscription(collection_id, reason)
        self.core.registry.remove(self)

    # ------------------------------------------------------------------ requests

    async def admit(
        self, request_id: int, size: int, publish: types_pb2.Delta | None = None
    ) -> bool:
        """Waits while the client leaves too many replies unread (see
        `EventQueue.wait_for_reply_room`), then lets the message through or refuses it
        with an `Error` reply and returns False. A `publish` (the delta of a Publish
        request) whose collection is held behind an earlier publish refused for now is
        refused ABORTED `publish_held` (`PublishHolds.check`), uncharged, and reading goes
        on. Otherwise one client message of `size` bytes is charged to the connection's
        rate limit; over it the message is refused (rate_limited, retry_after_ms, and a
        publish holds its collection) and the caller's reading pauses until then: the
        client is slowed down by back-pressure instead of being answered with a flood of
        errors."""
        await self.queue.wait_for_reply_room()
        try:
            if publish is not None:
                self.publish_holds.check(publish)
        except RequestError as exc:
            self._refuse(request_id, exc)
            return False
        try:
            self.core.charge(self.peer_address, size)
        except RequestError as exc:
            self._refuse(request_id, exc, publish)
            await asyncio.sleep(exc.retry_after_ms / 1000)
            return False
        return True

    def _refuse(
        self, request_id: int, error: RequestError, publish: types_pb2.Delta | None = None
    ) -> None:
        """Answers request `request_id` with `error`; a refused `publish` may hold its
        collection (`PublishHolds.refused`)."""
        self.core.metrics.request_errors.labels(error.reason_code).inc()
        if publish is not None:
            self.publish_holds.refused(publish, error)
        self.reply(request_id, error.to_response())

    async def handle(self, request: sync_pb2.SyncRequest) -> None:
        """Applies one client request. Request-level problems become an `Error` reply
        carrying the request id; the session carries on."""
        self.last_seen = time.monotonic()
        kind = request.WhichOneof("kind")
        metrics = self.core.metrics
        metrics.messages_in.labels(self.transport, kind or "none").inc()
        metrics.bytes_in.labels(self.transport).inc(request.ByteSize())
        try:
            if kind == "subscribe":
                await self.subscribe(request.request_id, request.subscribe)
            elif kind == "unsubscribe":
                await self.unsubscribe(request.request_id, request.unsubscribe.collection_id)
            elif kind == "publish":
                await self.publish(request.request_id, request.publish.delta)
            elif kind == "presence":
                await self.set_presence(request.presence)
            elif kind == "heartbeat":
                return
            elif kind == "put_snapshot":
                await self.put_snapshot(request.request_id, request.put_snapshot)
            elif kind == "refresh_token":
                await self.refresh_token(request.request_id, request.refresh_token.token)
            elif kind == "blob":
                self.reply(
                    request.request_id,
                    sync_pb2.SyncResponse(
                        binary_ack=types_pb2.BinaryAck(
                            peer_id=self.peer_id,
                            size=len(request.blob.data),
                            timestamp=now_timestamp(),
                        )
                    ),
                )
            else:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT, "empty_request", "request sets no kind"
                )
        except RequestError as exc:
            self._refuse(request.request_id, exc, _published(request))
        except BrokerError as exc:
            metrics.broker_errors.inc()
            self._refuse(request.request_id, broker_unavailable(exc), _published(request))

    def reply(self, request_id: int, response: sync_pb2.SyncResponse) -> None:
        """Sends a direct reply. Never refused: the request reader waits for room
        before it handles the next request (`admit`), so replies stay bounded."""
        response.request_id = request_id
        self.queue.put_reply(response)

    def deliver(self, event: sync_pb2.SyncResponse) -> None:
        """Queues a live event; a session that cannot keep up is ended (slow consumer)
        and recovers what it missed from history when it reconnects."""
        if not self.queue.put(event):
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        config = self.core.config
        log.warning("slow consumer dropped", extra={"peer_id": self.peer_id})
        self.abandon(
            SessionEnd(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"slow consumer: more than {config.subscriber_queue} messages or "
                f"{config.subscriber_queue_bytes} bytes of live events pending; "
                "reconnect and recover from your last offset",
                label="slow_consumer",
            )
        )

    def abandon(self, end: SessionEnd) -> None:
        """Ends the session with `end` without delivering what is queued, and releases
        its subscriptions, presence and slot at once: the transport may stay blocked on
        this peer's socket (full, or dead) until keepalive gives up, and nobody should
        wait for that."""
        if self._release is not None:
            return
        self.end(end, discard_pending=True)
        self._release = asyncio.get_running_loop().create_task(self.close(end.reason))

    async def subscribe(self, request_id: int, subscribe: sync_pb2.Subscribe) -> None:
        """Handles `Subscribe`: validates and authorizes, joins the broker (attach, then
        history from `last_offset`), answers `Subscribed` with request id `request_id`,
        replays, then delivers live events. Raises RequestError (invalid_collection,
        forbidden, already_subscribed, too_many_subscriptions) or BrokerError.
        """
        collection_id = subscribe.collection_id
        validate_collection_id(collection_id)
        self.core.authorize(self.principal, "subscribe", collection_id)
        if collection_id in self._subscriptions:
            raise _already_subscribed(collection_id)
        limit = self.core.config.max_subscriptions
        if len(self._subscriptions) >= limit:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too_many_subscriptions",
                f"a session may subscribe to at most {limit} collections at once; "
                "unsubscribe from one first",
                collection_id=collection_id,
            )
        initial_data = b""
        if self.core.hooks.enabled["subscribe"]:
            initial_data = await self.core.hooks.subscribe(self.caller(), collection_id)
            if collection_id in self._subscriptions:  # subscribed meanwhile
                raise _already_subscribed(collection_id)
        replay = self.queue.catch_up()
        self._subscriptions[collection_id] = _Subscription(collection_id, replay)

        queue = self.queue

        def hold(event: sync_pb2.SyncResponse) -> None:
            live = replay.done and not replay.cancelled  # queue.hold's common case
            if not (queue.put(event) if live else queue.hold(replay, event)):
                self._slow_consumer()

        sink = LiveJoin(hold)
        self._sinks[collection_id] = sink
        broker = self.core.broker
        try:
            since = subscribe.last_offset if subscribe.HasField("last_offset") else None
            history = await broker.join(
                collection_id, sink, since, subscribe.epoch, self.core.config.history_size
            )
            if history.recovery == sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH and since is not None:
                history = await self._new_epoch_history(collection_id, history.epoch)
            snapshot = None
            if since is not None and history.recovery in _SNAPSHOT_RECOVERIES:
                snapshot = await self._covering_snapshot(history)
        except BaseException:
            self._subscriptions.pop(collection_id, None)
            self._sinks.pop(collection_id, None)
            self.queue.cancel(replay)
            await broker.detach(collection_id, sink)  # a no-op if join already did
            raise
        outcome = sync_pb2.RecoveryStatus.Name(history.recovery)  # type: ignore[arg-type]
        self.core.metrics.recoveries.labels(outcome.removeprefix("RECOVERY_STATUS_").lower()).inc()
        self.reply(
            request_id,
            sync_pb2.SyncResponse(
                subscribed=sync_pb2.Subscribed(
                    collection_id=collection_id,
                    epoch=history.epoch,
                    offset=history.offset,
                    recovery=history.recovery,  # type: ignore[arg-type]
                    replayed=len(history.events),
                    oldest_offset=history.oldest_offset,
                    snapshot_offset=0 if snapshot is None else snapshot.offset,
                    initial_data=initial_data,
                )
            ),
        )
        # The client now has the collection up to history.offset (replayed, or the
        # state it knows); live events beyond it follow, each exactly once, behind the
        # replay, which flows as the client reads.
        for event in sink.go_live(history.epoch, history.offset):
            hold(event)
        if snapshot is None:
            self.queue.start(replay, history.events)
        else:
            self.queue.start(replay, [snapshot.to_response(), *history.events])
        if subscribe.join_presence:
            given = subscribe.user_info if subscribe.HasField("user_info") else None
            user_info = self._user_info(given, joining=True)
            await broker.presence_join(collection_id, self.peer_id, user_info)
            self._present.add(collection_id)
            self._presence_changed(collection_id, types_pb2.PRESENCE_ACTION_JOIN, "", user_info)

    async def _covering_snapshot(self, history: HistorySlice) -> StoredSnapshot | None:
        """After GAP_TOO_OLD or EPOCH_MISMATCH: the collection's snapshot when it and
        history together cover everything (`StoredSnapshot.covers`); `history` then
        becomes RECOVERY_STATUS_SNAPSHOT holding only the deltas after the snapshot."""
        snapshot = await self.core.broker.get_snapshot(history.collection_id)
        if snapshot is None or not snapshot.covers(history):
            return None
        history.recovery = sync_pb2.RECOVERY_STATUS_SNAPSHOT
        history.events = [e for e in history.events if e.delta.offset > snapshot.offset]
        return snapshot

    async def put_snapshot(self, request_id: int, put: sync_pb2.PutSnapshot) -> None:
        """Handles `PutSnapshot` (when `client_snapshots` is on): see
        `SyncCore.put_snapshot`; answers `SnapshotStored` with request id `request_id`.
        Raises RequestError (PERMISSION_DENIED `snapshots_not_allowed` when off)."""
        if not self.core.config.client_snapshots:
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                "snapshots_not_allowed",
                "this server does not let clients put snapshots",
                collection_id=put.collection_id,
            )
        stored = await self.core.put_snapshot(
            put.collection_id, put.offset, put.data, put.epoch, principal=self.principal
        )
        self.reply(request_id, sync_pb2.SyncResponse(snapshot_stored=stored))

    async def _new_epoch_history(self, collection_id: str, epoch: str) -> HistorySlice:
        """After EPOCH_MISMATCH: what history holds of the new epoch, from its first
        offset (within the history limits), still classified EPOCH_MISMATCH."""
        held = await self.core.broker.history(
            collection_id, 0, epoch, self.core.config.history_size
        )
        held.recovery = sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
        return held

    async def refresh_token(self, request_id: int, token: str) -> None:
        """Replaces the session's token (RefreshToken): checked like the first, same
        `sub`; the expiry moves to the new token's and its grants apply from now on
        (subscriptions it no longer allows end with a pushed PERMISSION_DENIED Error).
        Raises RequestError(UNAUTHENTICATED) and changes nothing when refused."""
        core = self.core
        authenticator = core.authenticator
        if authenticator is None:  # authentication is off: nothing expires
            self.reply(request_id, sync_pb2.SyncResponse(token_refreshed=sync_pb2.TokenRefreshed()))
            return
        principal = core.check_revoked(authenticator.authenticate(token or None))
        if self.principal is not None and principal.subject != self.principal.subject:
            raise unauthenticated(
                INVALID_TOKEN, "invalid token: its sub differs from the session's"
            )
        deadline = authenticator.deadline(principal)
        self.authorize_until(principal, deadline, authenticator.clock())
        expires_at = Timestamp()
        expires_at.FromNanoseconds(int(deadline * 1e9))
        self.reply(
            request_id,
            sync_pb2.SyncResponse(token_refreshed=sync_pb2.TokenRefreshed(expires_at=expires_at)),
        )
        for collection_id in list(self._subscriptions):
            if not principal.may("subscribe", collection_id):
                await self.end_subscription(collection_id, forbidden("subscribe", collection_id))

    async def end_subscription(self, collection_id: str, error: RequestError) -> int:
        """Ends the subscription to `collection_id` (if any) and pushes `error` about it
        (request id 0); 1 when there was one, else 0."""
        if collection_id not in self._subscriptions:
            return 0
        await self._drop_subscription(collection_id, error.reason_code)
        self.reply(0, error.to_response())
        return 1

    async def unsubscribe(self, request_id: int, collection_id: str) -> None:
        """Handles `Unsubscribe`: leaves presence, detaches, answers `Unsubscribed`.
        Raises RequestError(NOT_FOUND, "not_subscribed") without a subscription.
        """
        if collection_id not in self._subscriptions:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                "not_subscribed",
                f"not subscribed to {collection_id!r}",
                collection_id=collection_id,
            )
        await self._drop_subscription(collection_id, "unsubscribed")
        self.reply(
            request_id,
            sync_pb2.SyncResponse(unsubscribed=sync_pb2.Unsubscribed(collection_id=collection_id)),
        )

    async def _drop_subscription(self, collection_id: str, reason: str) -> None:
        subscription = self._subscriptions.pop(collection_id, None)
        if subscription is not None:
            self.queue.cancel(subscription.replay)
        sink = self._sinks.pop(collection_id, None)
        try:
            if sink is not None:
                await self.core.broker.detach(collection_id, sink)  # type: ignore[arg-type]
            if collection_id in self._present:
                self._present.discard(collection_id)
                await self.core.broker.presence_leave(collection_id, self.peer_id, reason)
                self._presence_changed(collection_id, types_pb2.PRESENCE_ACTION_LEAVE, reason)
        except BrokerError as exc:
            log.warning("cleanup after %s failed: %s", collection_id, exc)

    async def publish(self, request_id: int, delta: types_pb2.Delta) -> None:
        """Handles `Publish`: publishes as this session's caller with its principal (see
        `SyncCore.publish`) and answers the `PublishAck` with request id `request_id`.
        """
        ack = await self.core.publish(delta, caller=self.caller(), principal=self.principal)
        self.reply(request_id, sync_pb2.SyncResponse(publish_ack=ack))

    async def set_presence(self, request: sync_pb2.SetPresence) -> None:
        """Handles `SetPresence` (JOIN, UPDATE, LEAVE) in a subscribed collection; no
        direct answer, the broker's event reaches every subscriber, this one included.
        Raises RequestError(FAILED_PRECONDITION, "not_subscribed") or BrokerError.
        """
        collection_id = request.collection_id
        if collection_id not in self._subscriptions:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "not_subscribed",
                f"subscribe to {collection_id!r} before setting presence in it",
                collection_id=collection_id,
            )
        broker = self.core.broker
        given = request.user_info if request.HasField("user_info") else None
        joining = (
            request.action == types_pb2.PRESENCE_ACTION_JOIN and collection_id not in self._present
        )
        user_info = self._user_info(given, joining)
        if request.action == types_pb2.PRESENCE_ACTION_LEAVE:
            if collection_id in self._present:
                self._present.discard(collection_id)
                reason = request.status or "left"
                await broker.presence_leave(collection_id, self.peer_id, reason)
                self._presence_changed(collection_id, types_pb2.PRESENCE_ACTION_LEAVE, reason)
            return
        if request.action == types_pb2.PRESENCE_ACTION_JOIN and collection_id not in self._present:
            self._present.add(collection_id)
            await broker.presence_join(collection_id, self.peer_id, user_info, request.status)
            self._presence_changed(
                collection_id, types_pb2.PRESENCE_ACTION_JOIN, request.status, user_info
            )
            return
        self._present.add(collection_id)
        presence = types_pb2.Presence(
            collection_id=collection_id,
            peer_id=self.peer_id,
            action=request.action or types_pb2.PRESENCE_ACTION_UPDATE,
            status=request.status,
            user_info=user_info,
            timestamp=now_timestamp(),
        )
        await broker.presence_update(presence)
        if self.core.hooks.enabled["presence"]:
            self.core.hooks.presence_changed(self.caller(), presence)

    def _user_info(
        self, given: types_pb2.UserInfo | None, joining: bool
    ) -> types_pb2.UserInfo | None:
        """The user information presence shows: the connect hook's, else the client's,
        whose `user_id` is the token's `sub` when the session has a token (so presence
        per user cannot be forged; a join without user info shows that user id)."""
        if self.user_info is not None:
            return self.user_info
        if self.principal is None or (given is None and not joining):
            return given
        shown = types_pb2.UserInfo(user_id=self.principal.subject)
        if given is not None:
            shown.MergeFrom(given)
            shown.user_id = self.principal.subject
        return shown

    def _presence_changed(
        self,
        collection_id: str,
        action: types_pb2.PresenceAction.ValueType,
        status: str,
        user_info: types_pb2.UserInfo | None = None,
    ) -> None:
        """Tells the presence hook (if any) about a change this session made."""
        hooks = self.core.hooks
        if hooks.enabled["presence"]:
            presence = types_pb2.Presence(
                collection_id=collection_id,
                peer_id=self.peer_id,
                action=action,
                status=status,
                user_info=user_info,
                timestamp=now_timestamp(),
            )
            hooks.presence_changed(self.caller(), presence)

    # ------------------------------------------------------------------- queries

    @property
    def subscriptions(self) -> list[str]:
        """Ids of the collections this session is subscribed to."""
        return list(self._subscriptions)

    @property
    def present_in(self) -> list[str]:
        """Ids of the collections this session is present in."""
        return list(self._present)


def _already_subscribed(collection_id: str) -> RequestError:
    return RequestError(
        grpc.StatusCode.ALREADY_EXISTS,
        "already_subscribed",
        f"already subscribed to {collection_id!r}",
        collection_id=collection_id,
    )


def _published(request: sync_pb2.SyncRequest) -> types_pb2.Delta | None:
    """The delta `request` publishes, or None when it is no Publish."""
    return request.publish.delta if request.WhichOneof("kind") == "publish" else None
