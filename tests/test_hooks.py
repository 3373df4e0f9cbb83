"""Issue 18, hooks: an application's connect / subscribe / publish / presence hooks, on
both brokers and every transport (native gRPC, WebSocket framing, legacy JSON).

A refused publish is never delivered and never gets an offset (the next accepted delta
is offset 1), and its publisher sees the hook's code on every transport; a replaced
delta is what subscribers get; a hook that raises or times out follows the failure
policy; the caller's token claims reach the hooks. Each behaviour is checked with the
in-process `AppHooks` and with `tests.proxy_app`, a separate process implementing
syncwire.v1.ProxyService the same way (`--proxy-url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from client import ClientConfig, RequestFailed, SyncClient
from server.app import SyncwireServer
from server.config import ConfigError
from server.hooks import Caller, ConnectResult, HookRefusal, Hooks, SubscribeResult
from server.proxy_hooks import configured_hooks
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from tests.legacy_ws_client import LegacyClient

from .redis_harness import free_port, redis_base_url, redis_url  # noqa: F401  (fixtures)
from .security_harness import SECRET, bearer, make_token, trailer
from .service_harness import SyncStream, open_channel
from .service_harness import test_config as make_config
from .test_security_legacy import refused, with_token

pytestmark = pytest.mark.timeout(60)

ROOM = "room"
REFUSE = b"refuse-me"
REPLACE = b"replace-me"
REPLACED = b"replaced by the application"


class AppHooks(Hooks):
    """Refuses deltas containing REFUSE (INVALID_ARGUMENT, "bad_delta"), replaces those
    containing REPLACE, refuses subscribes to "secret" (others get initial data
    b"hello <user>") and connects of user "mallory";
    attaches user info (display name: the token's `team` claim, else "Ann"); records
    every call and presence change. `tests.proxy_app` answers the same way."""

    def __init__(self) -> None:
        self.callers: list[tuple[str, Caller]] = []
        self.presence: asyncio.Queue[types_pb2.Presence] = asyncio.Queue()

    async def on_connect(self, caller: Caller) -> ConnectResult | None:
        self.callers.append(("connect", caller))
        if caller.user_id == "mallory":
            raise HookRefusal("mallory may not connect", reason_code="banned")
        name = str(caller.claims.get("team", "Ann"))
        return ConnectResult(
            types_pb2.UserInfo(user_id=caller.user_id or "anon", display_name=name)
        )

    async def on_subscribe(self, caller: Caller, collection_id: str) -> SubscribeResult | None:
        self.callers.append(("subscribe", caller))
        if collection_id == "secret":
            raise HookRefusal("not for you", reason_code="no_secrets")
        return SubscribeResult(b"hello " + caller.user_id.encode())

    async def on_publish(self, caller: Caller, delta: types_pb2.Delta) -> types_pb2.Delta | None:
        self.callers.append(("publish", caller))
        if REFUSE in delta.delta:
            raise HookRefusal(
                "deltas may not say that",
                code=grpc.StatusCode.INVALID_ARGUMENT,
                reason_code="bad_delta",
            )
        if REPLACE in delta.delta:
            return types_pb2.Delta(crdt_type=types_pb2.CRDT_TYPE_LWW_REGISTER, delta=REPLACED)
        return None

    async def on_presence(self, caller: Caller, presence: types_pb2.Presence) -> None:
        self.presence.put_nowait(presence)


class StuckHooks(Hooks):
    """A publish hook that never answers, and a subscribe hook that raises."""

    async def on_publish(self, caller: Caller, delta: types_pb2.Delta) -> types_pb2.Delta | None:
        await asyncio.Event().wait()
        return None

    async def on_subscribe(self, caller: Caller, collection_id: str) -> SubscribeResult | None:
        raise RuntimeError("the application's database is down")


@contextlib.asynccontextmanager
async def hooked_server(
    request: pytest.FixtureRequest, hooks: Hooks | None, **overrides: Any
) -> AsyncIterator[SyncwireServer]:
    broker = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    server = SyncwireServer(make_config(broker=broker, **overrides), hooks=hooks)
    await server.start()
    try:
        async with asyncio.timeout(30):  # Redis may take longer than start waits
            await server.core.broker.wait_healthy(True)
        yield server
    finally:
        await server.stop(grace=1.0)


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@pytest.fixture(scope="module")
def proxy_address(repo_root: Path) -> Iterator[str]:
    """`tests.proxy_app` running in its own process: its host:port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.proxy_app"], cwd=repo_root, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("proxy ready "), line
        yield line.split()[-1]
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(params=["inprocess", "proxy"])
def app(request: pytest.FixtureRequest) -> tuple[AppHooks | None, dict[str, Any]]:
    """The application's hooks: `AppHooks` in-process, or the same over ProxyService."""
    if request.param == "inprocess":
        return AppHooks(), {}
    return None, {"proxy_url": f"grpc://{request.getfixturevalue('proxy_address')}"}


@contextlib.asynccontextmanager
async def stream_on(
    server: SyncwireServer, transport: str, **call_kwargs: Any
) -> AsyncIterator[SyncStream]:
    async with open_channel(server, transport) as channel:
        stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel), **call_kwargs)
        try:
            yield stream
        finally:
            await stream.close()


