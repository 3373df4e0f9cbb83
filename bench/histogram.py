"""Latency histogram: log-linear buckets (about 3% resolution), cheap to fill per
message in a hot receive loop and mergeable across processes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

_LINEAR_BITS: Final = 6  # values below 64 are exact
_SUB_BITS: Final = 5  # then 32 buckets per power of two
_LINEAR: Final = 1 << _LINEAR_BITS
_SUB: Final = 1 << _SUB_BITS


def bucket_of(value: int) -> int:
    """Bucket index of a non-negative integer value."""
    if value < _LINEAR:
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS - 1
    return _LINEAR + (shift - (_LINEAR_BITS - _SUB_BITS - 1)) * _SUB + ((value >> shift) - _SUB)


def bucket_value(index: int) -> float:
    """Midpoint of a bucket, the value reported for samples in it."""
    if index < _LINEAR:
        return float(index)
    offset = index - _LINEAR
    shift = offset // _SUB + (_LINEAR_BITS - _SUB_BITS - 1)
    low = (_SUB + offset % _SUB) << shift
    return low + ((1 << shift) - 1) / 2


class Histogram:
    """Counts of integer samples (microseconds here) by bucket."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, value: int) -> None:
        index = value if 0 <= value < _LINEAR else bucket_of(value)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.total += 1

    def merge(self, other: Histogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total

    def percentile(self, fraction: float) -> float | None:
        """The value at `fraction` (0..1) of the samples, None when empty."""
        if self.total == 0:
            return None
        rank = max(1, round(fraction * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.counts))

    def to_json(self) -> list[list[int]]:
        return [[index, count] for index, count in sorted(self.counts.items())]

    @classmethod
    def from_json(cls, pairs: Iterable[Iterable[int]]) -> Histogram:
        histogram = cls()
        for index, count in pairs:
            histogram.counts[index] = histogram.counts.get(index, 0) + count
            histogram.total += count
        return histogram
