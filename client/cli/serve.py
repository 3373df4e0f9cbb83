"""`syncwire serve`: the server, exactly as ``python -m server`` runs it.

The command replaces this process with ``python -m server ARGS`` (same interpreter), so
signals, exit codes and output are the server's own, and the client package never
imports the server package.
"""

from __future__ import annotations

import os
import sys

import click

from .errors import UsageError
from .target import given_before_command

SERVER_MODULE = "server"
SERVER_PROG_ENV = "SYNCWIRE_SERVER_PROG"
"""Tells the server which program name to show (its `PROG_ENV`)."""


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED)
def serve(server_args: tuple[str, ...]) -> None:
    """Run a syncwire server (gRPC + WebSocket + legacy JSON) in the foreground.

    Every argument goes to the server: see 'syncwire serve --help' for its options
    (--grpc-port, --ws-port, --broker, --metrics-port, --config FILE, ...).
    """
    given = given_before_command(click.get_current_context())
    if given:
        names = ", ".join(f"--{name}" for name in given)
        raise UsageError(f"{names}: connection options of the client commands, not of serve")
    argv = [sys.executable, "-m", SERVER_MODULE, *server_args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[SERVER_PROG_ENV] = "syncwire serve"  # the server's usage and error lines
    os.execv(sys.executable, argv)
