"""Which server a command talks to, and how: endpoint, token and TLS trust.

Every subcommand takes the same connection options (`connection_options`); they resolve
into one `Target` that opens channels (for the generated stubs) and client
configurations (for `SyncClient`) with the same credentials.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import click
import grpc
import grpc.aio

from client.backoff import Backoff
from client.config import ClientConfig
from client.endpoints import ChannelFactory, ChannelSettings, Endpoint, open_channel
from client.tls import tls_channel_factory

from .errors import UsageError
from .params import UTF8_TEXT

R = TypeVar("R")
TransportName = Literal["grpc", "ws"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS: dict[TransportName, int] = {"grpc": 50051, "ws": 8080}
_SCHEMES: dict[tuple[TransportName, bool], str] = {
    ("grpc", False): "grpc",
    ("grpc", True): "grpcs",
    ("ws", False): "ws",
    ("ws", True): "wss",
}


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved server endpoint with the credentials to use there.

    Attributes:
        endpoint: Where to connect (its URL is what messages show).
        token: Bearer token sent as ``authorization`` metadata on every call.
        ca_file: PEM file of CAs trusted for TLS (None: the system store).
        timeout: Seconds allowed to connect and for each request.
    """

    endpoint: Endpoint
    token: str | None = None
    ca_file: Path | None = None
    timeout: float = 10.0

    @property
    def where(self) -> str:
        """The endpoint's URL, as messages show it."""
        return self.endpoint.url

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """``(("authorization", "Bearer TOKEN"),)`` with a token, else empty."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    @property
    def channel_factory(self) -> ChannelFactory:
        """Opens channels trusting --ca (if given) for grpcs:// and wss://."""
        return open_channel if self.ca_file is None else tls_channel_factory(self.ca_file)

    def open_channel(self) -> grpc.aio.Channel:
        """A channel to the endpoint, for unary calls on the generated stubs."""
        return self.channel_factory(self.endpoint, ChannelSettings(connect_timeout=self.timeout))

    def client_config(self, *, reconnect_attempts: int | None) -> ClientConfig:
        """SyncClient settings: this target's credentials and timeouts, quick retries
        (`reconnect_attempts` None: keep reconnecting), and no wait at close (commands
        await what they need before closing)."""
        return ClientConfig(
            backoff=Backoff(base=0.5, cap=5.0, max_attempts=reconnect_attempts),
            connect_timeout=self.timeout,
            first_connect_timeout=None,  # CommandSession fails at the first failed attempt
            request_timeout=self.timeout,
            metadata=self.metadata,
            close_flush_timeout=0.0,
            channel_factory=self.channel_factory,
        )


def resolve_endpoint(server: str | None, transport: TransportName | None, tls: bool) -> Endpoint:
    """The endpoint for ``--server`` (a URL, ``host:port`` or ``host``), ``--transport``
    and ``--tls``; defaults to the local server's gRPC port."""
    if server and "://" in server:
        try:
            endpoint = Endpoint.parse(server)
        except ValueError as exc:
            raise UsageError(f"invalid --server: {exc}") from None
        named: TransportName = "ws" if endpoint.transport == "websocket" else "grpc"
        if transport is not None and transport != named:
            raise UsageError(f"--transport {transport} contradicts --server {server}")
        if tls and not endpoint.tls:
            raise UsageError(
                f"--tls/--ca need a TLS URL ({_SCHEMES[named, True]}://), got {server}"
            )
        return endpoint
    transport = transport or "grpc"
    netloc = _with_port(server or DEFAULT_HOST, DEFAULT_PORTS[transport])
    try:
        return Endpoint.parse(f"{_SCHEMES[transport, tls]}://{netloc}")
    except ValueError as exc:
        raise UsageError(f"invalid --server: {exc}") from None


def _with_port(text: str, default_port: int) -> str:
    """``host:port`` from ``host`` or ``host:port`` (IPv6 in brackets)."""
    try:
        port = urlsplit("//" + text).port
    except ValueError:
        raise UsageError(f"invalid --server {text!r}: the port must be 0..65535") from None
    return text if port is not None else f"{text}:{default_port}"


