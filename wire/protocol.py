"""Names and numbers of the WebSocket framing that both ends must agree on."""

from __future__ import annotations

from typing import Final

# Sec-WebSocket-Protocol value of the typed binary framing (FrameBatch per binary message).
SUBPROTOCOL_PROTOBUF: Final = "syncwire-protobuf"
SUBPROTOCOLS: Final = (SUBPROTOCOL_PROTOBUF,)

# Handshake header (request: client's limit; response: server's limit) announcing the
# largest call message payload, in bytes, that the sender accepts.
MAX_MESSAGE_BYTES_HEADER: Final = "syncwire-max-message-bytes"

# The largest message a client receives unless told otherwise: gRPC's default receive
# limit (grpc.max_receive_message_length), also WebSocketChannel's. Server responses whose
# size grows with stored data (GetHistory) stay within it.
DEFAULT_RECEIVE_MESSAGE_BYTES: Final = 4 * 1024 * 1024

# WebSocket close codes used by syncwire (docs/protocol.md, "Close codes" and
# "Refusals").
CLOSE_NORMAL: Final = 1000  # the client closed its channel
CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down
CLOSE_PROTOCOL_ERROR: Final = 1002  # only unknown subprotocols were offered
CLOSE_POLICY_VIOLATION: Final = 1008  # no subprotocol and no legacy handler; Origin refused
CLOSE_MESSAGE_TOO_BIG: Final = 1009  # a WebSocket message exceeded the size bound
CLOSE_INTERNAL_ERROR: Final = 1011  # unexpected server failure, keepalive ping timeout
CLOSE_TRY_AGAIN_LATER: Final = 1013  # connection limits (server full, per address)

# Keepalive: a ping every 20 s, and 20 s to answer it, so a dead peer is noticed within
# 40 s while idle proxies (often 60 s) keep the socket; websockets' own defaults. The
# one place these numbers live: the server's WebSocket control pings and application
# Pings (ConnectionSettings), and WebSocketChannel's control pings, all use them.
PING_INTERVAL_SECONDS: Final = 20.0
PING_TIMEOUT_SECONDS: Final = 20.0

# Close reason (with 1011) and call details (UNAVAILABLE) when a Ping went unanswered.
KEEPALIVE_TIMEOUT: Final = "keepalive ping timeout"
