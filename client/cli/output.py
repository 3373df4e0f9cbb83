"""What the commands print: results on stdout, notices and progress on stderr.

Results are plain text (colour only on a terminal) or, with ``--json``, one JSON object
per line, so stdout stays parseable while progress bars and notices go to stderr.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from syncwire.v1 import types_pb2

stdout = Console(soft_wrap=True, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def notice(message: str, style: str = "dim") -> None:
    """A line for the human watching (stderr), never mixed into results."""
    stderr.print(Text(message, style=style))


def emit_json(value: Any) -> None:
    """One JSON object on its own line of stdout."""
    stdout.out(orjson.dumps(value).decode(), highlight=False)


def print_columns(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned columns (no wrapping, no trailing blanks: easy to grep and cut)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        stdout.out("  ".join([*cells, row[-1]]), highlight=False)


def proto_dict(message: Message) -> dict[str, Any]:
    """The canonical protobuf JSON mapping, with the .proto field names."""
    return MessageToDict(message, preserving_proto_field_name=True)


def iso_time(timestamp: Timestamp) -> str | None:
    """`timestamp` as ISO 8601 UTC with milliseconds, or None when it is unset (zero)."""
    if not timestamp.seconds and not timestamp.nanos:
        return None
    return timestamp.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")


def enum_label(enum_name: str, prefix: str) -> str:
    """``CRDT_TYPE_G_COUNTER`` -> ``g-counter``."""
    return enum_name.removeprefix(prefix).lower().replace("_", "-")


def crdt_label(value: types_pb2.CrdtType.ValueType) -> str:
    """A CrdtType's short name: CRDT_TYPE_RGA -> "rga"."""
    return enum_label(types_pb2.CrdtType.Name(value), "CRDT_TYPE_")


def delta_record(delta: types_pb2.Delta) -> dict[str, Any]:
    """A delta as a flat JSON object; ``data`` holds the payload as text when it is
    UTF-8, otherwise ``data_base64`` holds it encoded."""
    record: dict[str, Any] = {
        "collection_id": delta.collection_id,
        "offset": delta.offset,
        "epoch": delta.epoch,
        "peer_id": delta.peer_id,
        "replica_id": delta.replica_id,
        "crdt_type": crdt_label(delta.crdt_type),
        "encoding": "json" if delta.encoding == types_pb2.PAYLOAD_ENCODING_JSON else "raw",
        "timestamp": iso_time(delta.timestamp),
        "server_time": iso_time(delta.server_time),
        "client_message_id": delta.client_message_id,
    }
    try:
        record["data"] = delta.delta.decode("utf-8")
    except UnicodeDecodeError:
        record["data"] = None
        record["data_base64"] = base64.b64encode(delta.delta).decode("ascii")
    return record


def delta_line(delta: types_pb2.Delta) -> Text:
    """A delta for people: offset, time, sender, payload."""
    when = (
        delta.server_time.ToDatetime(tzinfo=UTC).astimezone() if delta.server_time.seconds else None
    )
    try:
        payload = Text(delta.delta.decode("utf-8"))
    except UnicodeDecodeError:
        payload = Text(f"<{len(delta.delta)} bytes> {delta.delta[:32].hex()}", style="italic")
    sender = delta.replica_id or delta.peer_id
    return Text.assemble(
        (f"#{delta.offset}", "bold cyan"),
        " ",
        (when.strftime("%H:%M:%S.%f")[:-3] if when else "-", "dim"),
        " ",
        (sender[:12] or "-", "magenta"),
        " ",
        payload,
    )


@dataclass(frozen=True, slots=True)
class Meter:
    """One task of a progress bar."""

    bar: Progress
    task: TaskID

    def advance(self, steps: int = 1) -> None:
        """Moves the bar `steps` items on."""
        self.bar.advance(self.task, steps)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Meter]:
    """A progress bar on stderr, shown only when stderr is a terminal."""
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    with bar:
        yield Meter(bar, bar.add_task(description, total=total))
