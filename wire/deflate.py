"""permessage-deflate (RFC 7692) settings: what each connection's zlib state costs.

Each WebSocket connection that negotiates permessage-deflate keeps a compressor and a
decompressor for its whole life (context takeover). Their memory is set by the LZ77
window (``window_bits``: 2**bits bytes, RFC 7692 ``server_max_window_bits`` and
``client_max_window_bits``) and by zlib's ``memLevel`` (the compressor's hash table and
buffers). websockets' defaults are 12 and 5; an idle-heavy server holding many mostly
quiet connections does better with less: the window only needs to span the repetition
worth finding, and sync traffic is small deltas (a few hundred bytes) whose repetition
sits within a message or between neighbouring ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

MIN_WINDOW_BITS = 9
MAX_WINDOW_BITS = 15
MIN_MEM_LEVEL = 1
MAX_MEM_LEVEL = 9


@dataclass(frozen=True, slots=True)
class DeflateSettings:
    """LZ77 window (``window_bits``, 9..15, both directions) and zlib ``mem_level``
    (1..9) of the server's permessage-deflate. Raises ValueError out of range."""

    window_bits: int = 10
    mem_level: int = 4

    def __post_init__(self) -> None:
        if not MIN_WINDOW_BITS <= self.window_bits <= MAX_WINDOW_BITS:
            raise ValueError(
                f"window bits must be {MIN_WINDOW_BITS}..{MAX_WINDOW_BITS}, got {self.window_bits}"
            )
        if not MIN_MEM_LEVEL <= self.mem_level <= MAX_MEM_LEVEL:
            raise ValueError(
                f"memLevel must be {MIN_MEM_LEVEL}..{MAX_MEM_LEVEL}, got {self.mem_level}"
            )

    def server_extension(self) -> ServerPerMessageDeflateFactory:
        """The websockets server extension that negotiates these settings."""
        return ServerPerMessageDeflateFactory(
            server_max_window_bits=self.window_bits,
            client_max_window_bits=self.window_bits,
            compress_settings={"memLevel": self.mem_level},
        )
