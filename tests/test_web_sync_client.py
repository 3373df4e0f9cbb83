"""The web `SyncClient` in Debian's Chromium (Playwright for Python), against real
server processes, with the page's WebSocket path through a real TCP proxy
(tests/tcp_proxy.py) while the page's origin server stays up.

- A cut page publishes 50 edits into its IndexedDB outbox; the other page and a Python
  `SyncClient` see none; the page is reloaded while still cut and its outbox still
  holds 50 entries; once the proxy is back every edit reaches the others exactly once,
  in order.
- Two tabs of one origin with queued edits come back together: they share one outbox,
  one flushes at a time (Web Locks), each edit is sent and delivered once.
- The server is SIGKILLed and restarted: on the Redis broker pages reconnect unaided and
  report RECOVERED; on the memory broker the restart is an epoch change.
- A publish queued in the IndexedDB outbox before the first connection, larger than the
  limit of the server it is later flushed to (`--max-message-bytes 65536`), survives a
  reload and is then refused for good (an ErrorEvent `message_too_large`) and leaves the
  outbox; the publish queued after it arrives, with no reconnect.
- A page made silent by a proxy that freezes (stops forwarding, does not close) is
  reported gone to the others within the server's configured ping interval + timeout
  (with slack for a busy machine, far below the defaults).

One browser serves the whole module; each test uses fresh browser contexts (separate
IndexedDB) and short configured intervals.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page

from client import ClientConfig, DeltaEvent, SyncClient
from client.backoff import Backoff
from tests.broker_testing import eventually
from tests.browser_harness import chromium, require_browser
from tests.process_harness import start_server_process
from tests.redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

PER_TAB = 100
"""Edits each of the two tabs queues: enough that their flushes would overlap."""

FAST = ClientConfig(backoff=Backoff(base=0.05, cap=0.5))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium(require_browser()) as shared:
        yield shared


async def open_page(context: BrowserContext, origin: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{origin}/index.html")
    await page.wait_for_function("() => window.syncClientTest !== undefined", timeout=30_000)
    return page


async def start(page: Page, url: str, collection: str, user: str) -> str:
    peer: str = await page.evaluate(
        "([u, c, user]) => window.syncClientTest.start(u, c, { userId: user })",
        [url, collection, user],
    )
    return peer


async def seen(page: Page, what: str) -> Any:
    return await page.evaluate(f"() => window.syncClientTest.seen.{what}")


async def texts(page: Page) -> list[str]:
    return [delta["text"] for delta in await seen(page, "deltas")]


async def outbox_size(page: Page) -> int:
    size: int = await page.evaluate("() => window.syncClientTest.outboxSize()")
    return size


async def proxy_to(ws_url: str) -> tuple[TcpProxy, str]:
    """A started TCP proxy to the server at `ws_url`, and the ws:// URL that goes through it."""
    proxy = TcpProxy("127.0.0.1", port_of(ws_url))
    await proxy.start()
    return proxy, f"ws://127.0.0.1:{proxy.port}"


def port_of(url: str) -> int:
    port = urlparse(url).port
    assert port is not None
    return port


