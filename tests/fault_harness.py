"""Shared checks of the scale-out fault tests (workers, Sentinel, Cluster).

A `Publisher` publishes numbered payloads through a `SyncClient` (reconnects, outbox,
de-duplicated retries) and records every acknowledgement; `Tail`s are SyncClients that
subscribe, join presence and record every delta and every recovery notice. After the
fault, `check_delivery` applies the rule of docs/scaling.md: every acknowledged delta
is delivered exactly once, in offset order within an epoch, or it was acknowledged in
an epoch before the one a reported epoch change moved the subscriber to — never a
silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from client import ClientConfig, DeltaEvent, ErrorEvent, RecoveryEvent, SyncClient

from .client_harness import FAST
from .process_harness import ServerProcess, start_server_process

HEARTBEAT = 0.2
"""The servers' --heartbeat-interval in these tests."""
IDLE_TIMEOUT = 1.0
"""The servers' --idle-timeout: presence lifetime = max(idle timeout, 3 heartbeats) = 1 s."""
SERVER_ARGS = ("--heartbeat-interval", str(HEARTBEAT), "--idle-timeout", str(IDLE_TIMEOUT))

PATIENT = ClientConfig(
    backoff=FAST.backoff,
    connect_timeout=FAST.connect_timeout,
    request_timeout=10.0,
    heartbeat_interval=HEARTBEAT,  # servers advertise whole seconds; 0.2 s reads as none
    heartbeat_margin=FAST.heartbeat_margin,
)
"""FAST reconnects; publishes wait out a failover (they are retried from the outbox)."""


@dataclass
class Ack:
    payload: bytes
    offset: int
    epoch: str


