"""Structured logging: one JSON object per line, or readable text on a terminal.

Per-connection context (peer id, transport, client address) is kept in a context
variable, so every log line written while serving a connection carries it without
passing it around.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

import orjson

_connection: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "syncwire_connection", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else was passed through `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def bind_connection(**fields: str) -> None:
    """Adds `fields` to the log context of the current task (each RPC and connection
    runs in a task of its own, so nothing leaks between connections)."""
    _connection.set({**_connection.get(), **fields})


@contextmanager
def connection_context(**fields: str) -> Iterator[None]:
    """Adds `fields` to every log line written inside the block (and its tasks)."""
    token = _connection.set({**_connection.get(), **fields})
    try:
        yield
    finally:
        _connection.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_connection.get())
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the
        connection context's fields and `extra` fields, and `exception` when there is one.
        """
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level logger: message key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """``HH:MM:SS level logger: message  key=value ...``, then the traceback when
        there is one.
        """
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Sets up the root logger once: `fmt` is json, text, or auto (text on a TTY)."""
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
