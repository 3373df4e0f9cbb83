"""Misuse: servicer methods whose signatures do not match the service.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

import grpc

from syncwire.v1 import sync_pb2, sync_pb2_grpc

Context = grpc.aio.ServicerContext[sync_pb2.GetPresenceRequest, sync_pb2.PublishResponse]


class WrongRequestType(sync_pb2_grpc.SyncServiceServicer):
    async def Publish(
        self, request: sync_pb2.GetPresenceRequest, context: Context  # expect[override]: Argument 1 of "Publish" is incompatible with supertype "syncwire.v1.sync_pb2_grpc.SyncServiceServicer"; supertype defines the argument type as "PublishRequest"
    ) -> sync_pb2.PublishResponse:
        return sync_pb2.PublishResponse()


class WrongResponseType(sync_pb2_grpc.SyncServiceServicer):
    async def GetServerInfo(  # expect[override]: Return type "Coroutine[Any, Any, GetPresenceResponse]" of "GetServerInfo" incompatible with return type "GetServerInfoResponse | Awaitable[GetServerInfoResponse]"
        self,
        request: sync_pb2.GetServerInfoRequest,
        context: grpc.aio.ServicerContext[
            sync_pb2.GetServerInfoRequest, sync_pb2.GetServerInfoResponse
        ],
    ) -> sync_pb2.GetPresenceResponse:
        return sync_pb2.GetPresenceResponse()


class MissingContext(sync_pb2_grpc.SyncServiceServicer):
    async def GetHistory(self, request: sync_pb2.GetHistoryRequest) -> sync_pb2.GetHistoryResponse:  # expect[override]: Signature of "GetHistory" incompatible with supertype "syncwire.v1.sync_pb2_grpc.SyncServiceServicer"
        return sync_pb2.GetHistoryResponse()


class Untyped(sync_pb2_grpc.SyncServiceServicer):
    async def GetPresence(self, request, context):  # expect[no-untyped-def]: Function is missing a type annotation
        return sync_pb2.GetPresenceResponse()
