"""Shared pytest configuration: fixtures that more than one test module needs."""

from __future__ import annotations

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