class Collector:
    """A Python SyncClient's deltas of one collection, as text."""

    def __init__(self, client: SyncClient) -> None:
        self.texts: list[str] = []
        self.offsets: list[int] = []
        self._task = asyncio.create_task(self._run(client))

    async def _run(self, client: SyncClient) -> None:
        async for event in client:
            if isinstance(event, DeltaEvent):
                self.texts.append(event.data.decode())
                self.offsets.append(event.offset)

    async def seen(self) -> list[str]:
        return list(self.texts)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_cut_page_keeps_50_edits_across_a_reload_and_each_arrives_once_in_order(
    browser: Browser, page_origin: str
) -> None:
    collection = "cut-doc"
    server = await start_server_process("--allowed-origins", page_origin)
    proxy, proxied = await proxy_to(server.ws_url)
    cut_context, other_context = await browser.new_context(), await browser.new_context()
    try:
        async with SyncClient(server.ws_url, FAST) as python:
            await python.subscribe(collection)
            collector = Collector(python)
            cut = await open_page(cut_context, page_origin)
            other = await open_page(other_context, page_origin)
            await start(cut, proxied, collection, "cut")
            await start(other, server.ws_url, collection, "other")

            await proxy.refuse()  # cut, and refuse reconnects
            await cut.wait_for_function(
                "() => window.syncClientTest.info().state === 'reconnecting'", timeout=30_000
            )
            edits = [f"edit-{index:02d}" for index in range(50)]
            await cut.evaluate(
                "([c, t]) => window.syncClientTest.publish(c, t)", [collection, edits]
            )
            await eventually(lambda: outbox_size(cut), lambda size: size == 50)

            await cut.reload()
            await cut.wait_for_function("() => window.syncClientTest !== undefined")
            await cut.evaluate(
                "([u, c]) => { window.syncClientTest.start(u, c, { userId: 'cut' }); }",
                [proxied, collection],
            )
            assert await outbox_size(cut) == 50  # IndexedDB kept them across the reload
            assert await texts(other) == []
            assert collector.texts == []

            await proxy.start()
            await eventually(collector.seen, lambda seen: len(seen) >= 50, 30)
            await eventually(lambda: texts(other), lambda seen: len(seen) >= 50, 30)
            await eventually(lambda: texts(cut), lambda seen: len(seen) >= 50, 30)
            await eventually(lambda: outbox_size(cut), lambda size: size == 0, 30)
            history = await python.history(collection)
            other_saw, cut_saw = await texts(other), await texts(cut)
            stats = await cut.evaluate("() => window.syncClientTest.info().stats")
            await collector.stop()
    finally:
        await cut_context.close()
        await other_context.close()
        await proxy.close()
        await server.terminate()
    assert collector.texts == edits
    assert collector.offsets == list(range(1, 51))
    assert other_saw == edits
    assert cut_saw == edits
    assert [delta.delta.decode() for delta in history.deltas] == edits
    assert stats["acknowledged"] == 50


async def test_two_tabs_with_queued_edits_come_back_together_each_edit_once(
    browser: Browser, page_origin: str
) -> None:
    collection = "tabs-doc"
    server = await start_server_process("--allowed-origins", page_origin)
    proxy, proxied = await proxy_to(server.ws_url)
    context = await browser.new_context()  # one origin, one IndexedDB: two tabs
    try:
        async with SyncClient(server.ws_url, FAST) as python:
            await python.subscribe(collection)
            collector = Collector(python)
            tabs = [await open_page(context, page_origin) for _ in range(2)]
            for index, tab in enumerate(tabs):
                await start(tab, proxied, collection, f"tab-{index}")
            await proxy.refuse()
            for tab in tabs:
                await tab.wait_for_function(
                    "() => window.syncClientTest.info().state === 'reconnecting'",
                    timeout=30_000,
                )
            edits = [[f"tab{index}-{n:03d}" for n in range(PER_TAB)] for index in range(2)]
            for tab, mine in zip(tabs, edits, strict=True):
                await tab.evaluate(
                    "([c, t]) => window.syncClientTest.publish(c, t)", [collection, mine]
                )
            # One outbox: each tab sees both tabs' entries.
            await eventually(lambda: outbox_size(tabs[0]), lambda size: size == 2 * PER_TAB)
            assert await outbox_size(tabs[1]) == 2 * PER_TAB
            await proxy.start()
            # Both reconnect now (not after their own backoff delays): they flush together.
            await asyncio.gather(
                *(tab.evaluate("() => window.syncClientTest.reconnect()") for tab in tabs)
            )
            await eventually(collector.seen, lambda seen: len(seen) >= 2 * PER_TAB, 30)
            for tab in tabs:
                await eventually(
                    functools.partial(seen, tab, "acks"), lambda acks: len(acks) == PER_TAB, 30
                )
            stats = [await tab.evaluate("() => window.syncClientTest.info().stats") for tab in tabs]
            history = await python.history(collection)
            acks = [await seen(tab, "acks") for tab in tabs]
            errors = [await seen(tab, "errors") for tab in tabs]
            await collector.stop()
    finally:
        await context.close()
        await proxy.close()
        await server.terminate()
    delivered = collector.texts
    assert sorted(delivered) == sorted(edits[0] + edits[1])  # each edit once
    assert len(history.deltas) == 2 * PER_TAB
    for mine in edits:  # each tab's edits in the order it made them
        assert [text for text in delivered if text in mine] == mine
    assert sum(tab["publishesSent"] for tab in stats) == 2 * PER_TAB  # nobody sent one twice
    assert all(not ack["duplicate"] for tab_acks in acks for ack in tab_acks)
    assert errors == [[], []]


