"""Correct use of the async stub, the messages and an async servicer: must type-check cleanly.

Checked by tests/test_typecheck.py; never imported or executed.
"""

from collections.abc import AsyncIterator
from typing import assert_type

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2


async def publish_and_read(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        assert_type(stub, sync_pb2_grpc.SyncServiceAsyncStub)
        delta = types_pb2.Delta(
            collection_id="doc-1",
            crdt_type=types_pb2.CRDT_TYPE_LWW_MAP,
            delta=b"\x01\x02",
            timestamp=Timestamp(seconds=1_700_000_000),
            client_message_id="m-1",
        )
        response = await stub.Publish(sync_pb2.PublishRequest(delta=delta), timeout=5.0)
        assert_type(response, sync_pb2.PublishResponse)
        offset: int = response.ack.offset

        async def requests() -> AsyncIterator[sync_pb2.SyncRequest]:
            yield sync_pb2.SyncRequest(
                request_id=1,
                subscribe=sync_pb2.Subscribe(collection_id="doc-1", last_offset=offset),
            )

        async for message in stub.Sync(requests()):
            assert_type(message, sync_pb2.SyncResponse)
            if message.WhichOneof("kind") == "delta":
                offset = max(offset, message.delta.offset)
        return offset


class Servicer(sync_pb2_grpc.SyncServiceServicer):
    """A servicer whose methods match the generated signatures."""

    async def Sync(
        self,
        request_iterator: AsyncIterator[sync_pb2.SyncRequest],
        context: grpc.aio.ServicerContext[sync_pb2.SyncRequest, sync_pb2.SyncResponse],
    ) -> AsyncIterator[sync_pb2.SyncResponse]:
        yield sync_pb2.SyncResponse(welcome=types_pb2.Welcome(peer_id="p-1"))
        async for request in request_iterator:
            yield sync_pb2.SyncResponse(request_id=request.request_id)

    async def Publish(
        self,
        request: sync_pb2.PublishRequest,
        context: grpc.aio.ServicerContext[sync_pb2.PublishRequest, sync_pb2.PublishResponse],
    ) -> sync_pb2.PublishResponse:
        ack = sync_pb2.PublishAck(collection_id=request.delta.collection_id, offset=1)
        return sync_pb2.PublishResponse(ack=ack)

    async def GetPresence(
        self,
        request: sync_pb2.GetPresenceRequest,
        context: grpc.aio.ServicerContext[
            sync_pb2.GetPresenceRequest, sync_pb2.GetPresenceResponse
        ],
    ) -> sync_pb2.GetPresenceResponse:
        return sync_pb2.GetPresenceResponse(collection_id=request.collection_id)

    async def GetHistory(
        self,
        request: sync_pb2.GetHistoryRequest,
        context: grpc.aio.ServicerContext[sync_pb2.GetHistoryRequest, sync_pb2.GetHistoryResponse],
    ) -> sync_pb2.GetHistoryResponse:
        return sync_pb2.GetHistoryResponse(recovery=sync_pb2.RECOVERY_STATUS_RECOVERED)

    async def GetServerInfo(
        self,
        request: sync_pb2.GetServerInfoRequest,
        context: grpc.aio.ServicerContext[
            sync_pb2.GetServerInfoRequest, sync_pb2.GetServerInfoResponse
        ],
    ) -> sync_pb2.GetServerInfoResponse:
        info = types_pb2.ServerInfo(version="0.1.0", protocol_version=types_pb2.PROTOCOL_VERSION_1)
        return sync_pb2.GetServerInfoResponse(server_info=info)


async def serve() -> grpc.aio.Server:
    server = grpc.aio.server()
    sync_pb2_grpc.add_SyncServiceServicer_to_server(Servicer(), server)
    server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server
