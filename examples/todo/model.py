"""The todo list as a CRDT: pure data, no I/O.

Each item is three last-writer-wins registers (text, done, removed). Every operation
carries a Lamport stamp ``(counter, replica)``; a register keeps the value with the
highest stamp, so replicas that apply the same operations, in any order and any number
of times, end in the same state. Removal is a tombstone (a register too), so a removal
wins over a concurrent edit of the removed item only through its stamp, never by luck.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeGuard, TypeVar

T = TypeVar("T")
Stamp: TypeAlias = tuple[int, str]
"""(Lamport counter, replica name): a total order of operations."""
OpKind = Literal["add", "rename", "done", "remove"]
ORIGIN: Stamp = (0, "")


@dataclass(slots=True)
class Register(Generic[T]):
    """A last-writer-wins value."""

    value: T
    stamp: Stamp = ORIGIN

    def merge(self, value: T, stamp: Stamp) -> None:
        if stamp > self.stamp:
            self.value, self.stamp = value, stamp


@dataclass(slots=True)
class Item:
    item_id: str
    created: Stamp
    text: Register[str] = field(default_factory=lambda: Register(""))
    done: Register[bool] = field(default_factory=lambda: Register(False))
    removed: Register[bool] = field(default_factory=lambda: Register(False))


@dataclass(frozen=True, slots=True)
class Op:
    """One edit of one item."""

    kind: OpKind
    item_id: str
    stamp: Stamp
    text: str = ""
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"op": self.kind, "id": self.item_id, "ts": list(self.stamp)}
        if self.kind in ("add", "rename"):
            body["text"] = self.text
        if self.kind == "done":
            body["done"] = self.done
        return body


@dataclass(frozen=True, slots=True)
class Mark:
    """Not an edit: `by` has sent everything it does in `phase` (the demo's barrier)."""

    by: str
    phase: int

    def to_json(self) -> dict[str, Any]:
        return {"op": "mark", "by": self.by, "phase": self.phase}


Message: TypeAlias = Op | Mark


def encode(message: Message) -> bytes:
    return json.dumps(message.to_json(), separators=(",", ":")).encode()


def decode(value: Any) -> Message:
    """A message from its JSON form; ValueError if it is not one of ours."""
    if not isinstance(value, dict):
        raise ValueError(f"not a todo message: {value!r}")
    kind = value.get("op")
    if kind == "mark":
        return Mark(by=str(value["by"]), phase=int(value["phase"]))
    stamp = value.get("ts")
    if kind not in ("add", "rename", "done", "remove") or not _is_stamp(stamp):
        raise ValueError(f"not a todo message: {value!r}")
    return Op(
        kind=kind,
        item_id=str(value["id"]),
        stamp=(int(stamp[0]), str(stamp[1])),
        text=str(value.get("text", "")),
        done=bool(value.get("done", False)),
    )


def _is_stamp(value: Any) -> TypeGuard[list[Any]]:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)


class TodoList:
    """One replica's list. Local edits return the Op to broadcast (already applied)."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.clock = 0
        self.items: dict[str, Item] = {}

    def _next(self) -> Stamp:
        self.clock += 1
        return (self.clock, self.replica)

    def _local(self, kind: OpKind, item_id: str, *, text: str = "", done: bool = False) -> Op:
        op = Op(kind, item_id, self._next(), text=text, done=done)
        self.apply(op)
        return op

    def add(self, item_id: str, text: str) -> Op:
        return self._local("add", item_id, text=text)

    def rename(self, item_id: str, text: str) -> Op:
        return self._local("rename", item_id, text=text)

    def set_done(self, item_id: str, done: bool = True) -> Op:
        return self._local("done", item_id, done=done)

    def remove(self, item_id: str) -> Op:
        return self._local("remove", item_id)

    def apply(self, op: Op) -> None:
        """Merges an operation (local or remote; repeats are harmless)."""
        self.clock = max(self.clock, op.stamp[0])
        item = self.items.get(op.item_id)
        if item is None:
            item = self.items[op.item_id] = Item(op.item_id, op.stamp)
        if op.kind == "add":
            item.created = min(item.created, op.stamp)
            item.text.merge(op.text, op.stamp)
        elif op.kind == "rename":
            item.text.merge(op.text, op.stamp)
        elif op.kind == "done":
            item.done.merge(op.done, op.stamp)
        else:
            item.removed.merge(True, op.stamp)

    def visible(self) -> list[Item]:
        """Items not removed, oldest first."""
        live = [item for item in self.items.values() if not item.removed.value]
        return sorted(live, key=lambda item: item.created)

    def find(self, text: str) -> str:
        """The id of the visible item showing `text`."""
        for item in self.visible():
            if item.text.value == text:
                return item.item_id
        raise KeyError(text)

    def to_state(self) -> bytes:
        """The whole replica (every register with its stamp, tombstones included) as
        JSON bytes: what the application stores as the collection's snapshot."""
        items = [
            {
                "id": item.item_id,
                "created": list(item.created),
                "text": [item.text.value, list(item.text.stamp)],
                "done": [item.done.value, list(item.done.stamp)],
                "removed": [item.removed.value, list(item.removed.stamp)],
            }
            for item in self.items.values()
        ]
        return json.dumps({"clock": self.clock, "items": items}, separators=(",", ":")).encode()

    @classmethod
    def from_state(cls, replica: str, data: bytes) -> TodoList:
        """A replica holding what `to_state` saved (ValueError if `data` is not one)."""
        try:
            state = json.loads(data)
            todo = cls(replica)
            todo.clock = int(state["clock"])
            for raw in state["items"]:
                item = Item(str(raw["id"]), _stamp(raw["created"]))
                item.text = Register(str(raw["text"][0]), _stamp(raw["text"][1]))
                item.done = Register(bool(raw["done"][0]), _stamp(raw["done"][1]))
                item.removed = Register(bool(raw["removed"][0]), _stamp(raw["removed"][1]))
                todo.items[item.item_id] = item
        except (KeyError, TypeError, IndexError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a todo list state: {exc}") from None
        return todo

    def snapshot(self) -> list[tuple[str, bool]]:
        """What a user sees: (text, done) per visible item, in order."""
        return [(item.text.value, item.done.value) for item in self.visible()]


def _stamp(value: Any) -> Stamp:
    if not _is_stamp(value):
        raise TypeError(f"not a stamp: {value!r}")
    return (int(value[0]), str(value[1]))
