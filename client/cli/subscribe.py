"""`syncwire subscribe`: tail a collection, optionally replaying its history first."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import click

from client.events import (
    DeltaEvent,
    ErrorEvent,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    Recovery,
    RecoveryEvent,
    SnapshotEvent,
    SyncEvent,
)
from client.subscription import Subscription
from syncwire.v1 import types_pb2

from .errors import CliError, UsageError
from .output import delta_line, delta_record, emit_json, notice, progress, stdout
from .params import UTF8_TEXT
from .runner import run
from .session import CommandSession, open_session
from .target import Target, connection_options


@dataclass(frozen=True, slots=True)
class TailOptions:
    """How a tail prints: stop after `count` deltas (None: never), JSON lines, no notices.
    """
    count: int | None
    as_json: bool
    quiet: bool


@click.command()
@click.argument("collection", type=UTF8_TEXT)
@click.option(
    "--from-offset",
    type=click.IntRange(min=0),
    metavar="N",
    help="Replay the history after offset N first (0: all the server still has), then go live.",
)
@click.option(
    "--epoch",
    default="",
    type=UTF8_TEXT,
    metavar="E",
    help="Epoch of --from-offset (as printed by publish); a different epoch means the "
    "history was reset, which is reported.",
)
@click.option("-n", "--count", type=click.IntRange(min=1), metavar="N", help="Exit after N deltas.")
@click.option("--json", "as_json", is_flag=True, help="Print each delta as a JSON line.")
@click.option(
    "--join", is_flag=True, help="Be present in the collection while tailing (see presence)."
)
@click.option(
    "--user-id", default="", type=UTF8_TEXT, help="User id shown in presence with --join."
)
@click.option("-q", "--quiet", is_flag=True, help="No notices on stderr (presence, recovery).")
@connection_options
def subscribe(
    target: Target,
    collection: str,
    from_offset: int | None,
    epoch: str,
    count: int | None,
    as_json: bool,
    join: bool,
    user_id: str,
    quiet: bool,
) -> None:
    """Print the deltas of COLLECTION as they arrive, until Ctrl-C (or --count).

    Deltas go to stdout; notices (subscribed, presence, reconnects, gaps in history) to
    stderr. The connection is re-established after a drop, and missed deltas are
    replayed from the server's history.

    \b
      syncwire subscribe notes
      syncwire subscribe notes --from-offset 0 --count 10 --json
    """
    if epoch and from_offset is None:
        raise UsageError("--epoch needs --from-offset")
    if user_id and not join:
        raise UsageError("--user-id needs --join")
    user = types_pb2.UserInfo(user_id=user_id) if user_id else None
    options = TailOptions(count, as_json, quiet)
    run(_subscribe(target, collection, from_offset, epoch, join, user, options))


async def _subscribe(
    target: Target,
    collection: str,
    from_offset: int | None,
    epoch: str,
    join: bool,
    user: types_pb2.UserInfo | None,
    options: TailOptions,
) -> None:
    async with open_session(target, reconnect_attempts=None, announce=not options.quiet) as session:
        subscription = await session.run(
            session.client.subscribe(
                collection, join_presence=join, user_info=user, last_offset=from_offset, epoch=epoch
            ),
            f"subscribe to {collection!r}",
        )
        if not options.quiet:
            notice(
                f"subscribed to {collection!r} at offset {subscription.server_offset} "
                f"(epoch {subscription.epoch}) via {target.where}"
            )
            if subscription.recovery.lost_deltas:
                gap = _gap_notice(
                    collection,
                    subscription.recovery,
                    from_offset,
                    subscription.oldest_offset,
                    subscription.server_offset,
                )
                notice(gap, "yellow")
        await session.run(_tail(session, subscription, from_offset, options), "subscription")


async def _tail(
    session: CommandSession,
    subscription: Subscription,
    from_offset: int | None,
    options: TailOptions,
) -> None:
    backlog = _backlog(subscription, from_offset)
    if options.count is not None:
        backlog = min(backlog, options.count)
    seen = 0
    # The bar shows the replay only: none on a live tail, gone once the replay is done.
    with contextlib.ExitStack() as replay:
        meter = (
            replay.enter_context(progress(f"replaying {subscription.collection_id}", backlog))
            if backlog
            else None
        )
        async for event in session.client.events():
            if not isinstance(event, DeltaEvent):
                _report(event, options)
                continue
            _print_delta(event, options)
            seen += 1
            if meter is not None and seen <= backlog:
                meter.advance()
                if seen == backlog:
                    replay.close()
                    meter = None
                    if not options.quiet:
                        notice(f"replayed {backlog} deltas; now live")
            if options.count is not None and seen >= options.count:
                return
    raise CliError("the client closed before the subscription ended")


def _backlog(subscription: Subscription, from_offset: int | None) -> int:
    """How many deltas the server replays before going live."""
    if from_offset is None or subscription.recovery not in (
        Recovery.RECOVERED,
        Recovery.GAP_TOO_OLD,
    ):
        return 0
    oldest = subscription.oldest_offset
    start = max(from_offset, oldest - 1) if oldest else from_offset
    return max(subscription.server_offset - start, 0)


def _gap_notice(
    collection_id: str, recovery: Recovery, after: int | None, oldest: int, latest: int
) -> str:
    """Why the deltas after offset `after` could not all be replayed."""
    if recovery is Recovery.GAP_TOO_OLD:
        return (
            f"history of {collection_id!r} starts at offset {oldest}: deltas after {after} "
            "and before it are gone"
        )
    if recovery is Recovery.OFFSET_AHEAD:
        return (
            f"offset {after} is ahead of {collection_id!r} (at {latest}): its history was "
            "reset; nothing to replay"
        )
    return (
        f"history of {collection_id!r} was reset (another epoch): deltas after {after} "
        "may be missing"
    )


def _print_delta(event: DeltaEvent, options: TailOptions) -> None:
    if options.as_json:
        emit_json(delta_record(event.delta))
    else:
        stdout.print(delta_line(event.delta))


def _report(event: SyncEvent, options: TailOptions) -> None:
    """Everything but deltas, as notices."""
    if isinstance(event, ErrorEvent):
        raise CliError(f"the server refused the {event.request or 'request'}: {event.error}")
    if options.quiet:
        return
    if isinstance(event, RecoveryEvent):
        if event.recovery.lost_deltas:
            gap = _gap_notice(
                event.collection_id,
                event.recovery,
                event.previous_offset,
                event.oldest_offset,
                event.offset,
            )
            notice(gap, "yellow")
        else:
            notice(f"resumed {event.collection_id!r}: {event.replayed} missed deltas replayed")
    elif isinstance(event, SnapshotEvent):
        # History no longer reached back (Recovery.SNAPSHOT): the application's stored
        # state stands for every delta up to its offset; the deltas after it follow.
        notice(
            f"history of {event.collection_id!r} no longer reaches back: its snapshot at "
            f"offset {event.offset} ({len(event.data)} bytes, not printed) holds every "
            "delta up to it; the deltas after it follow",
            "yellow",
        )
    elif isinstance(event, PeerJoined):
        notice(f"+ {_who(event.join.peer_id, event.join.user_info)} joined")
    elif isinstance(event, PeerLeft):
        notice(f"- {event.leave.peer_id} left ({event.leave.reason or 'gone'})")
    elif isinstance(event, PresenceChanged):
        status = event.presence.status or types_pb2.PresenceAction.Name(event.presence.action)
        notice(f"~ {_who(event.presence.peer_id, event.presence.user_info)}: {status}")


def _who(peer_id: str, user: types_pb2.UserInfo) -> str:
    return f"{user.user_id} ({peer_id})" if user.user_id else peer_id
