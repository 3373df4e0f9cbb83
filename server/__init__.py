"""syncwire server: the sync service over gRPC, WebSocket framing and legacy JSON."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("syncwire")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
