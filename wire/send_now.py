"""Writing a WebSocket message from synchronous code, as ``websockets.broadcast`` does.

Fan-out wants to hand a message to many connections from one loop, without waking a
writer task per connection. ``send_now`` frames the message with the connection's own
protocol state (permessage-deflate included, so compression stays per connection) and
writes it to the transport at once, but only when that needs no waiting: anything else
(a paused transport, a fragmented message in progress, a connection not open, a
transport that is not a ``websockets`` asyncio connection) returns False and the caller
sends the ordinary way, so flow control still holds.
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import SERVER, State

_OPEN = State.OPEN
_FRAME_CACHE_SIZE = 256
_FRAME_CACHE_MAX_BYTES = 16 * 1024  # larger messages are framed afresh (memory bound)
# message identity -> (message, frame): a broadcast frames each message once for every
# connection without extensions (server frames are not masked, so the bytes are equal).
_frames: dict[tuple[int, bool], tuple[bytes, bytes]] = {}


def send_now(connection: Any, message: bytes, *, text: bool = False) -> bool:
    """Writes ``message`` (UTF-8 bytes when ``text``) as one WebSocket message now;
    returns False, having written nothing, when it cannot go without waiting.

    ``connection``: a ``websockets.asyncio`` connection (anything else returns False).
    On a server connection without extensions, the frame of a message object written
    to many connections is built once. A failing socket write is not raised: the
    connection's reader notices the loss."""
    protocol = getattr(connection, "protocol", None)
    if (
        protocol is None
        or protocol.state is not _OPEN
        or connection.paused
        or connection.send_in_progress is not None
    ):
        return False
    try:
        if protocol.extensions or protocol.writes or protocol.side is not SERVER:
            if text:
                protocol.send_text(message)
            else:
                protocol.send_binary(message)
            connection.send_data()
        else:
            connection.transport.write(_frame(message, text))
    except Exception:  # the transport is failing: the reader sees the connection end
        return True
    return True


def _frame(message: bytes, text: bool) -> bytes:
    """One unmasked, final WebSocket frame carrying ``message`` (RFC 6455 section 5.2)."""
    key = (id(message), text)
    cached = _frames.get(key)
    if cached is not None and cached[0] is message:
        return cached[1]
    length = len(message)
    opcode = 0x81 if text else 0x82
    if length < 126:
        header = bytes((opcode, length))
    elif length < 0x10000:
        header = bytes((opcode, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((opcode, 127)) + length.to_bytes(8, "big")
    frame = header + message
    if length > _FRAME_CACHE_MAX_BYTES:
        return frame
    if len(_frames) >= _FRAME_CACHE_SIZE:
        _frames.clear()
    _frames[key] = (message, frame)
    return frame
