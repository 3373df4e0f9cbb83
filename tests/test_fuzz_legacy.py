"""Fuzzing the legacy JSON listener over a real connection: random text and binary
frames and mutated fixtures. The fuzzing client always stays connected and served (bad
input costs one `error` reply, never the connection), the server logs no unexpected
error and frees everything the connection held, and a bystander keeps working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.app import SyncwireServer

from .fuzz_harness import (
    FUZZ_SETTINGS,
    Baseline,
    assert_unharmed,
    baseline_of,
    mutated,
)
from .legacy_ws_client import JsonObject, LegacyClient
from .service_harness import running_server

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
PAYLOADS = sorted(
    path.read_text(encoding="utf-8")
    for path in (*FIXTURES.glob("*/*.json"), *FIXTURES.glob("*/*.txt"))
    if not path.name.endswith(".note.txt") and path.stat().st_size < 64 * 1024
)

_json_bits = st.sampled_from(['"', "{", "}", "[", "]", ",", ":", "null", "1e999", "-", "\\u"])
frames = st.lists(
    st.one_of(
        mutated(PAYLOADS, _json_bits | st.text(min_size=1, max_size=4)),
        st.sampled_from(PAYLOADS),
        st.text(max_size=200),
        st.binary(max_size=200),
    ),
    min_size=1,
    max_size=4,
)


async def served(client: LegacyClient) -> list[JsonObject]:
    """Probes the client; returns what arrived before its probe came back."""
    data = await client.probe()
    before = []
    while (message := await client.recv()).get("type") != "sync" or message.get("data") != data:
        before.append(message)
    assert message["peer_id"] == client.peer_id
    return before


@pytest.fixture
async def fuzzed() -> AsyncIterator[tuple[SyncwireServer, LegacyClient, Baseline]]:
    async with running_server() as server:
        bystander = await LegacyClient.open(server.ws_url)
        yield server, bystander, baseline_of(server)
        await bystander.ws.close()


@pytest.mark.timeout(60)
@FUZZ_SETTINGS
@given(sent=frames)
async def test_legacy_input_never_hurts_the_server(
    fuzzed: tuple[SyncwireServer, LegacyClient, Baseline],
    caplog: pytest.LogCaptureFixture,
    sent: list[str | bytes],
) -> None:
    server, bystander, baseline = fuzzed
    async with await LegacyClient.open(server.ws_url) as client:
        for frame in sent:
            if isinstance(frame, bytes):
                await client.send_binary(frame)
            else:
                await client.send_text(frame)
        replies = await served(client)
        errors = [reply for reply in replies if reply.get("type") == "error"]
        assert len(errors) <= len(sent)  # at most one error per bad frame, never a close
    await assert_unharmed(server, baseline, lambda: served(bystander), caplog.records)
