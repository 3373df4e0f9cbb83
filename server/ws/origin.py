"""Which web pages may open a WebSocket: the ``Origin`` allow-list (docs/security.md,
"Browser origins").

A browser sends the page's origin (``scheme://host[:port]``) on every WebSocket
handshake and, unlike for fetch, enforces nothing itself: without this check any page on
any site could open a connection with the visitor's cookies and network position
(cross-site WebSocket hijacking). Clients that send no ``Origin`` are not browsers and
are not affected. A page served from the same host and port as the WebSocket (``Origin``
host equal to the ``Host`` header) is always allowed, as in Centrifugo; other origins
must match one of the configured glob patterns.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}


class OriginPatternError(ValueError):
    """An ``allowed_origins`` entry is not an origin pattern."""


def parse_patterns(text: str) -> tuple[str, ...]:
    """The patterns of an ``allowed_origins`` setting: separated by commas and/or
    whitespace; each is ``*``, ``null`` or ``scheme://host[:port]`` where any part may
    use glob wildcards (``https://*.example.com``, ``http://127.0.0.1:*``).
    Raises OriginPatternError naming the first bad entry."""
    patterns = tuple(part.lower() for part in re.split(r"[,\s]+", text) if part)
    for pattern in patterns:
        if pattern not in ("*", "null") and (
            "://" not in pattern or "/" in pattern.split("://", 1)[1]
        ):
            raise OriginPatternError(
                f"{pattern!r} is not an origin like https://app.example.com "
                "(scheme://host[:port], glob wildcards allowed, no path)"
            )
    return patterns


class OriginPolicy:
    """Decides whether a handshake's ``Origin`` may connect."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = tuple(pattern.lower() for pattern in patterns)
        self._regex = (
            re.compile("|".join(fnmatch.translate(pattern) for pattern in self.patterns))
            if self.patterns
            else None
        )

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """None when a handshake with these ``Origin`` and ``Host`` headers may connect,
        else the close reason (at most 123 bytes, the WebSocket limit)."""
        if origin is None:
            return None  # not a browser page
        origin = origin.strip().lower()
        if host is not None and _same_host(origin, host.strip().lower()):
            return None
        if self._regex is not None and self._regex.fullmatch(origin):
            return None
        reason = f"origin not allowed: {origin}"
        return reason if len(reason.encode()) <= 123 else "origin not allowed"


def _same_host(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(origin)
        origin_host = parts.hostname
        origin_port = str(parts.port) if parts.port is not None else None
    except ValueError:
        return False
    if origin_host is None:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme)
    try:
        target = urlsplit(f"//{host}")
        host_name, host_port = target.hostname, target.port
    except ValueError:
        return False
    origin_port = origin_port or default
    return host_name == origin_host and (str(host_port) if host_port else default) == origin_port
