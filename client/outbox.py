"""The outbox: every publish waits here, in order, until the server acknowledges it.

Publishes made while offline queue up and are flushed in order on reconnect; publishes
in flight when a connection drops are sent again with the same client message id, which
the server de-duplicates (at-least-once transport, exactly-once effect). The outbox is
bounded, and optionally kept in a SQLite file so it survives a process restart.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncwire.v1 import sync_pb2, types_pb2

from .errors import ClientClosedError, OutboxFullError, SyncError

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class OutboxEntry:
    """One publish waiting for its acknowledgement.

    `waiter` is None for entries an earlier process left in the outbox file.
    """

    seq: int
    delta: types_pb2.Delta
    waiter: asyncio.Future[sync_pb2.PublishAck] | None = None
    attempts: int = field(default=0)
    last_error: SyncError | None = None
    """The latest retryable refusal (e.g. broker_unavailable); the entry is retried."""
    refused: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at the first retryable refusal (when `last_error` is first set)."""

    @property
    def client_message_id(self) -> str:
        """The id the server de-duplicates the publish by."""
        return self.delta.client_message_id


class OutboxStore(Protocol):
    """Where outbox entries live: `add` returns increasing sequence numbers."""

    def load(self) -> list[tuple[int, bytes]]:
        """Entries left by an earlier run, as (seq, serialized Delta), in order."""
        ...

    def add(self, client_message_id: str, delta: bytes) -> int:
        """Stores one entry; returns its sequence number (increasing)."""

    def remove(self, seq: int) -> None:
        """Forgets the entry `seq` (acknowledged or refused for good)."""

    def close(self) -> None:
        """Writes what is pending and releases the store."""


class MemoryOutboxStore:
    """Keeps nothing beyond the process."""

    def __init__(self) -> None:
        self._next = 0

    def load(self) -> list[tuple[int, bytes]]:
        """Nothing: a memory store starts empty."""
        return []

    def add(self, client_message_id: str, delta: bytes) -> int:
        """Returns the next sequence number; keeps nothing."""
        del client_message_id, delta
        self._next += 1
        return self._next

    def remove(self, seq: int) -> None:
        """Nothing to forget."""
        del seq

    def close(self) -> None:
        """Nothing to release."""
        return None


