"""A test application implementing syncwire.v1.ProxyService in its own process.

`python -m tests.proxy_app` serves on a free loopback port and prints
`proxy ready 127.0.0.1:PORT`. It answers like `tests.test_hooks.AppHooks`: refuses
deltas containing b"refuse-me" (INVALID_ARGUMENT, "bad_delta"), replaces those
containing b"replace-me", never answers for b"stall-me" (timeouts), refuses subscribes
to "secret" ("no_secrets"; others get initial data b"hello <user>") and connects of user "mallory" ("banned"), and attaches user
info whose display name is the token's `team` claim (or "Ann"), so tests can see that
claims arrived.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import grpc.aio

from syncwire.v1 import proxy_pb2, proxy_pb2_grpc, types_pb2

REFUSE = b"refuse-me"
REPLACE = b"replace-me"
STALL = b"stall-me"
REPLACED = b"replaced by the application"


class TestProxy(proxy_pb2_grpc.ProxyServiceServicer):
    async def OnConnect(
        self, request: proxy_pb2.OnConnectRequest, context: object
    ) -> proxy_pb2.OnConnectResponse:
        caller = request.caller
        if caller.user_id == "mallory":
            return proxy_pb2.OnConnectResponse(
                refusal=proxy_pb2.HookRefusal(
                    code=grpc.StatusCode.PERMISSION_DENIED.value[0],
                    reason_code="banned",
                    message="mallory may not connect",
                )
            )
        team = caller.claims.fields.get("team")
        name = team.string_value if team is not None else "Ann"
        user_info = types_pb2.UserInfo(user_id=caller.user_id or "anon", display_name=name)
        return proxy_pb2.OnConnectResponse(user_info=user_info)

    async def OnSubscribe(
        self, request: proxy_pb2.OnSubscribeRequest, context: object
    ) -> proxy_pb2.OnSubscribeResponse:
        if request.collection_id == "secret":
            refusal = proxy_pb2.HookRefusal(
                code=grpc.StatusCode.PERMISSION_DENIED.value[0],
                reason_code="no_secrets",
                message="not for you",
            )
            return proxy_pb2.OnSubscribeResponse(refusal=refusal)
        initial_data = b"hello " + request.caller.user_id.encode()
        return proxy_pb2.OnSubscribeResponse(initial_data=initial_data)

    async def OnPublish(
        self, request: proxy_pb2.OnPublishRequest, context: object
    ) -> proxy_pb2.OnPublishResponse:
        data = request.delta.delta
        if STALL in data:
            await asyncio.Event().wait()  # never answers: the server's timeout decides
        if REFUSE in data:
            refusal = proxy_pb2.HookRefusal(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                reason_code="bad_delta",
                message="deltas may not say that",
            )
            return proxy_pb2.OnPublishResponse(refusal=refusal)
        if REPLACE in data:
            replacement = types_pb2.Delta(
                crdt_type=types_pb2.CRDT_TYPE_LWW_REGISTER, delta=REPLACED
            )
            return proxy_pb2.OnPublishResponse(delta=replacement)
        return proxy_pb2.OnPublishResponse()

    async def OnPresence(
        self, request: proxy_pb2.OnPresenceRequest, context: object
    ) -> proxy_pb2.OnPresenceResponse:
        return proxy_pb2.OnPresenceResponse()


async def main() -> None:
    server = grpc.aio.server()
    proxy_pb2_grpc.add_ProxyServiceServicer_to_server(TestProxy(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"proxy ready 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
