"""Runs the whole server: core, gRPC listener, WebSocket listener, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc

from wire.deflate import DeflateSettings
from wire.tasks import cancel_and_wait

from .admin_service import ADMIN_SERVICE_NAME, AdminServicer, admin_registration
from .app_services import ServiceRegistration, load_registrations
from .broker import BrokerError
from .config import ConfigError, ServerConfig
from .core import SyncCore
from .grpc_server import (
    SYNC_SERVICE_NAME,
    bind_grpc_port,
    build_grpc_server,
    mark_serving,
    register_services,
)
from .hooks import Hooks
from .legacy_gateway import LegacyGateway
from .malformed import MalformedRequestInterceptor
from .proxy_hooks import configured_hooks
from .servicer import SyncServicer
from .tls import ServerTls, exposure_warnings
from .ws.server import WebSocketServer

log = logging.getLogger(__name__)


class SyncwireServer:
    """The service on one node: one SyncCore served over every listener."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        reuse_port: bool = False,
        services: Sequence[ServiceRegistration] = (),
        hooks: Hooks | None = None,
    ) -> None:
        """`reuse_port`: share the ports with the other workers of a supervisor
        (SO_REUSEPORT on both listeners; see `server.supervisor`). `services`: the
        application's own service registrations (see `server.app_services`), served on
        both listeners next to SyncService, with those `config.services` names; health
        and reflection list them. Raises ConfigError when `config.services` names a
        function that cannot be loaded. `hooks`: the application's hooks
        (`server.hooks.Hooks`; else what `config.hooks` or `config.proxy_url` names, if
        any); raises ConfigError when those cannot be loaded."""
        self.config = config
        self.core = SyncCore(config, hooks=hooks if hooks is not None else configured_hooks(config))
        self.servicer = SyncServicer(self.core)
        self.admin_servicer = AdminServicer(self.core)
        app_services = [
            *services,
            *load_registrations(config.services),
            admin_registration(self.admin_servicer),
        ]
        self.ws_server = WebSocketServer(
            interceptors=[MalformedRequestInterceptor(SYNC_SERVICE_NAME)],
            legacy_handler=LegacyGateway(self.core),
            max_message_bytes=config.max_message_bytes,
            max_concurrent_calls=config.max_concurrent_calls,
            max_connections=config.max_connections,
            max_connections_per_address=config.max_connections_per_address,
            ping_interval=config.ws_ping_interval or None,
            ping_timeout=config.ws_ping_timeout or None,
            close_timeout=config.ws_close_timeout,
            compression=config.ws_compression
            and DeflateSettings(config.ws_compression_window_bits, config.ws_compression_mem_level),
            reuse_port=reuse_port,
            allowed_origins=config.origin_patterns,
            server_id=self.core.server_id,
        )
        self.core.metrics.watch_framing_connections(lambda: len(self.ws_server.connections))
        known = set(self.ws_server.service_names())
        for register in app_services:
            register(self.ws_server)
        known.add(ADMIN_SERVICE_NAME)  # served, but not one of the application's
        self.app_service_names = [
            name for name in self.ws_server.service_names() if name not in known
        ]
        # AdminService is always registered (it refuses every call without
        # --admin-token); reflection lists it when it is enabled.
        listed = [ADMIN_SERVICE_NAME] if config.admin_token else []
        ws_health = register_services(
            self.ws_server,
            self.servicer,
            app_service_names=self.app_service_names,
            listed_names=listed,
        )
        self.grpc_server, grpc_health = build_grpc_server(
            config, self.servicer, reuse_port, app_services, self.app_service_names, listed
        )
        self._health = [grpc_health, ws_health]
        self.tls = ServerTls.from_config(config)
        self.grpc_port = 0
        self.ws_port = 0
        self.metrics_port: int | None = None
        self._stopped = asyncio.Event()
        self._health_follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Binds both ports, then starts serving. Raises OSError (one readable line) when
        a port cannot be bound; nothing is left running then."""
        for warning in exposure_warnings(self.config):
            log.warning(warning)
        await self.core.start()
        try:
            self._bind()
            await self.grpc_server.start()
            await self.ws_server.start()
        except BaseException:
            await self.grpc_server.stop(None)
            await self.ws_server.stop(None)
            await self.core.stop()
            raise
        if self.config.metrics_port >= 0:
            self.metrics_port = self.core.metrics.serve(self.config.host, self.config.metrics_port)
        for health in self._health:  # application services do not depend on the broker
            await mark_serving(health, True, self.app_service_names)
        healthy = self.core.broker.healthy
        await self._report_health(healthy)
        self._health_follower = asyncio.create_task(
            self._follow_broker_health(healthy), name="syncwire-health"
        )

    async def _report_health(self, healthy: bool) -> None:
        self.core.metrics.broker_up.set(1 if healthy else 0)
        for health in self._health:
            await mark_serving(health, healthy)
        if not healthy:
            log.warning("health NOT_SERVING: the broker is unavailable")

    async def _follow_broker_health(self, reported: bool) -> None:
        """Health says SERVING exactly while the broker can serve (NOT_SERVING while
        Redis is unreachable), until shutdown begins."""
        broker = self.core.broker
        while True:
            await broker.wait_healthy(not reported)
            reported = broker.healthy
            await self._report_health(reported)
            if reported:
                log.warning("health SERVING: the broker is available again")

    def _bind(self) -> None:
        """Binds the gRPC then the WebSocket port (nothing serves yet)."""
        address = f"{self.config.host}:{self.config.grpc_port}"
        credentials = None if self.tls is None else self.tls.grpc_credentials
        self.grpc_port = bind_grpc_port(self.grpc_server, address, credentials)
        ws_address = f"{self.config.host}:{self.config.ws_port}"
        try:
            if self.tls is None:
                self.ws_port = self.ws_server.add_insecure_port(ws_address)
            else:
                self.ws_port = self.ws_server.add_secure_port(ws_address, self.tls.ssl_context)
        except OSError as exc:
            raise OSError(
                f"cannot bind WebSocket port {ws_address}: {os_error_reason(exc)}"
            ) from None

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC listener (the bound port once started)."""
        return f"{self.config.host}:{self.grpc_port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS) of the WebSocket listener."""
        scheme = "ws" if self.tls is None else "wss"
        return f"{scheme}://{self.config.host}:{self.ws_port}"

    def ready_line(self) -> str:
        """The one line printed when the server is ready:
        ``syncwire ready grpc=HOST:PORT ws=URL broker=URL [metrics=URL]`` (scripts read it).
        """
        line = (
            f"syncwire ready grpc={self.grpc_address} ws={self.ws_url} broker={self.config.broker}"
        )
        if self.metrics_port is not None:
            line += f" metrics=http://{self.config.host}:{self.metrics_port}/metrics"
        return line

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting, ends every session with UNAVAILABLE, drains within grace."""
        if self._stopped.is_set():
            return
        grace = self.config.shutdown_grace if grace is None else grace
        if self._health_follower is not None:
            await cancel_and_wait(self._health_follower, log, "the broker health follower")
        for health in self._health:
            await mark_serving(health, False, ("", SYNC_SERVICE_NAME, *self.app_service_names))
        self.core.begin_shutdown()
        await asyncio.gather(self.grpc_server.stop(grace), self.ws_server.stop(grace))
        await self.core.stop()
        self.core.metrics.stop_serving()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Returns once `stop()` has finished."""
        await self._stopped.wait()


