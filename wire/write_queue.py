"""Encoded records waiting for the socket, and how they are coalesced into batches."""

from __future__ import annotations

from collections import deque

# Records queued while the socket is busy are coalesced into one WebSocket message up to
# this size; a single larger record travels alone. Receivers accept messages of
# max_message_bytes + BATCH_BYTES, so batching never trips their WebSocket size limit.
BATCH_BYTES = 64 * 1024


class WriteQueue:
    """A FIFO of encoded frame records with a running byte count, for back-pressure."""

    __slots__ = ("_batch_bytes", "_pending_bytes", "_records")

    def __init__(self, batch_bytes: int = BATCH_BYTES) -> None:
        self._records: deque[bytes] = deque()
        self._pending_bytes = 0
        self._batch_bytes = batch_bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet handed to the socket."""
        return self._pending_bytes

    def __bool__(self) -> bool:
        return bool(self._records)

    def push(self, record: bytes) -> None:
        """Queues one encoded record."""
        self._records.append(record)
        self._pending_bytes += len(record)

    def push_front(self, batch: bytes) -> None:
        """Puts a batch taken by ``take_batch`` back in front (it could not be written)."""
        self._records.appendleft(batch)
        self._pending_bytes += len(batch)

    def take_batch(self) -> bytes | None:
        """The next WebSocket message: queued records joined, in order, while they fit in
        the batch size (the first always goes); None when nothing is queued."""
        if not self._records:
            return None
        first = self._records.popleft()
        parts = [first]
        size = len(first)
        while self._records and size + len(self._records[0]) <= self._batch_bytes:
            record = self._records.popleft()
            parts.append(record)
            size += len(record)
        self._pending_bytes -= size
        return first if len(parts) == 1 else b"".join(parts)
