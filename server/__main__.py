"""`python -m server` / `syncwire-server`: run the sync service."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from . import __version__
from .app import run_server, serve
from .config import ConfigError, add_arguments, load_config
from .logs import configure_logging
from .supervisor import supervise

PROG_ENV = "SYNCWIRE_SERVER_PROG"
"""Program name shown in usage and errors; `syncwire serve` sets it to 'syncwire serve'."""


class _OneLineErrorParser(argparse.ArgumentParser):
    """Argument errors are one line (``PROG: error (see 'PROG --help')``), exit 2,
    instead of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The server's argument parser: one flag per `ServerConfig` field plus `--config`.
    Its program name is $SYNCWIRE_SERVER_PROG (`syncwire serve` sets it) or
    'syncwire-server'; argument errors are one line and exit 2.
    """
    parser = _OneLineErrorParser(
        prog=os.environ.get(PROG_ENV) or "syncwire-server",
        description="Run the syncwire sync service (gRPC + WebSocket + legacy JSON).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the server (`python -m server ARGS`); returns the exit code: 0 after a clean
    shutdown, 2 for a bad option or configuration (one line on stderr), 1 when a port
    cannot be bound or the broker refuses to start. `--workers N` > 1 runs a supervisor.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    if config.workers > 1:
        return supervise(config, parser.prog)
    return run_server(serve(config), parser.prog)


if __name__ == "__main__":
    sys.exit(main())