def os_error_reason(error: OSError) -> str:
    """An OSError's reason without errno and address noise: 'address already in use'."""
    return (os.strerror(error.errno) if error.errno else str(error)).lower()


async def serve(
    config: ServerConfig,
    *,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
    announce_stop: bool = True,
) -> None:
    """Runs until SIGTERM/SIGINT (or until `stop` is set), then shuts down gracefully.
    `reuse_port`: see `SyncwireServer`. `announce_stop`: log the shutdown and print
    "syncwire stopped" (a `--workers` worker leaves both to its supervisor)."""
    server = SyncwireServer(config, reuse_port=reuse_port)
    await server.start()
    print(server.ready_line(), flush=True)
    stop = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    if announce_stop:
        log.warning("shutting down (grace %.1f s)", config.shutdown_grace)
    await server.stop()
    if announce_stop:
        print("syncwire stopped", file=sys.stderr, flush=True)


EVENT_LOOP_ENV = "SYNCWIRE_EVENT_LOOP"
"""Environment variable: `asyncio` runs the server on the default loop even when uvloop
is installed (default `auto`: uvloop when installed)."""


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """What runs the server's main coroutine: `uvloop.run` when uvloop is installed (a
    default dependency on Linux) and `SYNCWIRE_EVENT_LOOP` is not `asyncio`, else
    `asyncio.run` (the bench measures the server on uvloop)."""
    if os.environ.get(EVENT_LOOP_ENV, "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


def run_server(main: Coroutine[Any, Any, None], prog: str) -> int:
    """Runs a server coroutine (`serve`, a worker's run) to its end and returns the exit
    code: 0 after a clean shutdown, 2 when configuration files do not load (ConfigError),
    1 when a port cannot be bound (OSError) or the broker refuses to start (BrokerError);
    the reason is one line on stderr, prefixed with `prog`."""
    try:
        event_loop_runner()(main)
    except ConfigError as exc:  # key or certificate files that do not load
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (BrokerError, OSError) as exc:  # e.g. a durable broker over a non-durable Redis
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["SyncwireServer", "grpc", "serve"]