@pytest.mark.parametrize("broker", ["redis", "memory"])
async def test_server_killed_and_restarted_pages_reconnect_and_report_recovery(
    browser: Browser, page_origin: str, broker: str, request: pytest.FixtureRequest
) -> None:
    collection = f"restart-{broker}"
    args = ["--allowed-origins", page_origin]
    if broker == "redis":
        args += ["--broker", str(request.getfixturevalue("redis_url"))]
    server = await start_server_process(*args)
    proxy, proxied = await proxy_to(server.ws_url)
    contexts = [await browser.new_context() for _ in range(2)]
    try:
        pages = [await open_page(context, page_origin) for context in contexts]
        for index, page in enumerate(pages):
            await start(page, proxied, collection, f"page-{index}")
        await pages[0].evaluate(
            "([c]) => window.syncClientTest.publish(c, ['before'])", [collection]
        )
        for page in pages:
            await eventually(functools.partial(texts, page), lambda seen: seen == ["before"])
        epoch = (await seen(pages[0], "deltas"))[0]["epoch"]
        server.process.send_signal(signal.SIGKILL)
        await server.process.wait()
        for page in pages:
            await page.wait_for_function(
                "() => window.syncClientTest.info().state === 'reconnecting'", timeout=30_000
            )
        server = await start_server_process(*args)
        proxy.target_port = port_of(server.ws_url)
        for page in pages:
            await eventually(
                functools.partial(seen, page, "recoveries"), lambda seen: len(seen) >= 1, 30
            )
            await page.wait_for_function(
                "() => window.syncClientTest.info().state === 'connected'", timeout=30_000
            )
        await pages[1].evaluate(
            "([c]) => window.syncClientTest.publish(c, ['after'])", [collection]
        )
        for page in pages:
            await eventually(
                functools.partial(texts, page), lambda seen: seen == ["before", "after"]
            )
        recoveries = [await seen(page, "recoveries") for page in pages]
    finally:
        for context in contexts:
            await context.close()
        await proxy.close()
        await server.terminate()
    for page_recoveries in recoveries:
        (recovery,) = page_recoveries
        assert recovery["previousEpoch"] == epoch
        assert recovery["previousOffset"] == "1"
        if broker == "redis":
            assert (recovery["recovery"], recovery["epoch"]) == ("recovered", epoch)
        else:
            assert recovery["recovery"] == "epoch_mismatch"
            assert recovery["epoch"] != epoch


async def test_frozen_page_is_reported_gone_after_the_ping_interval_and_timeout(
    browser: Browser, page_origin: str
) -> None:
    interval, timeout = 1.0, 1.5
    collection = "frozen-doc"
    server = await start_server_process(
        "--allowed-origins",
        page_origin,
        "--ws-ping-interval",
        str(interval),
        "--ws-ping-timeout",
        str(timeout),
    )
    proxy, proxied = await proxy_to(server.ws_url)
    contexts = [await browser.new_context() for _ in range(2)]
    try:
        frozen = await open_page(contexts[0], page_origin)
        watcher = await open_page(contexts[1], page_origin)
        await start(watcher, server.ws_url, collection, "watcher")
        frozen_peer = await start(frozen, proxied, collection, "frozen")
        await eventually(lambda: seen(watcher, "joined"), lambda joined: frozen_peer in joined)
        assert proxy.freeze() >= 1
        frozen_at = time.monotonic()
        await eventually(
            lambda: seen(watcher, "left"),
            lambda left: frozen_peer in left,
            timeout=3 * (interval + timeout) + 5,
        )
        gone_after = time.monotonic() - frozen_at
        # The frozen page notices too (its own call-0 ping) and comes back by itself.
        await eventually(lambda: seen(frozen, "recoveries"), lambda seen: len(seen) >= 1, 30)
        states = await seen(frozen, "states")
    finally:
        for context in contexts:
            await context.close()
        await proxy.close()
        await server.terminate()
    # The next ping goes out at most `interval` after the freeze and is given up on
    # `timeout` later; the slack (one more interval + timeout) absorbs a busy machine
    # and is still far below the defaults (20 s + 20 s) a server ignoring them would use.
    assert gone_after <= 2 * (interval + timeout)
    assert "reconnecting" in states and states[-1] == "connected"


