"""Code both ends share: the sans-I/O WebSocket framing (frame codec, call multiplexers,
status, metadata and deadline mapping). No sockets, no asyncio."""
