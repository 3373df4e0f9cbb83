"""`syncwire presence`, `info` and `health`: one unary call each, on the generated stubs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import click
import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .errors import CliError, ExitCode, from_rpc_error
from .output import emit_json, iso_time, print_columns, proto_dict, stdout
from .params import UTF8_TEXT
from .runner import run
from .target import Target, connection_options

T = TypeVar("T")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextlib.asynccontextmanager
async def _channel(target: Target) -> AsyncIterator[grpc.aio.Channel]:
    channel = target.open_channel()
    try:
        yield channel
    finally:
        await channel.close(None)


async def _call(target: Target, what: str, call: Awaitable[T]) -> T:
    """Awaits a unary call; a failure becomes one line naming `what`."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error, where=target.where, what=what) from None


# ---------------------------------------------------------------- presence


@click.command()
@click.argument("collection", type=UTF8_TEXT)
@json_option
@connection_options
def presence(target: Target, collection: str, as_json: bool) -> None:
    """List who is present in COLLECTION (peers subscribed with presence)."""
    response = run(_presence(target, collection))
    if as_json:
        # "members" is there even when nobody is present (proto JSON omits empty lists).
        emit_json({"collection_id": collection, "members": [], **proto_dict(response)})
        return
    if not response.members:
        stdout.print(f"nobody is present in {collection!r}")
        return
    rows = [("PEER", "USER", "NAME", "STATUS", "SINCE")]
    for member in response.members:
        user = member.user_info
        rows.append(
            (
                member.peer_id,
                user.user_id or "-",
                user.display_name or user.username or "-",
                member.status or "-",
                iso_time(member.timestamp) or "-",
            )
        )
    print_columns(rows)


async def _presence(target: Target, collection: str) -> sync_pb2.GetPresenceResponse:
    async with _channel(target) as channel:
        request = sync_pb2.GetPresenceRequest(collection_id=collection)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        return await _call(
            target,
            "presence",
            stub.GetPresence(request, timeout=target.timeout, metadata=target.metadata or None),
        )


# -------------------------------------------------------------------- info


@click.command()
@json_option
@connection_options
def info(target: Target, as_json: bool) -> None:
    """Show what the server is and allows: version, limits, features."""
    response = run(_info(target))
    if as_json:
        emit_json({"endpoint": target.where, **proto_dict(response)})
        return
    server = response.server_info
    rows: list[tuple[str, ...]] = [
        ("endpoint", f"{target.where} ({target.endpoint.transport})"),
        ("version", server.version or "-"),
        ("server id", server.server_id or "-"),
        ("protocol", types_pb2.ProtocolVersion.Name(server.protocol_version)),
        ("features", ", ".join(server.features) or "-"),
        ("max message", f"{server.max_message_bytes} bytes" if server.max_message_bytes else "-"),
        ("max connections", _optional(server, "max_connections")),
        ("heartbeat", _optional(server, "heartbeat_interval_seconds", " s")),
        (
            "idle timeout",
            f"{server.idle_timeout_seconds} s" if server.idle_timeout_seconds else "-",
        ),
        ("server time", iso_time(response.timestamp) or "-"),
    ]
    print_columns(rows)


def _optional(message: Any, field: str, unit: str = "") -> str:
    return f"{getattr(message, field)}{unit}" if message.HasField(field) else "-"


async def _info(target: Target) -> sync_pb2.GetServerInfoResponse:
    async with _channel(target) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        return await _call(
            target,
            "info",
            stub.GetServerInfo(
                sync_pb2.GetServerInfoRequest(),
                timeout=target.timeout,
                metadata=target.metadata or None,
            ),
        )


# ------------------------------------------------------------------ health


@click.command(short_help="Check the server's health (exit 0 when SERVING).")
@click.option(
    "--service",
    default="",
    type=UTF8_TEXT,
    help="Service to ask about ('' = the server as a whole; or syncwire.v1.SyncService).",
)
@connection_options
def health(target: Target, service: str) -> None:
    """Ask the standard gRPC health service (grpc.health.v1.Health/Check).

    Prints the status; exits 0 when SERVING, 3 when not serving or unreachable, 1 when
    the service is unknown. Suitable for probes:

    \b
      syncwire health --timeout 2
    """
    status = run(_health(target, service))
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    stdout.print(name)
    if status != health_pb2.HealthCheckResponse.SERVING:
        raise CliError(f"{target.where} is {name}", ExitCode.UNAVAILABLE)


async def _health(target: Target, service: str) -> int:
    async with _channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = await stub.Check(
                request, timeout=target.timeout, metadata=target.metadata or None
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise CliError(f"{target.where} knows no service {service!r}") from None
            raise from_rpc_error(error, where=target.where, what="health check") from None
        status: int = response.status
        return status