async def test_a_full_indexeddb_outbox_refuses_the_publish_and_keeps_the_rest(
    browser: Browser, page_origin: str
) -> None:
    server = await start_server_process("--allowed-origins", page_origin)
    proxy, proxied = await proxy_to(server.ws_url)
    context = await browser.new_context()
    try:
        page = await open_page(context, page_origin)
        await page.evaluate(
            "(u) => window.syncClientTest.start(u, 'full-doc', { outboxLimit: 3 })", proxied
        )
        await proxy.refuse()
        await page.wait_for_function(
            "() => window.syncClientTest.info().state === 'reconnecting'", timeout=30_000
        )
        await page.evaluate("() => window.syncClientTest.publish('full-doc', ['a', 'b', 'c'])")
        await eventually(lambda: outbox_size(page), lambda size: size == 3)
        await page.evaluate("() => window.syncClientTest.publish('full-doc', ['d'])")
        errors = await eventually(lambda: seen(page, "errors"), lambda errors: len(errors) == 1)
        assert await outbox_size(page) == 3
        await proxy.start()
        acks = await eventually(lambda: seen(page, "acks"), lambda acks: len(acks) == 3, 30)
    finally:
        await context.close()
        await proxy.close()
        await server.terminate()
    assert errors[0].startswith("outbox_full: ")
    assert [ack["offset"] for ack in acks] == ["1", "2", "3"]


async def test_a_queued_publish_over_the_servers_limit_is_refused_when_flushed_after_a_reload(
    browser: Browser, page_origin: str
) -> None:
    limit = 65536
    server = await start_server_process(
        "--allowed-origins", page_origin, "--max-message-bytes", str(limit)
    )
    context = await browser.new_context()
    try:
        page = await open_page(context, page_origin)
        await page.evaluate(
            "(u) => window.syncClientTest.queue(u, 'big-doc', [['big', 100 * 1024], ['after', 0]])",
            server.ws_url,
        )
        await eventually(lambda: outbox_size(page), lambda size: size == 2)
        await page.reload()
        await page.wait_for_function("() => window.syncClientTest !== undefined", timeout=30_000)
        await start(page, server.ws_url, "big-doc", "page")
        deltas = await eventually(lambda: texts(page), lambda seen_: "after" in seen_, 30)
        errors = await eventually(lambda: seen(page, "errors"), lambda errors: len(errors) == 1)
        assert await outbox_size(page) == 0
        states = await seen(page, "states")
    finally:
        await context.close()
        await server.terminate()
    assert deltas == ["after"]
    assert errors[0].startswith("message_too_large: publish of about ")
    assert f"{limit}-byte message limit" in errors[0]
    assert "reconnecting" not in states


async def test_online_and_visible_cut_a_backoff_wait_short_and_offline_is_only_a_hint(
    browser: Browser, page_origin: str
) -> None:
    server = await start_server_process("--allowed-origins", page_origin)
    proxy, proxied = await proxy_to(server.ws_url)
    context = await browser.new_context()
    try:
        page = await open_page(context, page_origin)
        await page.evaluate(
            "(u) => window.syncClientTest.start(u, 'hints-doc', { slowBackoff: true })", proxied
        )
        # "offline" alone changes nothing: the socket still works.
        await page.evaluate("() => window.dispatchEvent(new Event('offline'))")
        await page.evaluate("() => window.syncClientTest.publish('hints-doc', ['while offline'])")
        await eventually(lambda: seen(page, "acks"), lambda acks: len(acks) == 1)
        for hint in (
            "() => window.dispatchEvent(new Event('online'))",
            "() => document.dispatchEvent(new Event('visibilitychange'))",
        ):
            await proxy.refuse()
            await page.wait_for_function(
                "() => window.syncClientTest.info().state === 'reconnecting'", timeout=30_000
            )
            await proxy.start()
            # The next attempt is ~60 s away; the hint makes it now (bounded well below).
            await page.evaluate(hint)
            await page.wait_for_function(
                "() => window.syncClientTest.info().state === 'connected'", timeout=20_000
            )
        states = await seen(page, "states")
    finally:
        await context.close()
        await proxy.close()
        await server.terminate()
    assert states == [
        "connecting",
        "connected",
        "reconnecting",
        "connected",
        "reconnecting",
        "connected",
    ]
