"""grpc.aio's end-of-stream sentinel, typed (grpc-stubs does not declare ``grpc.aio.EOF``)."""

from __future__ import annotations

import grpc.aio

EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
"""What ``read()`` returns after the last message, on both ends, as in grpc.aio."""
