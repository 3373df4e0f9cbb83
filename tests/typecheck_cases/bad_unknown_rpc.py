"""Misuse: calling an RPC the service does not define.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

import grpc

from syncwire.v1 import sync_pb2, sync_pb2_grpc


async def subscribe(channel: grpc.aio.Channel) -> object:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    return await stub.Subscribe(sync_pb2.Subscribe(collection_id="doc-1"))  # expect[attr-defined]: "SyncServiceAsyncStub" has no attribute "Subscribe"


def server_info(channel: grpc.Channel) -> object:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    return stub.GetServerinfo(sync_pb2.GetServerInfoRequest())  # expect[attr-defined]: "SyncServiceStub" has no attribute "GetServerinfo"
