"""docs/browser.md stays true: its main example is web/examples/hello.ts, verbatim, and
that example runs in Chromium against a real server and prints what the guide says."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_harness import WEB, bundle, chromium, require_browser, serve_directory
from tests.conftest import REPO_ROOT
from tests.process_harness import start_server_process

GUIDE = (REPO_ROOT / "docs" / "browser.md").read_text(encoding="utf-8")
HELLO = WEB / "examples" / "hello.ts"


def test_guide_shows_the_tested_example() -> None:
    assert HELLO.read_text(encoding="utf-8").strip() in GUIDE


def test_guide_shows_the_type_checked_sync_client_example() -> None:
    # web/examples is part of the package's tsconfig: `tsc --noEmit` (scripts/test) checks it.
    assert (WEB / "examples" / "sync_client.ts").read_text(encoding="utf-8").strip() in GUIDE


@pytest.mark.timeout(120)
async def test_guide_example_runs_in_chromium(tmp_path: Path) -> None:
    executable = require_browser()
    entry = tmp_path / "entry.ts"
    entry.write_text(f'import {{ main }} from "{HELLO}";\n(window as any).helloExample = main;\n')
    bundle(entry, tmp_path / "hello.js")
    (tmp_path / "index.html").write_text(
        '<!doctype html><script type="module" src="hello.js"></script>\n'
    )
    with serve_directory(tmp_path) as origin:
        server = await start_server_process("--allowed-origins", origin)
        try:
            async with chromium(executable) as browser:
                page = await browser.new_page()
                await page.goto(f"{origin}/index.html")
                await page.wait_for_function("() => window.helloExample !== undefined")
                lines = await page.evaluate(
                    "async (url) => { const lines = []; await window.helloExample(url, (l) => lines.push(l)); return lines; }",
                    server.ws_url,
                )
        finally:
            await server.terminate()
    assert lines[0].startswith("server ") and lines[0] != "server undefined"
    assert lines[1].startswith("joined as ")
    assert sorted(lines[2:]) == ["published at offset 1", "received hello at offset 1"]
