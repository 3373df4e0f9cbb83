"""Misuse: a stub method is given the request message of another RPC.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

import grpc

from syncwire.v1 import sync_pb2, sync_pb2_grpc


async def publish_presence_request(channel: grpc.aio.Channel) -> sync_pb2.PublishResponse:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    request = sync_pb2.GetPresenceRequest(collection_id="doc-1")
    return await stub.Publish(request)  # expect[arg-type]: Argument 1 to "__call__" of "UnaryUnaryMultiCallable" has incompatible type "GetPresenceRequest"; expected "PublishRequest"

def stream_publish_requests(channel: grpc.Channel) -> object:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    requests = iter([sync_pb2.PublishRequest()])
    return stub.Sync(requests)  # expect[arg-type]: incompatible type "Iterator[PublishRequest]"; expected "Iterator[SyncRequest]"
