"""`python -m server` runs on uvloop when it is installed, unless told otherwise."""

from __future__ import annotations

import asyncio

import pytest

from server.app import EVENT_LOOP_ENV, run_server


def _loop_module() -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    assert run_server(main(), "test") == 0
    return seen[0]


def test_the_server_runs_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert _loop_module().startswith("uvloop")


def test_the_default_loop_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert _loop_module().startswith("asyncio")
