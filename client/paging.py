"""Paging through answers the server bounds by bytes (`truncated`): `history_pages` for
GetHistory, `presence_pages` for GetPresence; each asks on until the caller has everything
it asked for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from syncwire.v1 import sync_pb2

GetHistory = Callable[[sync_pb2.GetHistoryRequest], Awaitable[sync_pb2.GetHistoryResponse]]
GetPresence = Callable[[sync_pb2.GetPresenceRequest], Awaitable[sync_pb2.GetPresenceResponse]]

MAX_RESTARTS = 3
"""Times history may move under the paging (trimmed past the last delta read, or a new
epoch) before the answer so far is returned as it is, `truncated` still set."""


async def history_pages(
    get_history: GetHistory, request: sync_pb2.GetHistoryRequest
) -> sync_pb2.GetHistoryResponse:
    """One GetHistoryResponse holding every delta `request` asks for, read in as many
    GetHistory calls (`get_history`) as the server's byte bound needs: each next call
    asks from the last delta's offset, in the first answer's epoch, for what is left of
    `request.limit` (0 stays 0: the server's `history_size`), until an answer is not
    `truncated`, the limit is reached, or the deltas reach the latest offset the first
    answer named (later deltas are live traffic; the stream delivers them).

    The result is the first answer with the later answers' deltas appended and their
    `offset` and `oldest_offset`; `truncated` is false unless history kept moving. When
    history moves under the paging (a later answer is not RECOVERED: trimmed past the
    last delta read, or a new epoch), the deltas read so far no longer join up with the
    rest: the result restarts from that answer, as a fresh call would classify it.
    Raises what `get_history` raises."""
    result = await get_history(request)
    target = result.offset
    page = result
    restarts = 0
    while page.truncated and page.deltas and page.deltas[-1].offset < target:
        remaining = 0
        if request.limit:
            remaining = request.limit - len(result.deltas)
            if remaining <= 0:
                break
        page = await get_history(
            sync_pb2.GetHistoryRequest(
                collection_id=request.collection_id,
                since_offset=page.deltas[-1].offset,
                epoch=result.epoch,
                limit=remaining,
            )
        )
        if page.recovery != sync_pb2.RECOVERY_STATUS_RECOVERED:
            if restarts == MAX_RESTARTS:
                result.truncated = True
                return result
            restarts += 1
            result, target = page, page.offset
            continue
        result.deltas.extend(page.deltas)
        result.offset = page.offset
        result.oldest_offset = page.oldest_offset
    result.truncated = False  # everything asked for (up to `target` or `limit`) is here
    return result


async def presence_pages(
    get_presence: GetPresence, request: sync_pb2.GetPresenceRequest
) -> sync_pb2.GetPresenceResponse:
    """One GetPresenceResponse holding every presence entry of `request.collection_id`
    after `request.after_peer_id`, read in as many GetPresence calls (`get_presence`) as
    the server's byte bound needs, each from the last member's peer id (peer ids only
    grow, so this ends). Peers that come or go between the calls may be missing or
    included: presence events on the stream carry such changes. Raises what
    `get_presence` raises."""
    result = await get_presence(request)
    page = result
    while page.truncated and page.members:
        page = await get_presence(
            sync_pb2.GetPresenceRequest(
                collection_id=request.collection_id, after_peer_id=page.members[-1].peer_id
            )
        )
        result.members.extend(page.members)
    result.truncated = False
    return result
