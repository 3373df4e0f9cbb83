"""Legacy JSON clients on the WebSocket listener (the I/O side of `server.legacy`).

`LegacyGateway(core)` is the listener's `legacy_handler`: every connection that offers
no subprotocol becomes a `Session` with transport "legacy" in its home collection (the
`room_id` query parameter, else `legacy_collection`), and speaks the old server's JSON
through the pure translator in `server.legacy`. Behaviour and close codes are described
in `docs/migration-from-legacy-json.md`.
"""

from server.legacy_gateway.connection import TRANSPORT, Close, LegacyConnection, close_for
from server.legacy_gateway.gateway import LegacyGateway
from server.legacy_gateway.handshake import (
    ROOM_ID_RULE,
    InvalidRoomError,
    close_reason,
    home_collection,
)
from server.legacy_gateway.render_cache import LegacyRenderCache

__all__ = [
    "ROOM_ID_RULE",
    "TRANSPORT",
    "Close",
    "InvalidRoomError",
    "LegacyConnection",
    "LegacyGateway",
    "LegacyRenderCache",
    "close_for",
    "close_reason",
    "home_collection",
]
