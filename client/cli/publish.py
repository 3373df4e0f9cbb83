"""`syncwire publish`: one delta from the command line, or a file of deltas, one a line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, TypeAlias

import click

from client.errors import SyncError
from client.publishing import PendingPublish
from syncwire.v1 import sync_pb2, types_pb2

from .errors import HOOK_FAILURES, CliError, ExitCode, UsageError
from .output import emit_json, enum_label, notice, progress, stdout
from .params import UTF8_TEXT
from .runner import run
from .session import CommandSession, open_session
from .target import Target, connection_options

Encoding = Literal["raw", "json"]
CrdtType: TypeAlias = types_pb2.CrdtType.ValueType
CRDT_TYPES: dict[str, CrdtType] = {
    enum_label(name, "CRDT_TYPE_"): number
    for name, number in types_pb2.CrdtType.items()
    if number != types_pb2.CRDT_TYPE_UNSPECIFIED
}
WINDOW = 256
"""Publishes submitted and not yet acknowledged while sending a file."""


@dataclass(frozen=True, slots=True)
class Payload:
    """One delta to publish: its bytes and where it came from."""
    data: bytes
    line: int = 0
    """Line number in the file (0 for a delta given on the command line)."""


@click.command()
@click.argument("collection", type=UTF8_TEXT)
@click.argument("data", required=False)
@click.option("-d", "--data", "data_option", metavar="TEXT", help="The delta, as text.")
@click.option(
    "-f",
    "--file",
    "file",
    type=click.File("rb"),
    metavar="PATH",
    help="Publish every line of PATH as one delta, in order ('-' reads stdin). "
    "Blank lines are skipped; with --encoding json each line must be one JSON value.",
)
@click.option(
    "-e",
    "--encoding",
    type=click.Choice(["raw", "json"]),
    default="raw",
    show_default=True,
    help="raw: the bytes as given; json: a JSON document (checked before anything is "
    "sent; legacy JSON clients receive it as their 'data').",
)
@click.option("--crdt-type", type=click.Choice(sorted(CRDT_TYPES)), help="CRDT kind of the delta.")
@click.option("--json", "as_json", is_flag=True, help="Print each acknowledgement as a JSON line.")
@connection_options
def publish(
    target: Target,
    collection: str,
    data: str | None,
    data_option: str | None,
    file: BinaryIO | None,
    encoding: Encoding,
    crdt_type: str | None,
    as_json: bool,
) -> None:
    """Publish deltas into COLLECTION and print the offsets the server assigned.

    \b
      syncwire publish notes 'hello'
      syncwire publish notes --encoding json '{"text": "hello"}'
      syncwire publish notes --file deltas.jsonl --encoding json
    """
    given = [value for value in (data, data_option) if value is not None]
    if len(given) + (file is not None) != 1:
        raise UsageError("give exactly one delta: DATA, --data TEXT or --file PATH")
    if file is not None:
        payloads = read_lines(file.read(), encoding, getattr(file, "name", "-"))
    else:
        # os.fsencode: the argument's bytes as given, even when they are not UTF-8
        # (Python decodes argv with surrogateescape), as --file reads them.
        payloads = [Payload(os.fsencode(given[0]))]
        check_payloads(payloads, encoding, "DATA")
    crdt = CRDT_TYPES[crdt_type] if crdt_type else types_pb2.CRDT_TYPE_UNSPECIFIED
    sent = _Progress(payloads)
    try:
        run(_publish(target, collection, payloads, encoding, crdt, as_json, file is not None, sent))
    except KeyboardInterrupt:  # before the file's Ctrl-C handling was in place
        if file is None:
            raise
        raise CliError(sent.interrupted(None), ExitCode.INTERRUPTED) from None


class _Progress:
    """How far a file got: the deltas acknowledged, in file order, and what is pending."""

    def __init__(self, payloads: list[Payload]) -> None:
        self.payloads = payloads
        self.acks: list[sync_pb2.PublishAck] = []
        self.window: deque[tuple[Payload, PendingPublish]] = deque()
        self.stop = asyncio.Event()
        """Set by the first Ctrl-C: submit no more lines, wait for those submitted."""

    def acknowledged(self) -> int:
        """Deltas acknowledged from the first line on, without a gap."""
        done = len(self.acks)
        for _, pending in self.window:
            if not pending.acknowledged:
                break
            done += 1
        return done

    def interrupted(self, unsure: str | None) -> str:
        """The line telling what Ctrl-C left behind. With `unsure` None every submitted
        delta was acknowledged (or none was submitted), so the resume line is exact;
        otherwise `unsure` says why the submitted lines after the acknowledged ones may
        or may not have been applied, and no resume line is given."""
        done, total = self.acknowledged(), len(self.payloads)
        if done == total:
            return f"interrupted: all {total} deltas were acknowledged"
        head = f"interrupted: {done} of {total} deltas acknowledged"
        submitted = len(self.acks) + len(self.window)
        if unsure is None or submitted == done:
            return f"{head}; resume from line {self.payloads[done].line}"
        first, last = self.payloads[done].line, self.payloads[submitted - 1].line
        rest = (
            f"; lines from {self.payloads[submitted].line} on were not sent"
            if submitted < total
            else ""
        )
        return (
            f"{head}; lines {first}..{last} may or may not have been applied "
            f"({unsure}){rest}"
        )


def read_lines(content: bytes, encoding: Encoding, name: str) -> list[Payload]:
    """One payload per non-blank line (line ends ``\\n`` or ``\\r\\n`` removed)."""
    payloads = [
        Payload(line.removesuffix(b"\r"), number)
        for number, line in enumerate(content.split(b"\n"), start=1)
        if line.strip()
    ]
    check_payloads(payloads, encoding, name)
    return payloads


def check_payloads(payloads: list[Payload], encoding: Encoding, name: str) -> None:
    """Refuses the input before anything is sent if a JSON payload is not JSON."""
    if encoding != "json":
        return
    for payload in payloads:
        where = f"{name}:{payload.line}" if payload.line else name
        try:
            json.loads(payload.data, parse_constant=_reject_constant)
        except ValueError as exc:
            raise UsageError(f"{where}: not valid JSON: {exc}") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


async def _publish(
    target: Target,
    collection: str,
    payloads: list[Payload],
    encoding: Encoding,
    crdt: CrdtType,
    as_json: bool,
    from_file: bool,
    sent: _Progress,
) -> None:
    if not from_file:
        async with open_session(target, announce=False) as session:
            sender = _Sender(session, collection, encoding, crdt)
            show_ack(await sender.send_one(payloads[0]), as_json, brief=False)
        return
    with _interrupts(sent, target.timeout) as interrupted:
        try:
            async with open_session(target, announce=True) as session:
                acks = await _Sender(session, collection, encoding, crdt).send_all(sent, as_json)
        except asyncio.CancelledError:  # the second Ctrl-C
            task = asyncio.current_task()
            if interrupted() < 2 or task is None:
                raise
            task.uncancel()  # handled: the command ends with its report
            raise CliError(
                sent.interrupted("stopped before their acknowledgements arrived"),
                ExitCode.INTERRUPTED,
            ) from None
        except CliError as error:
            if not sent.stop.is_set() or error.exit_code == ExitCode.INTERRUPTED:
                raise
            raise CliError(sent.interrupted(error.message), ExitCode.INTERRUPTED) from None
    if sent.stop.is_set():
        raise CliError(sent.interrupted(None), ExitCode.INTERRUPTED)
    if not acks:
        notice("the file holds no deltas; nothing published")
    elif not as_json:
        offsets = [ack.offset for ack in acks]
        stdout.print(
            f"published {len(acks)} deltas to {collection!r}: "
            f"offsets {min(offsets)}..{max(offsets)} (epoch {acks[-1].epoch})"
        )


@contextlib.contextmanager
def _interrupts(sent: _Progress, timeout: float) -> Iterator[Callable[[], int]]:
    """Handles Ctrl-C while a file is published; yields the count of Ctrl-Cs so far.

    The first sets `sent.stop`: no more lines are submitted and the submitted ones'
    acknowledgements are awaited (at most `timeout` seconds), so the report is exact.
    The second cancels the command at once (the report then names the lines that may
    or may not have been applied)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    count = 0

    def on_interrupt() -> None:
        nonlocal count
        count += 1
        if count == 1:
            sent.stop.set()
            notice(
                f"stopping: waiting up to {timeout:g} s for the acknowledgements of "
                f"{len(sent.window)} publishes in flight (Ctrl-C again to stop at once)"
            )
        elif task is not None:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        yield lambda: count
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class _Sender:
    """Submits payloads through the client's outbox and awaits their acknowledgements."""

    def __init__(
        self, session: CommandSession, collection: str, encoding: Encoding, crdt: CrdtType
    ) -> None:
        self.session = session
        self.collection = collection
        self.encoding = (
            types_pb2.PAYLOAD_ENCODING_JSON
            if encoding == "json"
            else types_pb2.PAYLOAD_ENCODING_UNSPECIFIED
        )
        self.crdt = crdt

    def submit(self, payload: Payload) -> PendingPublish:
        try:
            return self.session.client.submit(
                self.collection, payload.data, crdt_type=self.crdt, encoding=self.encoding
            )
        except SyncError as error:  # outbox full, or larger than the server allows
            raise self.session.explain(error, _what(payload)) from None

    async def send_one(self, payload: Payload) -> sync_pb2.PublishAck:
        return await self.settle(self.submit(payload), _what(payload))

    async def settle(self, pending: PendingPublish, what: str) -> sync_pb2.PublishAck:
        """The acknowledgement, awaited at most --timeout seconds: the client retries
        refusals such as broker_unavailable by itself, the command does not wait for
        ever. Raises CliError (the last refusal, or the timeout; exit code 3; a failed
        application hook at once, exit code 4)."""
        timeout = self.session.target.timeout
        try:
            async with asyncio.timeout(timeout):
                return await self.session.run(_acknowledged(pending), what)
        except TimeoutError:
            if pending.last_error is not None:
                raise self.session.explain(pending.last_error, what) from None
            raise CliError(
                f"{self.session.target.where} did not acknowledge the {what} within {timeout:g} s",
                ExitCode.UNAVAILABLE,
            ) from None

    async def send_all(self, sent: _Progress, as_json: bool) -> list[sync_pb2.PublishAck]:
        """Publishes in order with up to WINDOW in flight; returns the acks in order
        (kept in `sent` as they come, with the publishes in flight). Once `sent.stop` is
        set it submits no more lines and waits at most --timeout seconds in all for the
        acknowledgements of those submitted (CliError after that)."""
        payloads, acks, window = sent.payloads, sent.acks, sent.window
        with progress(f"publishing to {self.collection}", len(payloads)) as meter:

            async def settle_oldest() -> None:
                payload, pending = window.popleft()
                ack = await self.settle(pending, _what(payload))
                acks.append(ack)
                if as_json:
                    show_ack(ack, as_json=True, brief=True)
                meter.advance()

            for payload in payloads:
                if len(window) >= WINDOW and not sent.stop.is_set():
                    await settle_oldest()
                if sent.stop.is_set():
                    break
                window.append((payload, self.submit(payload)))
            if sent.stop.is_set():
                await self.drain(settle_oldest, window)
            while window:
                await settle_oldest()
        return acks

    async def drain(
        self,
        settle_oldest: Callable[[], Awaitable[None]],
        window: deque[tuple[Payload, PendingPublish]],
    ) -> None:
        """Waits for the acknowledgements of the publishes in `window`, at most
        --timeout seconds in all; raises CliError when they do not all arrive."""
        timeout = self.session.target.timeout
        try:
            async with asyncio.timeout(timeout):
                while window:
                    await settle_oldest()
        except TimeoutError:
            raise CliError(
                f"no acknowledgement within {timeout:g} s", ExitCode.UNAVAILABLE
            ) from None