_OPTIONS = (
    click.option(
        "-s",
        "--server",
        metavar="URL",
        envvar="SYNCWIRE_SERVER",
        show_envvar=True,
        help="Server endpoint: grpc://HOST:PORT, grpcs://, ws://HOST:PORT, wss://, or "
        "HOST[:PORT] with --transport. Default: 127.0.0.1 on the transport's default "
        "port (gRPC 50051, WebSocket 8080).",
    ),
    click.option(
        "-t",
        "--transport",
        type=click.Choice(["grpc", "ws"]),
        help="Transport when --server is not a URL (default grpc).",
    ),
    click.option(
        "--token",
        type=UTF8_TEXT,
        envvar="SYNCWIRE_TOKEN",
        show_envvar=True,
        help="Bearer token (JWT), sent as 'authorization: Bearer TOKEN' metadata.",
    ),
    click.option(
        "--tls", is_flag=True, help="Use TLS (grpcs:// / wss://) when --server is not a URL."
    ),
    click.option(
        "--ca",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar="SYNCWIRE_CA",
        show_envvar=True,
        help="PEM file of CA certificates to trust for TLS (implies --tls).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=10.0,
        show_default=True,
        help="Seconds allowed to connect, and for each request.",
    ),
)


CONNECTION_OPTION_NAMES = ("server", "transport", "token", "tls", "ca", "timeout")
"""Parameter names of the connection options (on the group and on each command)."""


def group_connection_options(group: Callable[..., R]) -> Callable[..., R]:
    """Adds the connection options to a group (`syncwire`, `syncwire admin`), so they are
    accepted before the command name too (``syncwire --transport ws health``,
    ``syncwire --server URL admin collections``, ``syncwire admin --server URL
    collections``); the group ignores them and `connection_options` reads them from the
    contexts of every group above the command."""
    decorated = group
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


def _ancestors(ctx: click.Context) -> list[click.Context]:
    """The contexts of the groups above `ctx`, nearest first (``admin``, then ``syncwire``)."""
    found = []
    parent = ctx.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found


def given_before_command(ctx: click.Context) -> list[str]:
    """The connection options given on the command line before the command name (after
    ``syncwire`` or after a group's name such as ``admin``)."""
    return [
        name
        for name in CONNECTION_OPTION_NAMES
        if any(
            ancestor.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
            for ancestor in _ancestors(ctx)
        )
    ]


def inherited_options(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """`values` (the command's own options, by parameter name), each replaced by the
    nearest group's when the command's own was not given on its command line and a group
    above it was: command line after the command name > after a group's name (nearest
    first) > environment > default. Only the names in `values` are considered."""
    merged = dict(values)
    for name in values:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            continue
        for ancestor in _ancestors(ctx):
            if ancestor.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                merged[name] = ancestor.params[name]
                break
    return merged


def connection_options(command: Callable[..., R]) -> Callable[..., R]:
    """Adds the connection options to a click command; it receives `target: Target`.
    The same options given before the command name (see `group_connection_options`)
    apply when the command's own are not given."""

    @functools.wraps(command)
    def with_target(*args: Any, **kwargs: Any) -> R:
        given = {name: kwargs.pop(name) for name in CONNECTION_OPTION_NAMES}
        options = inherited_options(click.get_current_context(), given)
        server: str | None = options["server"]
        transport: TransportName | None = options["transport"]
        token: str | None = options["token"]
        ca: Path | None = options["ca"]
        timeout: float = options["timeout"]
        tls = bool(options["tls"])
        endpoint = resolve_endpoint(server, transport, tls or ca is not None)
        target = Target(endpoint, token=token or None, ca_file=ca, timeout=timeout)
        return command(*args, target=target, **kwargs)

    decorated: Callable[..., R] = with_target
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


__all__ = [
    "Target",
    "connection_options",
    "given_before_command",
    "group_connection_options",
    "inherited_options",
    "resolve_endpoint",
]
