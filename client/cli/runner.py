"""Runs a command's coroutine, keeping grpc's native log lines off the terminal.

grpc's C core writes some events (a failed TLS handshake, for one) straight to file
descriptor 2 unless GRPC_VERBOSITY was set before grpc was imported, which a command
cannot arrange. Without ``-v``, fd 2 points at /dev/null while the command runs and
Python's `sys.stderr` writes to the real stderr, so the user sees one line per error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import click

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, with native stderr discarded unless the user asked for -v."""
    context = click.get_current_context(silent=True)
    verbose = context is not None and bool(context.find_root().params.get("verbose"))
    if verbose or "GRPC_VERBOSITY" in os.environ:
        return asyncio.run(main)
    with _native_stderr_discarded():
        return asyncio.run(main)


@contextlib.contextmanager
def _native_stderr_discarded() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to protect
        yield
        return
    original = sys.stderr
    replacement = open(  # closed below, after fd 2 is restored
        saved,
        "w",
        buffering=1,
        encoding=original.encoding,
        errors="backslashreplace",
        closefd=False,
    )
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = replacement
    try:
        yield
    finally:
        replacement.flush()
        sys.stderr = original
        os.dup2(saved, 2)
        replacement.close()
        os.close(saved)