def publish_request(stream: SyncStream, data: bytes, collection_id: str = ROOM) -> int:
    return stream.send(
        publish=sync_pb2.Publish(
            delta=types_pb2.Delta(
                collection_id=collection_id, crdt_type=types_pb2.CRDT_TYPE_RGA, delta=data
            )
        )
    )


async def test_a_refused_publish_never_exists_and_every_transport_sees_its_code(
    broker_kind: pytest.FixtureRequest, app: tuple[AppHooks | None, dict[str, Any]]
) -> None:
    hooks, options = app
    async with hooked_server(broker_kind, hooks, **options) as server:
        async with stream_on(server, "grpc") as watcher, stream_on(server, "ws") as ws:
            await watcher.welcome()
            await ws.welcome()
            await watcher.subscribe(ROOM)
            # Typed stream over native gRPC and over the WebSocket framing: an Error reply.
            for stream in (watcher, ws):
                reply = await stream.expect_reply(publish_request(stream, b"x " + REFUSE))
                assert reply.HasField("error"), reply
                assert reply.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
                assert reply.error.reason_code == "bad_delta"
                assert reply.error.collection_id == ROOM
            # Unary Publish on both transports: the call's status and reason trailer.
            for transport in ("grpc", "ws"):
                async with open_channel(server, transport) as channel:
                    stub = sync_pb2_grpc.SyncServiceStub(channel)
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.Publish(
                            sync_pb2.PublishRequest(
                                delta=types_pb2.Delta(collection_id=ROOM, delta=REFUSE)
                            )
                        )
                    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert trailer(refused.value, "syncwire-reason") == "bad_delta"
            # Legacy JSON: an `error` whose code is the hook's reason code.
            legacy = await LegacyClient.open(f"{server.ws_url}/sync?room_id={ROOM}")
            async with legacy:
                await legacy.send_text(b'{"type":"sync","data":"' + REFUSE + b'"}')
                message = await legacy.recv()
                while message["type"] != "error":
                    assert message["type"] in ("heartbeat", "presence"), message
                    message = await legacy.recv()
                assert message["code"] == "bad_delta", message
            # None of the refused deltas got an offset or reached the watcher: the first
            # accepted delta is offset 1 and it is the first delta delivered.
            ack = await ws.publish(ROOM, b"fine")
            assert ack.offset == 1
            delivered = await watcher.expect("delta")
            assert (delivered.delta.offset, delivered.delta.delta) == (1, b"fine")
            history = await server.core.broker.history(ROOM, 0, "", 100)
            assert [event.delta.delta for event in history.events] == [b"fine"]
    if hooks is not None:
        assert [kind for kind, _ in hooks.callers].count("publish") == 6


async def test_a_replaced_delta_is_what_subscribers_get(
    broker_kind: pytest.FixtureRequest, app: tuple[AppHooks | None, dict[str, Any]]
) -> None:
    hooks, options = app
    async with hooked_server(broker_kind, hooks, **options) as server:
        async with stream_on(server, "ws") as watcher, stream_on(server, "grpc") as publisher:
            await watcher.welcome()
            await publisher.welcome()
            await watcher.subscribe(ROOM)
            ack = await publisher.publish(ROOM, REPLACE, client_message_id="m1")
            delivered = (await watcher.expect("delta")).delta
            assert delivered.delta == REPLACED
            assert delivered.crdt_type == types_pb2.CRDT_TYPE_LWW_REGISTER
            assert (delivered.offset, delivered.client_message_id) == (ack.offset, "m1")
            assert delivered.peer_id == publisher.peer_id
            history = await server.core.broker.history(ROOM, 0, "", 10)
            assert [event.delta.delta for event in history.events] == [REPLACED]


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_subscribe_hook_refuses_and_connect_hook_attaches_user_info(
    broker_kind: pytest.FixtureRequest, transport: str, app: tuple[AppHooks | None, dict[str, Any]]
) -> None:
    hooks, options = app
    async with hooked_server(broker_kind, hooks, **options) as server:
        async with stream_on(server, transport) as stream:
            await stream.welcome()
            reply = await stream.expect_reply(
                stream.send(subscribe=sync_pb2.Subscribe(collection_id="secret"))
            )
            assert reply.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
            assert (reply.error.reason_code, reply.error.collection_id) == ("no_secrets", "secret")
            assert "secret" not in server.core.registry.sessions()[0].subscriptions
            # The client's own user info is replaced by what on_connect attached.
            await stream.subscribe(
                ROOM, join_presence=True, user_info=types_pb2.UserInfo(user_id="forged")
            )
            if hooks is not None:
                joined = await asyncio.wait_for(hooks.presence.get(), 10)
                assert (joined.action, joined.peer_id) == (
                    types_pb2.PRESENCE_ACTION_JOIN,
                    stream.peer_id,
                )
                assert joined.user_info.user_id == "anon"
            async with open_channel(server, "grpc") as channel:
                present = await sync_pb2_grpc.SyncServiceStub(channel).GetPresence(
                    sync_pb2.GetPresenceRequest(collection_id=ROOM)
                )
            assert [m.user_info.display_name for m in present.members] == ["Ann"]
            assert [m.user_info.user_id for m in present.members] == ["anon"]
        if hooks is not None:
            left = await asyncio.wait_for(hooks.presence.get(), 10)
            assert (left.action, left.peer_id) == (types_pb2.PRESENCE_ACTION_LEAVE, stream.peer_id)


async def test_connect_hook_sees_claims_and_refuses_on_every_transport(
    broker_kind: pytest.FixtureRequest, app: tuple[AppHooks | None, dict[str, Any]]
) -> None:
    hooks, options = app
    async with hooked_server(broker_kind, hooks, auth_secret=SECRET, **options) as server:
        ann = make_token(sub="ann", team="blue")
        async with stream_on(server, "ws", metadata=bearer(ann)) as stream:
            await stream.welcome()
            subscribed = await stream.subscribe(ROOM, join_presence=True)
            assert subscribed.initial_data == b"hello ann"  # on_subscribe's initial data
            await stream.publish(ROOM, b"hi")
            async with open_channel(server, "grpc") as channel:
                present = await sync_pb2_grpc.SyncServiceStub(channel).GetPresence(
                    sync_pb2.GetPresenceRequest(collection_id=ROOM), metadata=bearer(ann)
                )
            # The hook saw the token's sub and its `team` claim and attached them.
            assert [(m.user_info.user_id, m.user_info.display_name) for m in present.members] == [
                ("ann", "blue")
            ]
        if hooks is not None:
            kinds = {kind: caller for kind, caller in hooks.callers}
            assert kinds["connect"].claims["team"] == "blue"
            assert kinds["publish"].peer_id == kinds["connect"].peer_id == stream.peer_id
            assert kinds["publish"].transport == "websocket"
        mallory = make_token(sub="mallory")
        for transport in ("grpc", "ws"):
            async with stream_on(server, transport, metadata=bearer(mallory)) as banned:
                ended = await asyncio.wait_for(banned.ended, 10)
                assert ended is not None and ended.code() == grpc.StatusCode.PERMISSION_DENIED
                assert trailer(ended, "syncwire-reason") == "banned"
        closed = await refused(with_token(server.ws_url, mallory, ROOM))
        assert closed.code == 4403
        assert len(server.core.registry) == 0