class SqliteOutboxStore:
    """Keeps entries in a SQLite file, written off the event loop.

    The file is in WAL mode (an insert is a short append, no fsync per publish). Writes
    (an INSERT per publish, a DELETE per acknowledgement) go, in order, to a writer
    thread of the store's own that commits whatever has queued up as one transaction: a
    single SQLite write took up to 165 ms on a busy machine (WAL checkpoints), measured
    by ``python -m bench.outbox_stall``, and the event loop must not wait for that.
    `add` assigns the sequence number itself and returns at once. `close()` waits for
    every queued write; a process that dies without closing loses the writes still
    queued (at most the last moments' publishes, which its application never saw
    acknowledged). One client at a time should use a file; two would both flush it,
    which the server's de-duplication makes harmless.
    """

    _BATCH = 1024
    """Writes committed together at most."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " client_message_id TEXT NOT NULL UNIQUE,"
            " delta BLOB NOT NULL,"
            " created REAL NOT NULL)"
        )
        # AUTOINCREMENT's high-water mark: sequence numbers are never reused.
        (used,) = self._db.execute(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),"
            " COALESCE((SELECT MAX(seq) FROM outbox), 0))"
        ).fetchone()
        self._last_seq = int(used)
        self._writes: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    def load(self) -> list[tuple[int, bytes]]:
        """Entries left by an earlier run (call before the first `add`)."""
        rows = self._db.execute("SELECT seq, delta FROM outbox ORDER BY seq").fetchall()
        return [(int(seq), bytes(delta)) for seq, delta in rows]

    def add(self, client_message_id: str, delta: bytes) -> int:
        """Queues the entry's INSERT; returns its sequence number (increasing)."""
        self._last_seq += 1
        self._write(_INSERT, (self._last_seq, client_message_id, delta, time.time()))
        return self._last_seq

    def remove(self, seq: int) -> None:
        """Queues the entry's DELETE."""
        self._write(_DELETE, (seq,))

    def close(self) -> None:
        """Waits for every queued write, then closes the file."""
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join()
            self._writer = None
        self._db.close()

    def _write(self, statement: str, parameters: tuple[Any, ...]) -> None:
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_queued, name="syncwire-outbox-writer", daemon=True
            )
            self._writer.start()
        self._writes.put((statement, parameters))

    def _write_queued(self) -> None:
        """The writer thread: commits what is queued, in order, in batches."""
        while True:
            batch = [self._writes.get()]
            while batch[-1] is not None and len(batch) < self._BATCH:
                try:
                    batch.append(self._writes.get_nowait())
                except queue.Empty:
                    break
            writes = [write for write in batch if write is not None]
            if writes:
                self._commit(writes)
            if batch[-1] is None:
                return

    def _commit(self, writes: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self._db.execute("BEGIN")
            for statement, parameters in writes:
                try:
                    self._db.execute(statement, parameters)
                except sqlite3.IntegrityError as error:  # a client_message_id used twice
                    log.warning("outbox file: %s (%s)", error, parameters[:2])
            self._db.execute("COMMIT")
        except sqlite3.Error:
            log.exception("outbox file %s: writes lost", self.path)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")


_INSERT = "INSERT INTO outbox (seq, client_message_id, delta, created) VALUES (?, ?, ?, ?)"
_DELETE = "DELETE FROM outbox WHERE seq = ?"


class Outbox:
    """Ordered, bounded publishes awaiting acknowledgement."""

    def __init__(self, store: OutboxStore, limit: int) -> None:
        self._store = store
        self.limit = limit
        self._entries: dict[int, OutboxEntry] = {}
        self._order: list[int] = []  # seqs, ascending
        self._changed = asyncio.Event()
        self._empty = asyncio.Event()
        for seq, blob in store.load():
            self._insert(OutboxEntry(seq, types_pb2.Delta.FromString(blob)))
        self._update_empty()

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, limit: int) -> Outbox:
        """An outbox of at most `limit` entries, kept in the SQLite file `path`
        (`SqliteOutboxStore`, loaded at once) or in memory only when `path` is None.
        """
        store: OutboxStore = MemoryOutboxStore() if path is None else SqliteOutboxStore(path)
        return cls(store, limit)

    def __len__(self) -> int:
        return len(self._order)

    def _insert(self, entry: OutboxEntry) -> None:
        self._entries[entry.seq] = entry
        self._order.append(entry.seq)

    def _update_empty(self) -> None:
        if self._order:
            self._empty.clear()
        else:
            self._empty.set()

    def add(self, delta: types_pb2.Delta) -> OutboxEntry:
        """Queues `delta` (its client_message_id set); raises OutboxFullError."""
        if len(self._order) >= self.limit:
            raise OutboxFullError(self.limit)
        seq = self._store.add(delta.client_message_id, delta.SerializeToString())
        waiter: asyncio.Future[sync_pb2.PublishAck] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(_mark_retrieved)
        entry = OutboxEntry(seq, delta, waiter)
        self._insert(entry)
        self._update_empty()
        self._changed.set()
        return entry

    def after(self, seq: int) -> Iterator[OutboxEntry]:
        """Entries with a sequence number above `seq`, in order."""
        index = bisect.bisect_right(self._order, seq)
        while index < len(self._order):
            current = self._order[index]
            yield self._entries[current]
            index = bisect.bisect_right(self._order, current)

    def first_after(self, seq: int) -> OutboxEntry | None:
        """The first entry with a sequence number above `seq`, or None."""
        return next(self.after(seq), None)

    async def wait_for_entry_after(self, cursor: Callable[[], int]) -> OutboxEntry:
        """The first entry above `cursor()`, waiting for one to be added or for `wake()`
        (the cursor is read again each time: a sender that rewinds it, to send entries
        again after a retryable refusal, calls `wake()`)."""
        while (entry := self.first_after(cursor())) is None:
            self._changed.clear()
            await self._changed.wait()
        return entry

    def wake(self) -> None:
        """Makes `wait_for_entry_after` look again (its cursor moved back)."""
        self._changed.set()

    def contains(self, entry: OutboxEntry) -> bool:
        """Whether `entry` (this very object) is still in the outbox."""
        return self._entries.get(entry.seq) is entry

    def _remove(self, entry: OutboxEntry) -> bool:
        if not self.contains(entry):
            return False
        del self._entries[entry.seq]
        index = bisect.bisect_left(self._order, entry.seq)
        del self._order[index]
        self._store.remove(entry.seq)
        self._update_empty()
        return True

    def acknowledge(self, entry: OutboxEntry, ack: sync_pb2.PublishAck) -> None:
        """The server accepted the entry (or recognised it as a duplicate)."""
        if self._remove(entry) and entry.waiter is not None and not entry.waiter.done():
            entry.waiter.set_result(ack)

    def reject(self, entry: OutboxEntry, error: SyncError) -> None:
        """The server refused the entry for good; it leaves the outbox."""
        if self._remove(entry) and entry.waiter is not None and not entry.waiter.done():
            entry.waiter.set_exception(error)

    async def wait_empty(self) -> None:
        """Returns once the outbox is empty."""
        await self._empty.wait()

    def close(self) -> None:
        """Fails every waiter; persisted entries stay in the file for the next run."""
        kept = isinstance(self._store, SqliteOutboxStore)
        message = "client closed before the publish was acknowledged" + (
            "; it stays in the outbox file" if kept else ""
        )
        for entry in self._entries.values():
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_exception(ClientClosedError(message))
        with contextlib.suppress(sqlite3.Error):
            self._store.close()


def _mark_retrieved(future: asyncio.Future[sync_pb2.PublishAck]) -> None:
    """Publishes nobody awaits must not log 'exception was never retrieved'."""
    if not future.cancelled():
        future.exception()
