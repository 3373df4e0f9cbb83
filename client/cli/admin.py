"""`syncwire admin ...`: the server API (syncwire.v1.AdminService) from the command line.

Every subcommand takes the admin credential with `--admin-token` (env
`SYNCWIRE_ADMIN_TOKEN`), sent as `authorization: Bearer TOKEN` instead of `--token`, and
the usual connection options (`--server`, `--transport`, `--tls`, `--ca`, `--timeout`),
each before or after the subcommand's name or before ``admin``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from syncwire.v1 import admin_pb2, admin_pb2_grpc, sync_pb2

from .errors import UsageError, from_rpc_error
from .output import emit_json, iso_time, print_columns, proto_dict, stdout
from .params import UTF8_TEXT
from .runner import run
from .target import Target, connection_options, group_connection_options, inherited_options

if TYPE_CHECKING:  # the async stub type exists in the generated stubs only
    from syncwire.v1.admin_pb2_grpc import AdminServiceAsyncStub

T = TypeVar("T")
Call = Callable[["AdminServiceAsyncStub", tuple[tuple[str, str], ...]], Awaitable[T]]

ADMIN_TOKEN_OPTION = "with --admin-token or SYNCWIRE_ADMIN_TOKEN"
_admin_token = click.option(
    "--admin-token",
    envvar="SYNCWIRE_ADMIN_TOKEN",
    type=UTF8_TEXT,
    help="The server's admin credential (env SYNCWIRE_ADMIN_TOKEN); before or after the "
    "subcommand's name.",
)


def admin_token_option(command: Callable[..., T]) -> Callable[..., T]:
    """Adds --admin-token to an admin subcommand; it receives `admin_token: str`, taken
    from its own command line, else from the `admin` group's (``syncwire admin
    --admin-token T collections``), else from the environment. Missing everywhere: a
    usage error (exit 2)."""

    @functools.wraps(command)
    def with_admin_token(*args: Any, **kwargs: Any) -> T:
        given = {"admin_token": kwargs.pop("admin_token")}
        admin_token = inherited_options(click.get_current_context(), given)["admin_token"]
        if not admin_token:
            raise UsageError(f"Missing option '--admin-token' ({ADMIN_TOKEN_OPTION})")
        return command(*args, admin_token=admin_token, **kwargs)

    decorated: Callable[..., T] = _admin_token(with_admin_token)
    return decorated


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _admin(target: Target, admin_token: str, what: str, call: Call[T]) -> T:
    """Runs one AdminService call; a failure becomes one line naming `what`."""

    async def main() -> T:
        channel = target.open_channel()
        try:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            return await call(stub, (("authorization", f"Bearer {admin_token}"),))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(
                error, where=target.where, what=what, token_option=ADMIN_TOKEN_OPTION
            ) from None
        finally:
            await channel.close(None)

    return run(main())


@click.group()
@_admin_token
@group_connection_options
def admin(**_options: object) -> None:
    """The server API: disconnect, unsubscribe, collections, presence, revoke, snapshot,
    remove-history.

    --admin-token and the connection options (--server, --transport, --tls, --ca,
    --timeout) go before or after the subcommand's name, or before 'admin'.
    """


@admin.command()
@click.option("--user", default="", type=UTF8_TEXT, help="Every connection of this user.")
@click.option("--peer", default="", type=UTF8_TEXT, help="The connection with this peer id.")
@click.option(
    "--reason", default="disconnected by the server", type=UTF8_TEXT, help="Shown to the client."
)
@click.option("--reconnect/--no-reconnect", default=True, help="Advise the client to reconnect.")
@admin_token_option
@connection_options
def disconnect(
    target: Target, admin_token: str, user: str, peer: str, reason: str, reconnect: bool
) -> None:
    """End a connection (--peer) or every connection of a user (--user), on every node."""
    if bool(user) == bool(peer):
        raise UsageError("give exactly one of --user and --peer")
    request = admin_pb2.DisconnectRequest(
        user_id=user, peer_id=peer, reason=reason, reconnect=reconnect
    )
    answer = _admin(
        target, admin_token, "disconnect", lambda stub, md: stub.Disconnect(request, metadata=md)
    )
    stdout.print(f"sent to every node; {answer.disconnected_here} connection(s) ended here")


@admin.command()
@click.argument("collection", type=UTF8_TEXT)
@click.option("--user", required=True, type=UTF8_TEXT, help="The user to unsubscribe.")
@admin_token_option
@connection_options
def unsubscribe(target: Target, admin_token: str, collection: str, user: str) -> None:
    """End USER's subscriptions to COLLECTION, on every node."""
    request = admin_pb2.UnsubscribeUserRequest(user_id=user, collection_id=collection)
    answer = _admin(
        target,
        admin_token,
        "unsubscribe",
        lambda stub, md: stub.UnsubscribeUser(request, metadata=md),
    )
    stdout.print(f"sent to every node; {answer.unsubscribed_here} subscription(s) ended here")


