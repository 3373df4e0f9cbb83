"""Key and channel names of the Redis broker.

Every name of a collection carries one hash tag, `{<digest of the collection id>}`, so
all of one collection's keys (and its sharded pub/sub channel) land in one Redis Cluster
slot and its scripts stay single-slot. The tag is a digest, never the raw id: an id may
contain `{` and `}` (a raw `}x` would make an empty tag, which Redis ignores, scattering
the collection over slots), and digests spread collections evenly over the masters.
Names are `<prefix>:{<32 hex digits>}:<kind>`; the prefix may not contain braces (it
would hold the tag), and client message ids enter as a digest too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DEFAULT_PREFIX = "syncwire"


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Names the keys of every collection under one prefix (one deployment)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"key_prefix {self.prefix!r} may not contain '{{' or '}}'")

    @staticmethod
    def tag(collection_id: str) -> str:
        """The collection's hash tag (without braces): 128 bits of BLAKE2b, in hex."""
        return hashlib.blake2b(collection_id.encode(), digest_size=16).hexdigest()

    def _name(self, collection_id: str, kind: str) -> str:
        return f"{self.prefix}:{{{self.tag(collection_id)}}}:{kind}"

    def meta(self, collection_id: str) -> str:
        """Hash: `epoch` (history epoch) and `top` (last assigned offset)."""
        return self._name(collection_id, "meta")

    def history(self, collection_id: str) -> str:
        """Stream of serialized deltas, entry id `<offset>-<accepted at ms>`."""
        return self._name(collection_id, "history")

    def dedupe(self, collection_id: str, client_message_id: str) -> str:
        """String `<offset> <epoch>` of the first publish with this client message id."""
        digest = hashlib.blake2b(client_message_id.encode(), digest_size=20).hexdigest()
        return self._name(collection_id, "dedupe:" + digest)

    def presence(self, collection_id: str) -> str:
        """Hash: peer id -> serialized Presence."""
        return self._name(collection_id, "presence")

    def presence_deadlines(self, collection_id: str) -> str:
        """Sorted set: peer id scored by the Redis time (ms) its entry expires at."""
        return self._name(collection_id, "presence-deadlines")

    def channel(self, collection_id: str) -> bytes:
        """Pub/sub channel carrying the collection's deltas and presence events."""
        return self._name(collection_id, "events").encode()
