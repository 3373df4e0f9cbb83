"""The WebSocket listener's handler for connections that offer no subprotocol.

`LegacyGateway` is what `WebSocketServer(legacy_handler=...)` calls for each legacy JSON
client: it picks the home collection from the URL, admits a session with transport
"legacy" (counted in metrics like every other transport), binds the connection's log
context and serves the connection. One gateway per server holds the shared render cache.
"""

from __future__ import annotations

import logging

import grpc
from websockets.asyncio.server import ServerConnection

from server.auth import redact_token
from server.core import SyncCore
from server.errors import RequestError
from server.legacy_gateway.connection import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    TRANSPORT,
    LegacyConnection,
)
from server.legacy_gateway.handshake import InvalidRoomError, close_reason, home_collection
from server.legacy_gateway.render_cache import DEFAULT_SIZE, LegacyRenderCache
from server.logs import bind_connection
from server.ws.listener import connection_info
from wire.protocol import CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, CLOSE_TRY_AGAIN_LATER

log = logging.getLogger(__name__)


class LegacyGateway:
    """Serves legacy leptos-sync JSON clients from one `SyncCore`."""

    def __init__(self, core: SyncCore, *, render_cache_size: int = DEFAULT_SIZE) -> None:
        self.core = core
        self.renders = LegacyRenderCache(render_cache_size)

    async def __call__(self, websocket: ServerConnection) -> None:
        """Serves one connection until it closes (a `LegacyHandler`)."""
        info = connection_info(websocket)
        peer, path = info.peer, info.path
        bind_connection(transport=TRANSPORT, peer=peer)
        try:
            home = home_collection(path, self.core.config.legacy_collection)
        except InvalidRoomError as exc:
            log.warning(
                "legacy connection refused: %s", exc, extra={"path": redact_token(path)[:200]}
            )
            await websocket.close(CLOSE_POLICY_VIOLATION, close_reason(str(exc)))
            return
        try:
            principal = self.core.authenticate_handshake(path, info.headers)
            self.core.authorize(principal, "subscribe", home)
            session = await self.core.connect(
                transport=TRANSPORT, peer_address=peer, principal=principal
            )
        except RequestError as exc:
            self.core.metrics.request_errors.labels(exc.reason_code).inc()
            log.warning("legacy connection refused: %s", exc.message)
            await websocket.close(_refusal_close_code(exc), close_reason(exc.message))
            return
        bind_connection(peer_id=session.peer_id, collection_id=home)
        connection = LegacyConnection(
            websocket,
            session,
            home=home,
            renders=self.renders,
            max_message_bytes=self.core.config.max_message_bytes,
        )
        await connection.run()


def _refusal_close_code(error: RequestError) -> int:
    """Bad or missing token: 4401; home collection not granted: 4403; shutting down:
    going away; full (the listener's HTTP 503/429 raced, or other transports filled the
    node): try again later."""
    if error.code == grpc.StatusCode.UNAUTHENTICATED:
        return CLOSE_UNAUTHENTICATED
    if error.code == grpc.StatusCode.PERMISSION_DENIED:
        return CLOSE_FORBIDDEN
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return CLOSE_GOING_AWAY
    return CLOSE_TRY_AGAIN_LATER
