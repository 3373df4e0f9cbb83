"""An application's own gRPC services, served next to SyncService on both listeners.

A *service registration* is a function that registers servicers on a grpc.aio.Server,
typically one line per service::

    def add_services(server: grpc.aio.Server) -> None:
        greeter_pb2_grpc.add_GreeterServicer_to_server(GREETER, server)

``SyncwireServer(config, services=[add_services])`` calls it once per listener (the
native gRPC server and the WebSocketServer), so create servicer instances outside it to
share one instance between both. ``syncwire serve --services MODULE:FUNCTION`` (or
``SYNCWIRE_SERVICES``, comma-separated for several) names such functions by import path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import grpc
import grpc.aio

from .config import ConfigError

ServiceRegistration = Callable[[grpc.aio.Server], None]
"""Registers an application's servicers on the given server (called once per listener)."""


def load_registrations(spec: str) -> list[ServiceRegistration]:
    """The functions a ``services`` option names (``MODULE:FUNCTION``, comma-separated),
    imported now; raises ConfigError naming the option when one cannot be loaded."""
    registrations: list[ServiceRegistration] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        module_name, _, function_name = item.partition(":")
        if not module_name or not function_name:
            raise ConfigError(f"services: {item!r} is not MODULE:FUNCTION")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import failure is the option's fault
            raise ConfigError(f"services: cannot import {module_name!r}: {exc}") from None
        function = getattr(module, function_name, None)
        if not callable(function):
            raise ConfigError(f"services: {module_name!r} has no function {function_name!r}")
        registrations.append(function)
    return registrations
