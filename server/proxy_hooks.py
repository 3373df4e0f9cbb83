"""The application hooks over gRPC: `ProxyHooks` calls an application's
`syncwire.v1.ProxyService` (proto/syncwire/v1/proxy.proto) wherever in-process hooks
would run, so an application in any language gets the same contract.

A response with `refusal` set is a `HookRefusal` with that code and reason code; a call
that fails (any non-OK status, the application unreachable) is a hook failure, and the
`HookRunner`'s timeouts and failure policy apply as to in-process hooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

import grpc
import grpc.aio
from google.protobuf.struct_pb2 import Struct

from syncwire.v1 import proxy_pb2, proxy_pb2_grpc, types_pb2
from wire.status import number_to_code

from .config import ConfigError, ServerConfig
from .hooks import (
    HOOK_NAMES,
    Caller,
    ConnectResult,
    HookName,
    HookRefusal,
    Hooks,
    SubscribeResult,
    load_hooks,
)

SCHEMES: Final = ("grpc", "grpcs")


def parse_proxy_url(url: str) -> tuple[str, bool]:
    """(`host:port`, tls) of a `grpc://HOST:PORT` or `grpcs://HOST:PORT` URL; raises
    ConfigError naming the `proxy_url` option."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname or parts.port is None:
        raise ConfigError(f"proxy_url: {url!r} is not grpc://HOST:PORT or grpcs://HOST:PORT")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}", parts.scheme == "grpcs"


def parse_hook_names(spec: str) -> frozenset[HookName]:
    """The hook names of a comma-separated `proxy_hooks` option; raises ConfigError."""
    names = {part.strip() for part in spec.split(",") if part.strip()}
    unknown = names - set(HOOK_NAMES)
    if unknown:
        raise ConfigError(
            f"proxy_hooks: unknown hook {sorted(unknown)[0]!r} (known: {', '.join(HOOK_NAMES)})"
        )
    return frozenset(name for name in HOOK_NAMES if name in names)


def hook_caller(caller: Caller) -> proxy_pb2.HookCaller:
    """The wire form of a `Caller` (claims as a google.protobuf.Struct)."""
    message = proxy_pb2.HookCaller(
        peer_id=caller.peer_id,
        transport=caller.transport,
        peer_address=caller.peer_address,
        user_id=caller.user_id,
    )
    if caller.claims:
        claims = Struct()
        claims.update(dict(caller.claims))
        message.claims.CopyFrom(claims)
    return message


def _raise_refusal(refusal: proxy_pb2.HookRefusal) -> None:
    code = number_to_code(refusal.code) if refusal.code else grpc.StatusCode.PERMISSION_DENIED
    if code == grpc.StatusCode.OK:
        code = grpc.StatusCode.PERMISSION_DENIED
    raise HookRefusal(
        refusal.message or "refused by the application",
        code=code,
        reason_code=refusal.reason_code,
    )


class ProxyHooks(Hooks):
    """Hooks answered by the application's ProxyService at `url`; only the `hooks`
    named are called (the others accept without a call)."""

    def __init__(self, url: str, hooks: Iterable[HookName] = HOOK_NAMES) -> None:
        """Raises ConfigError for a bad URL. The channel opens on first use."""
        self.target, self.tls = parse_proxy_url(url)
        self.hooks = frozenset(hooks)
        self._channel: grpc.aio.Channel | None = None
        self._stub: proxy_pb2_grpc.ProxyServiceAsyncStub | None = None

    def implements(self, name: HookName) -> bool:
        return name in self.hooks

    @property
    def stub(self) -> proxy_pb2_grpc.ProxyServiceAsyncStub:
        if self._stub is None:
            if self.tls:
                self._channel = grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials())
            else:
                self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = proxy_pb2_grpc.ProxyServiceStub(self._channel)
        assert self._stub is not None
        return self._stub

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(None)

    async def on_connect(self, caller: Caller) -> ConnectResult | None:
        answer = await self.stub.OnConnect(proxy_pb2.OnConnectRequest(caller=hook_caller(caller)))
        if answer.HasField("refusal"):
            _raise_refusal(answer.refusal)
        return ConnectResult(answer.user_info if answer.HasField("user_info") else None)

    async def on_subscribe(self, caller: Caller, collection_id: str) -> SubscribeResult | None:
        answer = await self.stub.OnSubscribe(
            proxy_pb2.OnSubscribeRequest(caller=hook_caller(caller), collection_id=collection_id)
        )
        if answer.HasField("refusal"):
            _raise_refusal(answer.refusal)
        return SubscribeResult(answer.initial_data) if answer.initial_data else None

    async def on_publish(self, caller: Caller, delta: types_pb2.Delta) -> types_pb2.Delta | None:
        answer = await self.stub.OnPublish(
            proxy_pb2.OnPublishRequest(caller=hook_caller(caller), delta=delta)
        )
        if answer.HasField("refusal"):
            _raise_refusal(answer.refusal)
        return answer.delta if answer.HasField("delta") else None

    async def on_presence(self, caller: Caller, presence: types_pb2.Presence) -> None:
        await self.stub.OnPresence(
            proxy_pb2.OnPresenceRequest(caller=hook_caller(caller), presence=presence)
        )


_ALL_PROXY_HOOKS: Final = {f.name: f.default for f in dataclasses.fields(ServerConfig)}[
    "proxy_hooks"
]


def configured_hooks(config: ServerConfig) -> Hooks | None:
    """The hooks the configuration names: `hooks` (MODULE:OBJECT) or `proxy_url` (not
    both; ConfigError), or None."""
    if config.hooks and config.proxy_url:
        raise ConfigError("hooks and proxy_url exclude each other: name one")
    if not config.proxy_url and config.proxy_hooks != _ALL_PROXY_HOOKS:
        raise ConfigError("proxy_hooks needs proxy_url (the service that answers them)")
    if config.proxy_url:
        return ProxyHooks(config.proxy_url, parse_hook_names(config.proxy_hooks))
    return load_hooks(config.hooks)
