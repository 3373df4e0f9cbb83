"""Brokers: the in-memory default and (for scale-out) Redis, behind one interface."""

from __future__ import annotations

from .base import Broker, BrokerError, EventSink, HistorySlice, PublishResult
from .memory import MemoryBroker

__all__ = ["Broker", "BrokerError", "EventSink", "HistorySlice", "MemoryBroker", "PublishResult"]