async def test_a_failing_hook_follows_the_failure_policy(
    broker_kind: pytest.FixtureRequest,
) -> None:
    timeouts = {"hook_publish_timeout": 0.05, "hook_subscribe_timeout": 0.05}
    async with hooked_server(broker_kind, StuckHooks(), **timeouts) as server:
        async with stream_on(server, "grpc") as stream:
            await stream.welcome()
            reply = await stream.expect_reply(publish_request(stream, b"x"))
            assert reply.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert (reply.error.reason_code, reply.error.retry_after_ms) == ("hook_timeout", 1000)
            reply = await stream.expect_reply(
                stream.send(subscribe=sync_pb2.Subscribe(collection_id=ROOM))
            )
            assert reply.error.reason_code == "hook_failed"
            assert await server.core.broker.history(ROOM, 0, "", 10) is not None
            assert (await server.core.broker.history(ROOM, 0, "", 10)).offset == 0
        samples = {
            (s.labels["hook"], s.labels["outcome"]): s.value
            for metric in server.core.metrics.registry.collect()
            if metric.name == "syncwire_hook_seconds"
            for s in metric.samples
            if s.name.endswith("_count")
        }
        assert samples[("publish", "timeout")] == 1
        assert samples[("subscribe", "failed")] == 1
    async with hooked_server(
        broker_kind, StuckHooks(), hook_failure_policy="open", **timeouts
    ) as server:
        async with stream_on(server, "ws") as stream:
            await stream.welcome()
            assert (await stream.publish(ROOM, b"x")).offset == 1
            await stream.subscribe(ROOM)


@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_a_stalled_or_unreachable_proxy_follows_the_failure_policy(
    broker_kind: pytest.FixtureRequest, proxy_address: str, policy: str
) -> None:
    options = {"proxy_url": f"grpc://{proxy_address}", "hook_failure_policy": policy}
    async with hooked_server(broker_kind, None, hook_publish_timeout=0.1, **options) as server:
        async with stream_on(server, "ws") as stream:
            await stream.welcome()
            reply = await stream.expect_reply(publish_request(stream, b"stall-me"))
            if policy == "closed":
                assert (reply.error.code, reply.error.reason_code) == (14, "hook_timeout")
                assert (await server.core.broker.history(ROOM, 0, "", 10)).offset == 0
            else:
                assert reply.publish_ack.offset == 1
    unreachable_port = free_port()
    unreachable = {
        "proxy_url": f"grpc://127.0.0.1:{unreachable_port}",
        "hook_failure_policy": policy,
    }
    async with hooked_server(broker_kind, None, **unreachable) as server:
        async with stream_on(server, "grpc") as stream:
            if policy == "closed":
                ended = await asyncio.wait_for(stream.ended, 20)
                assert ended is not None and ended.code() == grpc.StatusCode.UNAVAILABLE
                assert trailer(ended, "syncwire-reason") in ("hook_failed", "hook_timeout")
                # The client is told the hook failed, not the application's address nor
                # its transport error (which a client would read as "connection refused").
                assert ended.details() in ("connect hook failed", "connect hook timed out")
                assert str(unreachable_port) not in (ended.details() or "")
            else:
                await stream.welcome()
                assert (await stream.publish("elsewhere", b"x")).offset == 1


