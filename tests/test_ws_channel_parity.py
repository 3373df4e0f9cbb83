"""WebSocketChannel behaves as grpc.aio channels do for per-call credentials and client
interceptors: one scenario runs over grpc.aio with TLS, grpc.aio without TLS,
WebSocketChannel over wss:// and over ws://, and must produce the same transcript
(secure channels apply call credentials as metadata; insecure ones refuse them with
grpc.aio's UsageError; all four interceptor kinds see and may change the same call
details and return the same things)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from src.proto.grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

import tests.interop  # noqa: F401 - puts the interop stubs on the path
from client.ws_channel import WebSocketChannel
from server.tls import ServerTls
from server.ws.server import WebSocketServer
from tests.interop.servicer import InteropServicer, add_interop_service

from .security_harness import Pki, make_pki
from .tcp_proxy import Direction, TcpProxy

pytestmark = pytest.mark.timeout(30)

Transcript = list[tuple[Any, ...]]


class MetadataRecorder(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """What the server received: method and the metadata this test sets."""

    KEYS = ("authorization", "x-call", "x-plugin", "x-intercepted")

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[tuple[str, str], ...]]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        metadata = tuple(
            (key, str(value))
            for key, value in handler_call_details.invocation_metadata or ()
            if key in self.KEYS
        )
        self.seen.append((handler_call_details.method, metadata))
        return await continuation(handler_call_details)


@dataclass
class Servers:
    recorder: MetadataRecorder
    pki: Pki
    targets: dict[str, str]


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    pki = make_pki(tmp_path)
    tls = ServerTls.load(pki.cert_file, pki.key_file)
    recorder = MetadataRecorder()
    servicer = InteropServicer()
    grpc_server = grpc.aio.server(interceptors=[recorder], options=[("grpc.so_reuseport", 0)])
    ws_server = WebSocketServer(interceptors=[recorder])
    for server in (grpc_server, ws_server):
        add_interop_service(server, servicer)
    host = "127.0.0.1"
    targets = {
        "grpc-tls": f"{host}:{grpc_server.add_secure_port(f'{host}:0', tls.grpc_credentials)}",
        "grpc": f"{host}:{grpc_server.add_insecure_port(f'{host}:0')}",
        "wss": f"wss://{host}:{ws_server.add_secure_port(f'{host}:0', tls.ssl_context)}",
        "ws": f"ws://{host}:{ws_server.add_insecure_port(f'{host}:0')}",
    }
    await grpc_server.start()
    await ws_server.start()
    try:
        yield Servers(recorder, pki, targets)
    finally:
        await asyncio.gather(grpc_server.stop(1.0), ws_server.stop(1.0))


def open_channel(servers: Servers, kind: str, interceptors: list[Any]) -> grpc.aio.Channel:
    target = servers.targets[kind]
    if kind == "grpc-tls":
        credentials = grpc.ssl_channel_credentials(servers.pki.ca_pem)
        return grpc.aio.secure_channel(target, credentials, interceptors=interceptors)
    if kind == "grpc":
        return grpc.aio.insecure_channel(target, interceptors=interceptors)
    return WebSocketChannel(target, ca_file=str(servers.pki.ca_file), interceptors=interceptors)


# ------------------------------------------------------------------ interceptors


def _details(
    details: grpc.aio.ClientCallDetails, kind: str, log: Transcript
) -> grpc.aio.ClientCallDetails:
    """Logs what an interceptor was given and adds its own metadata entry."""
    metadata = details.metadata
    log.append(
        (
            "intercepted",
            kind,
            details.method,
            type(metadata).__name__,
            tuple(metadata or ()),
            details.timeout,
            details.credentials is not None,
            details.wait_for_ready,
        )
    )
    extended = grpc.aio.Metadata(*(metadata or ()))
    extended.add("x-intercepted", kind)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, extended, details.credentials, details.wait_for_ready
    )


class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, log: Transcript) -> None:
        self.log = log

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(_details(details, "unary_unary", self.log), request)
        if request.response_size == 7:  # return the response instead of the call
            return await call
        return call


class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, log: Transcript) -> None:
        self.log = log

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(_details(details, "unary_stream", self.log), request)

        async def doubled() -> AsyncIterator[Any]:  # a response iterator instead of the call
            async for response in call:
                yield response
                yield response

        return doubled()


class StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, log: Transcript) -> None:
        self.log = log

    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details, "stream_unary", self.log), request_iterator)


class StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, log: Transcript) -> None:
        self.log = log

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details, "stream_stream", self.log), request_iterator)


class Plugin(grpc.AuthMetadataPlugin):
    """A metadata plugin: records its context, adds `x-plugin` (or fails)."""

    def __init__(self, log: Transcript, fail: bool = False) -> None:
        self.log = log
        self.fail = fail

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        service_url = re.sub(r":\d+/", ":PORT/", context.service_url)
        self.log.append(("plugin", service_url, context.method_name))
        if self.fail:
            callback((), ValueError("no token today"))
        else:
            callback((("x-plugin", "yes"),), None)


# ---------------------------------------------------------------------- scenario


async def outcome(make: Callable[[], Any]) -> tuple[Any, ...]:
    """Starts a call and awaits it; what happened, in comparable form."""
    try:
        response = await make()
    except grpc.aio.UsageError as error:
        return ("UsageError", str(error))
    except grpc.aio.AioRpcError as error:
        return ("status", error.code().name, error.details())
    return ("ok", response.payload.body.hex() if response.HasField("payload") else "")


async def scenario(channel: grpc.aio.Channel, log: Transcript, recorder: MetadataRecorder) -> Transcript:
    stub = test_pb2_grpc.TestServiceStub(channel)
    transcript: Transcript = []

    def record(what: str, result: tuple[Any, ...]) -> None:
        transcript.extend(log)
        log.clear()
        transcript.append((what, *result))
        transcript.extend(("server", *seen) for seen in recorder.seen)
        recorder.seen.clear()

    request = messages_pb2.SimpleRequest(response_size=3)
    credentials = {
        "access token": grpc.access_token_call_credentials("tok-1"),
        "plugin": grpc.metadata_call_credentials(Plugin(log)),
        "composite": grpc.composite_call_credentials(
            grpc.access_token_call_credentials("tok-2"),
            grpc.metadata_call_credentials(Plugin(log), name="second"),
        ),
        "failing plugin": grpc.metadata_call_credentials(Plugin(log, fail=True)),
    }
    for name, creds in credentials.items():

        def with_credentials(creds: grpc.CallCredentials = creds) -> Any:
            return stub.UnaryCall(request, metadata=(("x-call", "1"),), credentials=creds, timeout=5)

        record(name, await outcome(with_credentials))

    record("unary response", await outcome(lambda: stub.UnaryCall(messages_pb2.SimpleRequest(response_size=7))))

    stream_request = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=n) for n in (1, 2)]
    )
    responses = stub.StreamingOutputCall(stream_request, wait_for_ready=True)
    sizes = [len(r.payload.body) async for r in responses]
    record("unary stream", ("ok", sizes, await responses.code()))

    async def inputs() -> AsyncIterator[messages_pb2.StreamingInputCallRequest]:
        for size in (3, 4):
            yield messages_pb2.StreamingInputCallRequest(
                payload=messages_pb2.Payload(body=b"\0" * size)
            )

    summed: Any = await stub.StreamingInputCall(inputs(), timeout=5)
    record("stream unary", ("ok", summed.aggregated_payload_size))

    duplex: Any = stub.FullDuplexCall()  # type: ignore[call-arg]
    echoed_sizes = []
    for size in (5, 6):
        await duplex.write(
            messages_pb2.StreamingOutputCallRequest(
                response_parameters=[messages_pb2.ResponseParameters(size=size)]
            )
        )
        echoed = await duplex.read()
        echoed_sizes.append(len(echoed.payload.body))
    await duplex.done_writing()
    record("stream stream", ("ok", echoed_sizes, await duplex.code()))
    return transcript


def expected(secure: bool) -> Transcript:
    """The transcript grpc.aio produces (checked against grpc.aio itself below)."""
    unary = "/grpc.testing.TestService/UnaryCall"

    def intercepted(kind: str, method: str, metadata: tuple[Any, ...], **call: Any) -> tuple[Any, ...]:
        return (
            "intercepted",
            kind,
            method.encode(),
            "Metadata",
            metadata,
            call.get("timeout"),
            call.get("credentials", False),
            call.get("wait_for_ready"),
        )

    def credential_call(name: str, server_metadata: tuple[Any, ...], plugins: int) -> Transcript:
        steps: Transcript = [
            intercepted("unary_unary", unary, (("x-call", "1"),), timeout=5, credentials=True)
        ]
        if not secure:
            return [*steps, (name, "UsageError", "Call credentials are only valid on secure channels")]
        steps += [("plugin", "https://127.0.0.1:PORT/grpc.testing.TestService", "UnaryCall")] * plugins
        if name == "failing plugin":
            detail = "Getting metadata from plugin failed with error: no token today"
            return [*steps, (name, "status", "UNAVAILABLE", detail)]
        return [*steps, (name, "ok", "000000"), ("server", unary, server_metadata)]

    call_metadata = (("x-call", "1"), ("x-intercepted", "unary_unary"))
    return [
        *credential_call(
            "access token", (*call_metadata, ("authorization", "Bearer tok-1")), plugins=0
        ),
        *credential_call("plugin", (*call_metadata, ("x-plugin", "yes")), plugins=1),
        *credential_call(
            "composite",
            (*call_metadata, ("authorization", "Bearer tok-2"), ("x-plugin", "yes")),
            plugins=1,
        ),
        *credential_call("failing plugin", (), plugins=1),
        intercepted("unary_unary", unary, ()),
        ("unary response", "ok", "00000000000000"),
        ("server", unary, (("x-intercepted", "unary_unary"),)),
        intercepted(
            "unary_stream", "/grpc.testing.TestService/StreamingOutputCall", (), wait_for_ready=True
        ),
        ("unary stream", "ok", [1, 1, 2, 2], grpc.StatusCode.OK),
        (
            "server",
            "/grpc.testing.TestService/StreamingOutputCall",
            (("x-intercepted", "unary_stream"),),
        ),
        intercepted("stream_unary", "/grpc.testing.TestService/StreamingInputCall", (), timeout=5),
        ("stream unary", "ok", 7),
        (
            "server",
            "/grpc.testing.TestService/StreamingInputCall",
            (("x-intercepted", "stream_unary"),),
        ),
        intercepted("stream_stream", "/grpc.testing.TestService/FullDuplexCall", ()),
        ("stream stream", "ok", [5, 6], grpc.StatusCode.OK),
        (
            "server",
            "/grpc.testing.TestService/FullDuplexCall",
            (("x-intercepted", "stream_stream"),),
        ),
    ]


@pytest.mark.parametrize("kind", ["grpc-tls", "wss", "grpc", "ws"])
async def test_call_credentials_and_interceptors_behave_as_on_grpc_aio(
    servers: Servers, kind: str
) -> None:
    log: Transcript = []
    interceptors = [UnaryUnary(log), UnaryStream(log), StreamUnary(log), StreamStream(log)]
    async with contextlib.AsyncExitStack() as stack:
        channel = open_channel(servers, kind, interceptors)
        stack.push_async_callback(channel.close, None)
        transcript = await scenario(channel, log, servers.recorder)
    assert transcript == expected(secure=kind in ("grpc-tls", "wss"))


# ------------------------------------------------------------- channel options


async def test_compression_is_accepted_per_call_and_per_channel(servers: Servers) -> None:
    """grpc.Compression values work where grpc.aio takes them; permessage-deflate does
    the compressing (NoCompression turns it off)."""
    for compression in (grpc.Compression.Gzip, grpc.Compression.NoCompression, None):
        async with WebSocketChannel(servers.targets["ws"], compression=compression) as channel:
            stub = test_pb2_grpc.TestServiceStub(channel)
            request = messages_pb2.SimpleRequest(response_size=3)
            for per_call in (grpc.Compression.Gzip, grpc.Compression.Deflate, None):
                response = await stub.UnaryCall(request, compression=per_call, timeout=5)
                assert len(response.payload.body) == 3
            websocket: Any = channel._connection._transport  # type: ignore[union-attr]
            extensions = [type(e).__name__ for e in websocket.protocol.extensions]
            deflate = compression is not grpc.Compression.NoCompression
            assert extensions == (["PerMessageDeflate"] if deflate else [])


async def test_interceptors_of_no_known_kind_are_refused_as_by_grpc_aio(servers: Servers) -> None:
    with pytest.raises(ValueError, match="must be UnaryUnaryClientInterceptor") as ours:
        WebSocketChannel(servers.targets["ws"], interceptors=[cast(Any, object())])
    with pytest.raises(ValueError) as theirs:
        grpc.aio.insecure_channel(servers.targets["grpc"], interceptors=[cast(Any, object())])
    assert str(ours.value).split(" must ", 1)[1] == str(theirs.value).split(" must ", 1)[1]


async def test_close_timeout_bounds_closing_a_half_open_socket(servers: Servers) -> None:
    port = int(servers.targets["ws"].rsplit(":", 1)[1])
    async with TcpProxy("127.0.0.1", port) as proxy:
        channel = WebSocketChannel(f"ws://{proxy.address}", close_timeout=0.1, ping_interval=None)
        stub = test_pb2_grpc.TestServiceStub(channel)
        await stub.EmptyCall(empty_pb2.Empty(), timeout=5)
        proxy.stall(Direction.BOTH)  # the server never sees nor answers the close frame
        # The default close_timeout (10 s) would outlast this bound.
        await asyncio.wait_for(channel.close(), 8)
        assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN
