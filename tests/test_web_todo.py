"""The todo example's web page (``python -m examples.todo --web``) in Debian's Chromium:
two pages, a Python typed client and a legacy JSON client edit one list, with
concurrent conflicting edits, and all four converge; each page shows it is connected and
who is present. The committed bundle is what ``npm run build:todo`` builds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from examples.todo.participants import LegacyParticipant, Participant, TypedParticipant
from tests.broker_testing import eventually
from tests.browser_harness import WEB, chromium, require_browser
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(180)

PAGE = re.compile(r"todo page: (?P<url>\S+)")
CLIENTS = re.compile(r"--grpc (?P<grpc>\S+) --ws (?P<ws>\S+) --collection (?P<collection>\S+)")


@contextlib.asynccontextmanager
async def web_mode() -> AsyncIterator[tuple[str, str, str, str]]:
    """Runs ``python -m examples.todo --web``; yields (page URL, grpc URL, ws URL, collection)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "generated")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.todo",
        "--web",
        "--collection",
        "todo-web",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            page = PAGE.search((await process.stdout.readline()).decode())
            clients = CLIENTS.search((await process.stdout.readline()).decode())
        assert page is not None and clients is not None
        yield page["url"], clients["grpc"], clients["ws"], clients["collection"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0


async def page_call(page: Page, what: str, *args: Any) -> Any:
    return await page.evaluate(f"(args) => window.todoPage.{what}(...args)", list(args))


async def snapshot(page: Page) -> list[tuple[str, bool]]:
    return [(text, done) for text, done in await page_call(page, "snapshot")]


async def test_two_pages_a_typed_and_a_legacy_client_edit_one_list_and_converge() -> None:
    executable = require_browser()
    async with web_mode() as (url, grpc_url, ws_url, collection), chromium(executable) as browser:
        pages = []
        for name in ("ann", "ben"):
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{url}&name={name}")
            await page.wait_for_function("() => window.todoPage !== undefined", timeout=30_000)
            await page.evaluate("() => window.todoPage.ready")
            pages.append(page)
        ann, ben = pages
        python = TypedParticipant("py", grpc_url, collection)
        legacy = LegacyParticipant("legacy", ws_url, collection)
        async with python, legacy:
            await page_call(ann, "add", "buy milk")
            await page_call(ben, "add", "write docs")
            await python.send(python.todo.add("py-1", "book flights"))
            await legacy.send(legacy.todo.add("legacy-1", "fix login"))
            replicas: list[Participant] = [python, legacy]

            async def everyone() -> list[list[tuple[str, bool]]]:
                return [await snapshot(ann), await snapshot(ben)] + [
                    r.todo.snapshot() for r in replicas
                ]

            await eventually(everyone, lambda lists: all(len(items) == 4 for items in lists), 30)
            # Concurrent, conflicting edits: every one is made before anyone sees the
            # others' (the pages hold theirs until all are made, whatever the timing).
            for page in pages:
                await page_call(page, "holdSends")
            await page_call(ann, "rename", "buy milk", "buy oat milk")
            await page_call(ben, "rename", "buy milk", "buy soy milk")
            await page_call(ben, "setDone", "book flights", True)
            removal = legacy.todo.remove(legacy.todo.find("book flights"))
            done = python.todo.set_done(python.todo.find("write docs"))
            await asyncio.gather(
                page_call(ann, "releaseSends"),
                page_call(ben, "releaseSends"),
                legacy.send(removal),
                python.send(done),
            )
            lists = await eventually(
                everyone,
                lambda lists: all(items == lists[0] for items in lists) and len(lists[0]) == 3,
                30,
            )
            shown = [
                (await page_call(page, "shownState"), await page_call(page, "shownPresent"))
                for page in pages
            ]
    # Every first add has counter 1, so the renames tie at counter 2 and "ben" > "ann"
    # wins; items are ordered by their add's stamp (replica names break the tie); the
    # removal hides "book flights" although ben marked it done.
    assert lists[0] == [("buy soy milk", False), ("write docs", True), ("fix login", False)]
    for state, present in shown:
        assert state == "connected"
        assert {"ann", "ben"} <= set(present.split(", "))


def test_committed_bundle_is_what_the_build_command_builds(tmp_path: Path) -> None:
    require_browser()  # needs web/node_modules (esbuild)
    built = tmp_path / "todo.js"
    subprocess.run(
        [
            str(WEB / "node_modules" / ".bin" / "esbuild"),
            "examples/todo/page.ts",
            "--bundle",
            "--format=esm",
            "--minify",
            "--target=es2022",
            f"--outfile={built}",
        ],
        cwd=WEB,
        check=True,
        capture_output=True,
        timeout=120,
    )
    committed = REPO_ROOT / "examples" / "todo" / "web" / "todo.js"
    assert built.read_bytes() == committed.read_bytes(), (
        "run `npm run build:todo` in web/ and commit"
    )
