"""Shared pytest configuration: fixtures that more than one test module needs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_timeout
from hypothesis import settings

from tests.task_dump import print_tasks

# Speed is measured in bench/, never asserted in tests: hypothesis' per-example deadline
# is a wall-clock threshold that a busy machine trips (FlakyFailure), so it is off.
settings.register_profile("syncwire", deadline=None)
settings.load_profile("syncwire")

REPO_ROOT = Path(__file__).resolve().parents[1]

_dump_threads = pytest_timeout.dump_stacks


def _dump_threads_and_tasks(terminal: Any) -> None:
    """pytest-timeout's dump (every thread's stack) plus, when the test hung inside an
    event loop, every asyncio task's whole await chain: the thread dump of an async
    test shows only the loop waiting in select()."""
    _dump_threads(terminal)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    print_tasks("asyncio tasks of the test's event loop at the timeout")


# pytest-timeout looks the dump function up in its module when a test times out.
pytest_timeout.dump_stacks = _dump_threads_and_tasks


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's top directory, so tests find proto/ and pyproject.toml from any cwd."""
    return REPO_ROOT


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The browser test page (tests/browser_harness.py), built once per module and served
    from a loopback HTTP origin."""
    from tests.browser_harness import build_page, require_browser, serve_directory

    require_browser()
    directory = tmp_path_factory.mktemp("page")
    build_page(directory)
    with serve_directory(directory) as origin:
        yield origin
