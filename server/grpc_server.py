"""The native gRPC listener: the servicer plus health checking and reflection."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from syncwire.v1 import sync_pb2, sync_pb2_grpc

from .app_services import ServiceRegistration
from .config import ServerConfig
from .malformed import MalformedRequestInterceptor


class HealthServicer(Protocol):
    """What this server uses of grpc_health's asyncio servicer (`health.aio`, public but
    not described by grpc-stubs)."""

    async def set(
        self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        """Sets a service's serving status (and notifies its watchers)."""

    async def enter_graceful_shutdown(self) -> None:
        """Marks every service NOT_SERVING and ignores later `set` calls."""


SYNC_SERVICE_NAME: str = sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name


def grpc_options(config: ServerConfig, reuse_port: bool = False) -> list[tuple[str, int]]:
    """Channel arguments for long-lived streams. Keepalive settings are coordinated with
    the client's (see client defaults): the server pings idle connections every 20 s and
    tolerates client pings every 5 s, so clients never get GOAWAY too_many_pings.
    SO_REUSEPORT only for the workers of one supervisor (`reuse_port`): otherwise a
    second server on a busy port must fail to bind, not share it silently."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", config.max_concurrent_calls),
        ("grpc.max_send_message_length", -1),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", int(reuse_port)),
    ]


def register_services(
    server: grpc.aio.Server,
    servicer: sync_pb2_grpc.SyncServiceServicer,
    app_services: Sequence[ServiceRegistration] = (),
    app_service_names: Sequence[str] = (),
    listed_names: Sequence[str] = (),
) -> HealthServicer:
    """Registers the sync service, the application's services (``app_services``, whose
    full names are ``app_service_names``), health and reflection listing them all and
    ``listed_names`` (services ``app_services`` registers that are the server's own, such
    as AdminService when it is enabled), on any grpc.aio.Server (the native one or the
    WebSocket adapter); returns the health servicer."""
    sync_pb2_grpc.add_SyncServiceServicer_to_server(servicer, server)
    for register in app_services:
        register(server)
    health_servicer = cast(HealthServicer, health.aio.HealthServicer())  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SYNC_SERVICE_NAME,
            *app_service_names,
            *listed_names,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return health_servicer


def bind_grpc_port(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    """Adds `address` (``host:port``, port 0 = ephemeral) to `server`; returns the bound
    port. Raises OSError "cannot bind gRPC port ADDRESS: REASON" when it cannot bind.

    grpc's C core logs a failed bind straight to file descriptor 2 and raises a
    RuntimeError without the reason; the log is captured while binding and its reason
    ("address already in use") goes into the OSError instead (kept on stderr otherwise).
    """
    with _captured_native_stderr() as captured:
        try:
            if credentials is None:
                return server.add_insecure_port(address)
            return server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            log_text = captured()
            match = _BIND_ERROR.search(log_text)
            reason = match["reason"].lower() if match else str(exc)
            raise OSError(f"cannot bind gRPC port {address}: {reason}") from None


_BIND_ERROR = re.compile(r"Error in bind for address '[^']*': (?P<reason>[^)]+)\)")


@contextlib.contextmanager
def _captured_native_stderr() -> Iterator[Callable[[], str]]:
    """Points file descriptor 2 at a temporary file inside the block; yields a function
    returning what was written there. Unless the block raised, the text is written back
    to the real stderr afterwards."""
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        restored = False

        def read() -> str:
            nonlocal restored
            if not restored:
                os.dup2(saved, 2)
                restored = True
            capture.seek(0)
            return capture.read().decode("utf-8", "replace")

        try:
            yield read
        except BaseException:
            read()
            raise
        else:
            text = read()
            if text:
                sys.stderr.write(text)
        finally:
            if not restored:
                os.dup2(saved, 2)
            os.close(saved)


def build_grpc_server(
    config: ServerConfig,
    servicer: sync_pb2_grpc.SyncServiceServicer,
    reuse_port: bool = False,
    app_services: Sequence[ServiceRegistration] = (),
    app_service_names: Sequence[str] = (),
    listed_names: Sequence[str] = (),
) -> tuple[grpc.aio.Server, HealthServicer]:
    """A grpc.aio server with the sync service, the application's services, health and
    reflection registered (see `register_services`). SyncService's lenient request
    decoding applies to it only."""
    server = grpc.aio.server(
        interceptors=[MalformedRequestInterceptor(SYNC_SERVICE_NAME)],
        options=grpc_options(config, reuse_port),
    )
    health_servicer = register_services(
        server, servicer, app_services, app_service_names, listed_names
    )
    return server, health_servicer


async def mark_serving(
    health_servicer: HealthServicer,
    serving: bool,
    names: Sequence[str] = ("", SYNC_SERVICE_NAME),
) -> None:
    """Sets the health status of ``names`` ("" = the server as a whole)."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in names:
        await health_servicer.set(name, status)
