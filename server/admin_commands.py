"""Admin commands on every node: disconnect, unsubscribe-user, revoke-token, reports.

A command is an `AdminCommand` published as a delta into a reserved collection
(`CONTROL_COLLECTION`, a name clients cannot use: it starts with a control character)
through the node's own broker, so it reaches every node attached to that broker (the
memory broker: this process; Redis: every node, in order, with the broker's reconnect
catch-up) on the same path as client deltas. Each node applies it to its own sessions on
every transport. Applying a command twice changes nothing, so the node that takes an
admin call applies it at once (to say what it did) and again when it comes back.

Revocations also outlive the moment they are sent: each node that applies a revocation
from the broker stores every revocation it knows as the control collection's snapshot
(at that command's offset, so the broker keeps the newest list), and a node reads it when
it starts following the collection.

Every heartbeat interval each node also publishes a `NodeReport` (its subscribers per
collection); `ListCollections` sums the reports younger than three intervals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

import grpc
from google.protobuf.message import DecodeError

from syncwire.v1 import admin_pb2, sync_pb2, types_pb2

from .broker import BrokerError
from .errors import RequestError
from .event_queue import SessionEnd

if TYPE_CHECKING:
    from .core import SyncCore

log = logging.getLogger(__name__)

CONTROL_COLLECTION: Final = "\x00syncwire/admin"
"""The reserved collection admin commands travel through (never valid for clients)."""
UNSUBSCRIBED: Final = "unsubscribed"
"""Reason code of the Error a session gets when the admin API ends its subscription."""
REVOKED: Final = "token_revoked"
"""Reason code of a token refused because it was revoked."""


class AdminCommands:
    """Sends admin commands to every node and applies them to this node's sessions."""

    def __init__(self, core: SyncCore) -> None:
        self.core = core
        self.attached = False
        self._pending: set[asyncio.Task[None]] = set()
        self._reports: dict[str, tuple[float, dict[str, int]]] = {}

    # ------------------------------------------------------------------- the bus

    async def attach(self) -> None:
        """Follows the control collection and loads the revocations stored with it
        (retried by the core's upkeep until it succeeds; a broker that is away raises
        BrokerError)."""
        if not self.attached:
            await self.core.broker.attach(CONTROL_COLLECTION, self._receive)
            self.attached = True
            stored = await self.core.broker.get_snapshot(CONTROL_COLLECTION)
            if stored is not None:
                self._load_revocations(stored.data)

    def _load_revocations(self, data: bytes) -> None:
        known = admin_pb2.RevocationList()
        try:
            known.ParseFromString(data)
        except DecodeError:
            log.warning("undecodable stored revocation list ignored")
            return
        for revoked in known.revocations:
            until = revoked.until.ToNanoseconds() / 1e9
            self.core.revocations.revoke(jti=revoked.jti, user_id=revoked.user_id, until=until)
        self.core.end_revoked_sessions()

    async def _store_revocations(self, epoch: str, offset: int) -> None:
        """Stores every revocation this node knows as the control collection's snapshot
        at `offset` (a newer list already stored is kept)."""
        known = admin_pb2.RevocationList()
        for jti, user_id, until in self.core.revocations.entries():
            revoked = known.revocations.add(jti=jti, user_id=user_id)
            revoked.until.FromNanoseconds(int(until * 1e9))
        await self.core.broker.put_snapshot(
            CONTROL_COLLECTION, epoch, offset, known.SerializeToString()
        )

    async def detach(self) -> None:
        if self.attached:
            self.attached = False
            await self.core.broker.detach(CONTROL_COLLECTION, self._receive)

    async def send(self, command: admin_pb2.AdminCommand) -> None:
        """Publishes `command` to every node. Raises BrokerError."""
        delta = types_pb2.Delta(collection_id=CONTROL_COLLECTION, delta=command.SerializeToString())
        await self.core.broker.publish(delta)

    def _receive(self, event: sync_pb2.SyncResponse) -> None:
        if not event.HasField("delta"):
            return
        command = admin_pb2.AdminCommand()
        try:
            command.ParseFromString(event.delta.delta)
        except DecodeError:
            log.warning("undecodable admin command at offset %d", event.delta.offset)
            return
        delta = event.delta
        task = asyncio.get_running_loop().create_task(
            self._apply_logged(command, delta.epoch, delta.offset)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _apply_logged(self, command: admin_pb2.AdminCommand, epoch: str, offset: int) -> None:
        try:
            await self.apply(command)
            if command.HasField("revoke_token"):
                await self._store_revocations(epoch, offset)
        except BrokerError as exc:
            log.warning("admin command: %s", exc)
        except Exception:
            log.exception("admin command failed")

    # ------------------------------------------------------------------ applying

    async def apply(self, command: admin_pb2.AdminCommand) -> int:
        """Applies `command` to this node; returns how many sessions (or subscriptions)
        it ended here."""
        kind = command.WhichOneof("kind")
        if kind == "disconnect":
            return self.disconnect(command.disconnect)
        if kind == "unsubscribe_user":
            return await self.unsubscribe_user(command.unsubscribe_user)
        if kind == "revoke_token":
            return self.revoke(command.revoke_token)
        if kind == "node_report":
            report = command.node_report
            self._reports[report.server_id] = (time.monotonic(), dict(report.subscribers))
        return 0

    def disconnect(self, request: admin_pb2.DisconnectRequest) -> int:
        end = SessionEnd(
            grpc.StatusCode.UNAVAILABLE if request.reconnect else grpc.StatusCode.ABORTED,
            request.reason or "disconnected by the server",
            reconnect=request.reconnect,
            label="admin_disconnect",
        )
        ended = 0
        for session in self.core.registry.sessions():
            if (request.peer_id and session.peer_id == request.peer_id) or (
                request.user_id and session.user_id == request.user_id
            ):
                session.end(end)
                ended += 1
        return ended

    async def unsubscribe_user(self, request: admin_pb2.UnsubscribeUserRequest) -> int:
        refusal = RequestError(
            grpc.StatusCode.PERMISSION_DENIED,
            UNSUBSCRIBED,
            f"unsubscribed from {request.collection_id!r} by the server",
            collection_id=request.collection_id,
        )
        ended = 0
        for session in self.core.registry.sessions():
            if session.user_id == request.user_id:
                ended += await session.end_subscription(request.collection_id, refusal)
        return ended

    def revoke(self, request: admin_pb2.RevokeTokenRequest) -> int:
        until = request.until.ToNanoseconds() / 1e9
        self.core.revocations.revoke(jti=request.jti, user_id=request.user_id, until=until)
        return self.core.end_revoked_sessions()

    # ------------------------------------------------------------------- reports

    def report(self) -> admin_pb2.AdminCommand:
        """This node's `NodeReport` command."""
        return admin_pb2.AdminCommand(
            node_report=admin_pb2.NodeReport(
                server_id=self.core.server_id, subscribers=self.local_subscribers()
            )
        )

    def local_subscribers(self) -> dict[str, int]:
        """Subscribed sessions per collection on this node."""
        counts: dict[str, int] = {}
        for session in self.core.registry.sessions():
            for collection_id in session.subscriptions:
                counts[collection_id] = counts.get(collection_id, 0) + 1
        return counts

    def cluster_subscribers(self, max_age: float) -> tuple[int, dict[str, int]]:
        """(nodes, subscribers per collection) over this node's live counts and the other
        nodes' reports younger than `max_age` seconds."""
        now = time.monotonic()
        totals = self.local_subscribers()
        nodes = 1
        for server_id, (at, counts) in list(self._reports.items()):
            if now - at > max_age:
                del self._reports[server_id]
                continue
            if server_id == self.core.server_id:
                continue
            nodes += 1
            for collection_id, count in counts.items():
                totals[collection_id] = totals.get(collection_id, 0) + count
        return nodes, totals

    async def upkeep(self) -> None:
        """Every heartbeat: attach if not yet, and publish this node's report."""
        try:
            await self.attach()
            await self.send(self.report())
        except BrokerError as exc:
            log.warning("admin upkeep: %s", exc)