@dataclass(eq=False)
class Tail:
    """One subscriber of one collection and everything it was told."""

    client: SyncClient
    collection_id: str
    deltas: list[DeltaEvent] = field(default_factory=list)
    recoveries: list[RecoveryEvent] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def losses(self) -> list[RecoveryEvent]:
        return [event for event in self.recoveries if event.recovery.lost_deltas]

    @property
    def server_id(self) -> str:
        info = self.client.server_info
        return info.server_id if info is not None else ""

    async def _collect(self) -> None:
        async for event in self.client.events():
            if isinstance(event, DeltaEvent) and event.collection_id == self.collection_id:
                self.deltas.append(event)
            elif isinstance(event, RecoveryEvent) and event.collection_id == self.collection_id:
                self.recoveries.append(event)
            elif isinstance(event, ErrorEvent):
                self.errors.append(event)
            self.changed.set()

    async def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Waits (event-driven) until `condition()` holds; fails after `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{what} within {timeout} s") from None


async def open_tail(endpoint: str, collection_id: str, config: ClientConfig = PATIENT) -> Tail:
    client = SyncClient(endpoint, config)
    await client.connect()
    tail = Tail(client, collection_id)
    tail.task = asyncio.create_task(tail._collect())
    await client.subscribe(collection_id, join_presence=True)
    return tail


async def close_tails(tails: list[Tail]) -> None:
    for tail in tails:
        with contextlib.suppress(Exception):
            await tail.client.close(flush_timeout=0)
        if tail.task is not None:
            tail.task.cancel()
            with contextlib.suppress(BaseException):
                await tail.task


@dataclass(eq=False)
class Publisher:
    """Publishes `<tag>-<n>` payloads one after another and records the acks."""

    client: SyncClient
    collection_id: str
    acked: list[Ack] = field(default_factory=list)
    _count: int = 0

    async def publish(self, count: int, tag: str = "p") -> None:
        for _ in range(count):
            self._count += 1
            payload = f"{tag}-{self._count}".encode()
            ack = await self.client.publish(self.collection_id, payload)
            self.acked.append(Ack(payload, ack.offset, ack.epoch))

    async def publish_until(self, done: asyncio.Event, tag: str = "p") -> None:
        """Publishes continuously (paced by the acks) until `done` is set."""
        while not done.is_set():
            await self.publish(1, tag)


@contextlib.asynccontextmanager
async def server_nodes(broker: str, count: int = 2) -> AsyncIterator[list[ServerProcess]]:
    """`count` server processes on `broker` with the test timings, terminated at the end
    (their stderr is printed then, which pytest shows when the test failed)."""
    args = ["--broker", broker, *SERVER_ARGS, "--shutdown-grace", "0.5"]
    started = [await start_server_process(*args) for _ in range(count)]
    try:
        yield started
    finally:
        for node in started:
            with contextlib.suppress(Exception):
                await node.terminate(timeout=5)
            if node.process.stderr is not None:
                print((await node.process.stderr.read()).decode()[-30000:])


async def wait_delivered(tails: list[Tail], acked: list[Ack], timeout: float = 30.0) -> None:
    """Waits until each tail holds every acked payload its reported epochs allow."""
    for tail in tails:
        try:
            await tail.wait_for(
                lambda tail=tail: not _missing(tail, acked),  # type: ignore[misc]
                "received every acknowledged delta",
                timeout,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {describe(tail, acked)}") from None


def describe(tail: Tail, acked: list[Ack]) -> str:
    """What a tail got and missed, for failure messages."""
    missing = _missing(tail, acked)
    got = [(e.epoch[:8], e.offset) for e in tail.deltas]
    told = [
        (r.recovery.name, r.previous_epoch[:8], r.epoch[:8], r.offset, r.replayed, r.oldest_offset, r.unsolicited)
        for r in tail.recoveries
    ]
    lost = [(a.epoch[:8], a.offset, a.payload) for a in missing]
    stats = tail.client.stats
    return (
        f"{tail.client.state.name} (connections {stats.connections}, disconnects "
        f"{stats.disconnects}, rejoins retried {stats.rejoins_retried}; errors "
        f"{[str(e.error) for e in tail.errors]}): "
        f"{len(missing)} missing {lost[:8]}; recoveries {told}; "
        f"received {got[:3]}..{got[-8:]}"
    )


def _missing(tail: Tail, acked: list[Ack]) -> list[Ack]:
    """Acked deltas the tail lacks that no reported loss covers. A loss notice (new
    epoch E) covers every epoch before E, including one that came and went unseen (a
    slot migrated, then its new master failed over before the node caught up); deltas
    of the epoch the tail is in now must all be there."""
    delivered = {event.data for event in tail.deltas}
    current = tail.losses[-1].epoch if tail.losses else None
    return [
        a for a in acked if a.payload not in delivered and (current is None or a.epoch == current)
    ]


def check_delivery(tail: Tail, acked: list[Ack]) -> None:
    """Exactly once, in order within an epoch, or covered by a reported epoch change."""
    payloads = [event.data for event in tail.deltas]
    assert len(payloads) == len(set(payloads)), "a delta was delivered twice"
    last: dict[str, int] = {}
    for event in tail.deltas:
        assert event.offset > last.get(event.epoch, 0), f"offset order broken at {event}"
        last[event.epoch] = event.offset
    missing = _missing(tail, acked)
    assert not missing, f"acknowledged deltas lost without an epoch change: {missing[:5]}"
    ended = [str(e.error) for e in tail.errors if e.request == "subscribe"]
    assert not ended, f"the subscription was ended by the server: {ended}"
    for loss in tail.losses:
        assert loss.epoch != loss.previous_epoch, "a loss was reported without a new epoch"


async def wait_until(
    probe: Callable[[], Awaitable[bool] | bool], what: str, timeout: float, poll: float = 0.05
) -> float:
    """Polls `probe` until it returns True (state in another process, which sends no
    event); returns the seconds it took."""
    started = time.monotonic()
    while not await _result(probe()):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} within {timeout} s")
        await asyncio.sleep(poll)
    return time.monotonic() - started


async def _result(value: Awaitable[bool] | bool) -> bool:
    return await value if inspect.isawaitable(value) else value


async def presence_is(checker: SyncClient, collection_id: str, peers: set[str]) -> bool:
    with contextlib.suppress(Exception):
        members = await checker.presence(collection_id)
        return {member.peer_id for member in members} == peers
    return False
