"""gRPC over one multiplexed WebSocket: the server side of the WebSocket framing."""

from server.ws.context import ConnectionInfo, WebSocketServicerContext
from server.ws.server import LegacyHandler, WebSocketServer

__all__ = ["ConnectionInfo", "LegacyHandler", "WebSocketServer", "WebSocketServicerContext"]
