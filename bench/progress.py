"""A shared-memory progress board: each subscriber worker posts the lowest sequence
number all its live subscribers have received, and the publisher reads the minimum to
keep at most a window of messages between itself and the slowest subscriber.

It is a small file in /dev/shm (or the temp directory) mapped by every process: no
locks needed, since each slot has one writer and 8-byte aligned stores do not tear.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from pathlib import Path

_SLOT = struct.Struct("<q")
_SHM = Path("/dev/shm")


class ProgressBoard:
    def __init__(self, path: str, slots: int) -> None:
        self.path = path
        self.slots = slots
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), slots * _SLOT.size)

    @classmethod
    def create(cls, slots: int) -> ProgressBoard:
        directory = str(_SHM) if _SHM.is_dir() else None
        handle, path = tempfile.mkstemp(prefix="syncwire-bench-", dir=directory)
        os.ftruncate(handle, slots * _SLOT.size)
        os.close(handle)
        return cls(path, slots)

    def post(self, slot: int, value: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, value)

    def read(self, slot: int) -> int:
        value: int = _SLOT.unpack_from(self._map, slot * _SLOT.size)[0]
        return value

    def minimum(self, slots: list[int]) -> int:
        return min(self.read(slot) for slot in slots)

    def reset(self) -> None:
        self._map[:] = bytes(len(self._map))

    def close(self) -> None:
        self._map.close()

    def remove(self) -> None:
        self.close()
        Path(self.path).unlink(missing_ok=True)
