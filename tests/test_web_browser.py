"""The web package in a real browser: Debian's Chromium (Playwright for Python) loads a
page bundled with esbuild from a loopback HTTP origin; the page's Connect client runs
over the browser's native WebSocket.

- The page opens the Sync stream (welcome, subscribe, publish, receive) while a Python
  grpc.aio client in the same collection publishes too: each side sees the other's
  deltas byte-exact, in offset order.
- The gRPC interop client cases run in the page against the interop service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import pytest

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from tests.browser_harness import chromium, open_test_page, require_browser
from tests.interop.server import interop_servers
from tests.process_harness import start_server_process

pytestmark = pytest.mark.timeout(180)


async def _read_until(call: Any, kind: str) -> sync_pb2.SyncResponse:
    while True:
        response: sync_pb2.SyncResponse = await call.read()
        if response.WhichOneof("kind") == kind:
            return response


async def test_page_and_grpc_client_share_a_collection_byte_exact(page_origin: str) -> None:
    executable = require_browser()
    collection = "browser-doc"
    page_deltas = [bytes([index]) * (index + 1) + bytes(range(256)) for index in range(5)]
    python_deltas = [b"\x00py\xff" * (index + 1) for index in range(5)]
    server = await start_server_process("--allowed-origins", page_origin)
    try:
        async with (
            grpc.aio.insecure_channel(server.grpc_address) as channel,
            chromium(executable) as browser,
        ):
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            requests: asyncio.Queue[sync_pb2.SyncRequest] = asyncio.Queue()

            async def send() -> AsyncIterator[sync_pb2.SyncRequest]:
                while True:
                    yield await requests.get()

            call = stub.Sync(send())
            await _read_until(call, "welcome")
            requests.put_nowait(
                sync_pb2.SyncRequest(
                    request_id=1, subscribe=sync_pb2.Subscribe(collection_id=collection)
                )
            )
            await _read_until(call, "subscribed")

            page = await open_test_page(browser, page_origin)
            page_peer = await page.evaluate(
                "([url, c]) => window.syncwireTest.startSync(url, c)", [server.ws_url, collection]
            )
            assert page_peer
            await page.evaluate(
                "([c, hexes]) => window.syncwireTest.publish(c, hexes)",
                [collection, [delta.hex() for delta in page_deltas]],
            )
            for index, data in enumerate(python_deltas):
                delta = types_pb2.Delta(collection_id=collection, delta=data)
                requests.put_nowait(
                    sync_pb2.SyncRequest(
                        request_id=10 + index, publish=sync_pb2.Publish(delta=delta)
                    )
                )

            total = len(page_deltas) + len(python_deltas)
            seen_by_python: list[tuple[int, str, bytes]] = []
            while len(seen_by_python) < total:
                response = await _read_until(call, "delta")
                seen_by_python.append(
                    (response.delta.offset, response.delta.peer_id, response.delta.delta)
                )
            await page.wait_for_function(
                f"() => window.syncwireTest.state.deltas.length >= {total}", timeout=30_000
            )
            seen_by_page = await page.evaluate("() => window.syncwireTest.state.deltas")
            assert await page.evaluate("() => window.syncwireTest.state.errors") == []
            call.cancel()

    finally:
        await server.terminate()

    assert [offset for offset, _, _ in seen_by_python] == list(range(1, total + 1))
    assert [
        (int(delta["offset"]), delta["peerId"], bytes.fromhex(delta["hex"]))
        for delta in seen_by_page
    ] == seen_by_python
    from_page = [data for _, peer, data in seen_by_python if peer == page_peer]
    from_python = [data for _, peer, data in seen_by_python if peer != page_peer]
    assert from_page == page_deltas
    assert from_python == python_deltas


async def test_interop_cases_in_chromium(page_origin: str) -> None:
    executable = require_browser()
    async with (
        interop_servers(allowed_origins=(page_origin,)) as servers,
        chromium(executable) as browser,
    ):
        page = await open_test_page(browser, page_origin)
        results = await page.evaluate(
            "(url) => window.syncwireTest.runInterop(url)", servers.ws_url
        )
    assert len(results) >= 13
    failed = {name: outcome for name, outcome in results.items() if outcome != "ok"}
    assert failed == {}


async def test_page_from_an_origin_not_allowed_is_refused_with_the_reason(page_origin: str) -> None:
    executable = require_browser()
    server = await start_server_process("--allowed-origins", "https://app.example")
    try:
        async with chromium(executable) as browser:
            page = await open_test_page(browser, page_origin)
            outcome = await page.evaluate(
                "(url) => window.syncwireTest.tryCall(url)", server.ws_url
            )
            allowed = await start_server_process("--allowed-origins", page_origin)
            try:
                accepted = await page.evaluate(
                    "(url) => window.syncwireTest.tryCall(url)", allowed.ws_url
                )
            finally:
                await allowed.terminate()
    finally:
        await server.terminate()
    assert outcome == (
        f"ConnectError: [unavailable] connection lost (1008 origin not allowed: {page_origin})"
    )
    assert accepted == "ok"