async def _acknowledged(pending: PendingPublish) -> sync_pb2.PublishAck:
    """`pending`'s acknowledgement; raises its first refusal at once when that is a failed
    application hook (the client would retry it every second, running the hook again each
    time, until --timeout)."""
    acknowledged = asyncio.ensure_future(pending.wait())
    refused = asyncio.ensure_future(pending.first_refusal())
    try:
        await asyncio.wait({acknowledged, refused}, return_when=asyncio.FIRST_COMPLETED)
        if not acknowledged.done() and refused.result().reason_code in HOOK_FAILURES:
            raise refused.result()
        return await acknowledged
    finally:
        for task in (acknowledged, refused):
            task.cancel()


def _what(payload: Payload) -> str:
    return f"publish of line {payload.line}" if payload.line else "publish"


def show_ack(ack: sync_pb2.PublishAck, as_json: bool, *, brief: bool) -> None:
    """Prints an acknowledgement: a JSON line with `as_json`, else "offset N (epoch E)"
    unless `brief` (file mode prints one summary line instead).
    """
    if as_json:
        emit_json(
            {
                "collection_id": ack.collection_id,
                "offset": ack.offset,
                "epoch": ack.epoch,
                "duplicate": ack.duplicate,
            }
        )
    elif not brief:
        stdout.print(f"offset {ack.offset} (epoch {ack.epoch})")
