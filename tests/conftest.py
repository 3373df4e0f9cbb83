"""Shared pytest configuration: fixtures that more than one test module needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Speed is measured in bench/, never asserted in tests: hypothesis' per-example deadline
# is a wall-clock threshold that a busy machine trips (FlakyFailure), so it is off.
settings.register_profile("syncwire", deadline=None)
settings.load_profile("syncwire")

REPO_ROOT = Path(__file__).resolve().parents[1]


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
