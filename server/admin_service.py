"""The server API: `syncwire.v1.AdminService` (proto/syncwire/v1/admin.proto).

Served on both listeners next to SyncService and guarded by the admin credential
(`--admin-token`, sent as `authorization: Bearer TOKEN`, compared in constant time);
client JWTs are never accepted. Commands on sessions go to every node through
`server.admin_commands`; this node applies them at once and says what it did here.
"""

from __future__ import annotations

import hmac

import grpc
import grpc.aio

from syncwire.v1 import admin_pb2, admin_pb2_grpc

from .app_services import ServiceRegistration
from .auth import bearer_token, unauthenticated
from .core import SyncCore
from .errors import RequestError, validate_collection_id
from .response_bounds import within_bytes
from .rpc_status import Context, maps_domain_errors, receive_limit_of

ADMIN_SERVICE_NAME = "syncwire.v1.AdminService"


def _one_of(first: str, second: str, names: str) -> None:
    if bool(first) == bool(second):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", f"set exactly one of {names}"
        )


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """The admin API of one node's `SyncCore`."""

    def __init__(self, core: SyncCore) -> None:
        self.core = core

    def _admit(self, context: Context) -> None:
        """Raises RequestError(UNAUTHENTICATED) unless the call carries the admin token."""
        expected = self.core.config.admin_token
        if not expected:
            raise unauthenticated(
                "admin_disabled", "the server API is off: start the server with --admin-token"
            )
        given = bearer_token(context.invocation_metadata()) or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise unauthenticated("invalid_admin_token", "invalid admin token")

    async def _broadcast(self, command: admin_pb2.AdminCommand) -> int:
        """Applies `command` here, then sends it to every node; the count here."""
        here = await self.core.admin.apply(command)
        await self.core.admin.send(command)
        return here

    @maps_domain_errors
    async def Disconnect(
        self, request: admin_pb2.DisconnectRequest, context: Context
    ) -> admin_pb2.DisconnectResponse:
        self._admit(context)
        _one_of(request.peer_id, request.user_id, "peer_id and user_id")
        here = await self._broadcast(admin_pb2.AdminCommand(disconnect=request))
        return admin_pb2.DisconnectResponse(disconnected_here=here)

    @maps_domain_errors
    async def UnsubscribeUser(
        self, request: admin_pb2.UnsubscribeUserRequest, context: Context
    ) -> admin_pb2.UnsubscribeUserResponse:
        self._admit(context)
        validate_collection_id(request.collection_id)
        _one_of(request.user_id, "", "user_id")
        here = await self._broadcast(admin_pb2.AdminCommand(unsubscribe_user=request))
        return admin_pb2.UnsubscribeUserResponse(unsubscribed_here=here)

    @maps_domain_errors
    async def ListCollections(
        self, request: admin_pb2.ListCollectionsRequest, context: Context
    ) -> admin_pb2.ListCollectionsResponse:
        """The collections with subscribers, by collection id, after
        `after_collection_id`; the answer stops early, `truncated` set, once its entries
        would pass `ServerConfig.response_bytes` for the caller's `receive_limit_of` (at
        least one entry when any is due)."""
        self._admit(context)
        admin = self.core.admin
        local = admin.local_subscribers()
        nodes, cluster = admin.cluster_subscribers(3 * self.core.config.heartbeat_interval)
        collections, truncated = within_bytes(
            (
                admin_pb2.CollectionSubscribers(
                    collection_id=collection_id,
                    node_subscribers=local.get(collection_id, 0),
                    cluster_subscribers=cluster[collection_id],
                )
                for collection_id in sorted(cluster)
                if collection_id > request.after_collection_id
            ),
            self.core.config.response_bytes(receive_limit_of(context)),
        )
        return admin_pb2.ListCollectionsResponse(
            server_id=self.core.server_id,
            nodes=nodes,
            collections=collections,
            truncated=truncated,
        )

    @maps_domain_errors
    async def GetUserPresence(
        self, request: admin_pb2.GetUserPresenceRequest, context: Context
    ) -> admin_pb2.GetUserPresenceResponse:
        self._admit(context)
        validate_collection_id(request.collection_id)
        members = await self.core.broker.presence_members(request.collection_id)
        users: dict[str, list[str]] = {}
        for member in members:
            users.setdefault(member.user_info.user_id or member.peer_id, []).append(member.peer_id)
        return admin_pb2.GetUserPresenceResponse(
            collection_id=request.collection_id,
            users=[
                admin_pb2.UserPresence(user_id=user_id, peer_ids=sorted(peers))
                for user_id, peers in sorted(users.items())
            ],
        )

    @maps_domain_errors
    async def PutSnapshot(
        self, request: admin_pb2.PutSnapshotRequest, context: Context
    ) -> admin_pb2.PutSnapshotResponse:
        self._admit(context)
        put = request.snapshot
        stored = await self.core.put_snapshot(put.collection_id, put.offset, put.data, put.epoch)
        return admin_pb2.PutSnapshotResponse(stored=stored)

    @maps_domain_errors
    async def GetSnapshot(
        self, request: admin_pb2.GetSnapshotRequest, context: Context
    ) -> admin_pb2.GetSnapshotResponse:
        self._admit(context)
        validate_collection_id(request.collection_id)
        snapshot = await self.core.broker.get_snapshot(request.collection_id)
        if snapshot is None:
            return admin_pb2.GetSnapshotResponse()
        return admin_pb2.GetSnapshotResponse(snapshot=snapshot.to_response().snapshot)

    @maps_domain_errors
    async def RemoveHistory(
        self, request: admin_pb2.RemoveHistoryRequest, context: Context
    ) -> admin_pb2.RemoveHistoryResponse:
        self._admit(context)
        validate_collection_id(request.collection_id)
        removed = await self.core.broker.remove_history(request.collection_id)
        return admin_pb2.RemoveHistoryResponse(removed=removed)

    @maps_domain_errors
    async def RevokeToken(
        self, request: admin_pb2.RevokeTokenRequest, context: Context
    ) -> admin_pb2.RevokeTokenResponse:
        self._admit(context)
        _one_of(request.jti, request.user_id, "jti and user_id")
        if not request.HasField("until"):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "until is required"
            )
        here = await self._broadcast(admin_pb2.AdminCommand(revoke_token=request))
        return admin_pb2.RevokeTokenResponse(disconnected_here=here)


def admin_registration(servicer: AdminServicer) -> ServiceRegistration:
    """A service registration (see `server.app_services`) serving `servicer`."""

    def register(server: grpc.aio.Server) -> None:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)

    return register