@admin.command()
@json_option
@admin_token_option
@connection_options
def collections(target: Target, admin_token: str, as_json: bool) -> None:
    """List collections with subscribers: on the node asked and cluster-wide."""

    async def every_page(
        stub: AdminServiceAsyncStub, metadata: tuple[tuple[str, str], ...]
    ) -> admin_pb2.ListCollectionsResponse:
        # The server bounds each answer by bytes (`truncated`): ask on from the last entry.
        answer = await stub.ListCollections(admin_pb2.ListCollectionsRequest(), metadata=metadata)
        page = answer
        while page.truncated and page.collections:
            after = page.collections[-1].collection_id
            page = await stub.ListCollections(
                admin_pb2.ListCollectionsRequest(after_collection_id=after), metadata=metadata
            )
            answer.collections.extend(page.collections)
        answer.truncated = False
        return answer

    answer = _admin(target, admin_token, "collections", every_page)
    if as_json:
        emit_json(proto_dict(answer))
        return
    nodes = f"{answer.nodes} node" + ("" if answer.nodes == 1 else "s")
    rows = [("COLLECTION", "THIS NODE", f"CLUSTER ({nodes})")]
    rows += [
        (c.collection_id, str(c.node_subscribers), str(c.cluster_subscribers))
        for c in answer.collections
    ]
    print_columns(rows)


@admin.command()
@click.argument("collection", type=UTF8_TEXT)
@json_option
@admin_token_option
@connection_options
def presence(target: Target, admin_token: str, collection: str, as_json: bool) -> None:
    """Who is present in COLLECTION, per user (one line per user, with its connections)."""
    request = admin_pb2.GetUserPresenceRequest(collection_id=collection)
    answer = _admin(
        target,
        admin_token,
        "presence",
        lambda stub, md: stub.GetUserPresence(request, metadata=md),
    )
    if as_json:
        emit_json(proto_dict(answer))
        return
    rows = [("USER", "CONNECTIONS", "PEERS")]
    rows += [(u.user_id, str(len(u.peer_ids)), " ".join(u.peer_ids)) for u in answer.users]
    print_columns(rows)


@admin.command()
@click.option("--jti", default="", type=UTF8_TEXT, help="The token id (jti claim) to refuse.")
@click.option("--user", default="", type=UTF8_TEXT, help="Refuse every token of this user.")
@click.option(
    "--for",
    "seconds",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How long, in seconds (for a jti: until the token expires).",
)
@admin_token_option
@connection_options
def revoke(target: Target, admin_token: str, jti: str, user: str, seconds: float) -> None:
    """Refuse a token (--jti) or every token of a user (--user), on every node."""
    if bool(jti) == bool(user):
        raise UsageError("give exactly one of --jti and --user")
    until = Timestamp()
    until.FromNanoseconds(int((time.time() + seconds) * 1e9))
    request = admin_pb2.RevokeTokenRequest(jti=jti, user_id=user, until=until)
    answer = _admin(
        target, admin_token, "revoke", lambda stub, md: stub.RevokeToken(request, metadata=md)
    )
    stdout.print(
        f"revoked until {iso_time(until)}; {answer.disconnected_here} session(s) ended here"
    )


@admin.command()
@click.argument("collection", type=UTF8_TEXT)
@click.option(
    "--put",
    "put_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Store FILE's bytes as the snapshot.",
)
@click.option(
    "--offset", type=click.IntRange(min=0), help="With --put: the offset the state includes."
)
@click.option(
    "--epoch", default="", type=UTF8_TEXT, help="With --put: the offset's epoch (default: current)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the snapshot's bytes to FILE.",
)
@admin_token_option
@connection_options
def snapshot(
    target: Target,
    admin_token: str,
    collection: str,
    put_file: Path | None,
    offset: int | None,
    epoch: str,
    out: Path | None,
) -> None:
    """Show COLLECTION's snapshot (offset, epoch, size), or store one with --put."""
    if put_file is not None:
        if offset is None:
            raise UsageError("--put needs --offset")
        put = sync_pb2.PutSnapshot(
            collection_id=collection, offset=offset, epoch=epoch, data=put_file.read_bytes()
        )
        request = admin_pb2.PutSnapshotRequest(snapshot=put)
        stored = _admin(
            target, admin_token, "snapshot", lambda stub, md: stub.PutSnapshot(request, metadata=md)
        ).stored
        stdout.print(
            f"stored the snapshot of {collection!r} at offset {stored.offset} ({stored.epoch})"
        )
        return
    get = admin_pb2.GetSnapshotRequest(collection_id=collection)
    answer = _admin(
        target, admin_token, "snapshot", lambda stub, md: stub.GetSnapshot(request=get, metadata=md)
    )
    if not answer.HasField("snapshot"):
        stdout.print(f"{collection!r} has no snapshot")
        return
    found = answer.snapshot
    if out is not None:
        out.write_bytes(found.data)
    stdout.print(
        f"offset {found.offset} epoch {found.epoch} size {len(found.data)} bytes "
        f"stored {iso_time(found.created_at)}"
    )


@admin.command("remove-history")
@click.argument("collection", type=UTF8_TEXT)
@admin_token_option
@connection_options
def remove_history(target: Target, admin_token: str, collection: str) -> None:
    """Drop COLLECTION's history (its epoch and offsets stay): recovering subscribers get
    the snapshot if one covers, else GAP_TOO_OLD. Store a snapshot at the latest offset
    first."""
    request = admin_pb2.RemoveHistoryRequest(collection_id=collection)
    answer = _admin(
        target,
        admin_token,
        "remove-history",
        lambda stub, md: stub.RemoveHistory(request, metadata=md),
    )
    stdout.print(f"removed {answer.removed} delta(s) from the history of {collection!r}")
