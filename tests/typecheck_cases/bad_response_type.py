"""Misuse: treating a call's result as the wrong type.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

from collections.abc import AsyncIterator

import grpc

from syncwire.v1 import sync_pb2, sync_pb2_grpc


async def history_from_publish(channel: grpc.aio.Channel) -> sync_pb2.GetHistoryResponse:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    response: sync_pb2.GetHistoryResponse = await stub.Publish(sync_pb2.PublishRequest())  # expect[assignment]: (expression has type "PublishResponse", variable has type "GetHistoryResponse")
    return response


async def await_stream(
    channel: grpc.aio.Channel, requests: AsyncIterator[sync_pb2.SyncRequest]
) -> object:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    return await stub.Sync(requests)  # expect[misc]: Incompatible types in "await" (actual type "StreamStreamCall[SyncRequest, SyncResponse]"


async def await_blocking_call(channel: grpc.Channel) -> object:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    return await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())  # expect[misc]: Incompatible types in "await" (actual type "GetServerInfoResponse"