async def test_the_sync_client_shows_the_subscribe_hooks_initial_data(
    broker_kind: pytest.FixtureRequest, app: tuple[AppHooks | None, dict[str, Any]]
) -> None:
    hooks, options = app
    async with hooked_server(broker_kind, hooks, **options) as server:
        config = ClientConfig(outbox_path=None)
        async with SyncClient([server.ws_url], config) as client:
            await client.connect()
            subscription = await client.subscribe(ROOM)
            assert subscription.initial_data == b"hello "
            with pytest.raises(RequestFailed) as refused_subscribe:
                await client.subscribe("secret")
            assert refused_subscribe.value.reason_code == "no_secrets"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hooks": "nosuch.module:X"}, "hooks: cannot import 'nosuch.module'"),
        ({"hooks": "myapp"}, "hooks: 'myapp' is not MODULE:OBJECT"),
        ({"hooks": "json:loads"}, "is not a server.hooks.Hooks instance or subclass"),
        ({"proxy_url": "http://127.0.0.1:7000"}, "is not grpc://HOST:PORT or grpcs://HOST:PORT"),
        (
            {"proxy_url": "grpc://127.0.0.1:7000", "proxy_hooks": "connect,foo"},
            "proxy_hooks: unknown hook 'foo'",
        ),
        (
            {"hooks": "tests.test_hooks:AppHooks", "proxy_url": "grpc://127.0.0.1:7000"},
            "hooks and proxy_url exclude each other",
        ),
        ({"proxy_hooks": "connect"}, "proxy_hooks needs proxy_url"),
    ],
)
def test_a_misnamed_hook_configuration_is_one_clear_error(
    options: dict[str, str], message: str
) -> None:
    """Each mistake is refused at start with one line naming the option (the server
    prints it and exits 2), never ignored."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        configured_hooks(make_config(**options))


async def syncwire_cli(*args: str) -> tuple[int, str]:
    """`syncwire ARGS` in a subprocess (the server runs in this event loop): its exit
    code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_the_cli_shows_a_hooks_refusal_as_the_applications(
    broker_kind: pytest.FixtureRequest,
) -> None:
    """A subscribe hook's PERMISSION_DENIED is the application's word, not a token's:
    the CLI prints it without blaming a token (the server has no authentication)."""
    async with hooked_server(broker_kind, AppHooks()) as server:
        code, err = await syncwire_cli("subscribe", "secret", "-s", f"grpc://{server.grpc_address}")
    assert code == 1
    assert "permission_denied: not for you" in err
    assert "token" not in err


async def test_the_cli_shows_a_hook_timeout_as_the_servers_answer(
    broker_kind: pytest.FixtureRequest,
) -> None:
    """UNAVAILABLE `hook_timeout` comes from a reachable server: the CLI says the
    application's hook failed (exit 4, "publish hook timed out"), not "cannot connect
    ...: timed out" (exit 3)."""
    async with hooked_server(broker_kind, StuckHooks(), hook_publish_timeout=0.1) as server:
        code, err = await syncwire_cli(
            "publish", ROOM, "x", "--timeout", "2", "-s", f"grpc://{server.grpc_address}"
        )
    assert code == 4, err
    assert "the application's hook failed: publish hook timed out (hook_timeout;" in err
    assert "cannot connect" not in err


async def test_a_hook_raising_again_logs_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that raises on every call (a client retrying every second calls it again
    and again): the first failure logs its traceback, the next ones within a minute one
    line each."""
    server = SyncwireServer(make_config(), hooks=StuckHooks())
    await server.start()
    try:
        with caplog.at_level(logging.ERROR, logger="server.hooks"):
            async with stream_on(server, "grpc") as stream:
                await stream.welcome()
                for _ in range(3):
                    reply = await stream.expect_reply(
                        stream.send(subscribe=sync_pb2.Subscribe(collection_id=ROOM))
                    )
                    assert reply.error.reason_code == "hook_failed"
    finally:
        await server.stop(grace=1.0)
    failures = [r for r in caplog.records if r.getMessage().startswith("subscribe hook failed")]
    assert [r.exc_info is not None for r in failures] == [True, False, False]
    assert failures[1].getMessage() == (
        "subscribe hook failed: RuntimeError: the application's database is down "
        "(the traceback is logged at most once a minute)"
    )
