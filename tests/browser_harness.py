"""A real browser for the web package's tests: the test page bundled with esbuild from
web/test/browser/page.ts, served from a loopback HTTP origin, loaded in Debian's
Chromium driven by Playwright for Python (no browser download: the system binary).

When web/node_modules (npm ci) or chromium is missing the tests skip, unless
SYNCWIRE_REQUIRE_BROWSER=1 (set by scripts/test), where they fail instead.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import REPO_ROOT

WEB = REPO_ROOT / "web"
ESBUILD = WEB / "node_modules" / ".bin" / "esbuild"
PAGE_ENTRY = WEB / "test" / "browser" / "page.ts"
INDEX_HTML = '<!doctype html><meta charset="utf-8"><title>syncwire-web test</title>\n<script type="module" src="page.js"></script>\n'


def chromium_path() -> str | None:
    """Debian's chromium binary, if installed."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )


def require_browser() -> str:
    """The chromium path; skips (or fails under SYNCWIRE_REQUIRE_BROWSER=1) when the
    browser or the web package's node_modules is missing."""
    missing = []
    if not ESBUILD.exists():
        missing.append("web/node_modules (run `npm ci` in web/)")
    chromium = chromium_path()
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("SYNCWIRE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    assert chromium is not None
    return chromium


def bundle(entry: Path, outfile: Path) -> None:
    """esbuild bundle of a TypeScript entry for the browser; `syncwire-web` resolves to
    the package's source, as a user's bundler resolves the installed package."""
    subprocess.run(
        [
            str(ESBUILD),
            str(entry),
            "--bundle",
            "--format=esm",
            f"--alias:syncwire-web={WEB / 'src' / 'index.ts'}",
            f"--outfile={outfile}",
        ],
        cwd=WEB,
        check=True,
        capture_output=True,
        timeout=120,
    )


def build_page(out_dir: Path) -> None:
    """Bundles the test page into `out_dir` (page.js + index.html)."""
    bundle(PAGE_ENTRY, out_dir / "page.js")
    (out_dir / "index.html").write_text(INDEX_HTML)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serves `directory` over HTTP on a free loopback port; yields the origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="page-origin", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.asynccontextmanager
async def chromium(executable: str) -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright (root in CI, hence --no-sandbox)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def open_test_page(browser: Browser, origin: str) -> Page:
    """The test page, loaded and its script ready (`window.syncwireTest`)."""
    page = await browser.new_page()
    await page.goto(f"{origin}/index.html")
    await page.wait_for_function("() => window.syncwireTest !== undefined", timeout=30_000)
    return page
