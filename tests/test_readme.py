"""The README stays true: its commands, its client example and its configuration table."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from server.config import ENV_PREFIX, ServerConfig

from .service_harness import running_server

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
HELLO = ROOT / "examples" / "hello.py"


def test_readme_opens_with_the_two_commands() -> None:
    block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["pip install -e . && python -m server", "./scripts/test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec scripts/test")


def test_quick_start_tail_is_present_so_presence_lists_it() -> None:
    quick_start = README.split("In a second terminal", 1)[1].split("```sh", 1)[1].split("```")[0]
    tail = next(line for line in quick_start.splitlines() if "syncwire subscribe" in line)
    assert tail.split("#")[0].split() == ["syncwire", "subscribe", "notes", "--join"]
    assert "syncwire presence notes" in quick_start


def test_every_command_is_in_the_command_table() -> None:
    from client.cli.app import cli

    for name in cli.commands:
        assert f"| `syncwire {name}" in README, f"README's command table lacks {name}"


def test_readme_shows_the_tested_client_example() -> None:
    assert HELLO.read_text(encoding="utf-8").strip() in README


def test_every_option_is_in_the_configuration_table() -> None:
    for field in dataclasses.fields(ServerConfig):
        flag = "--" + field.name.replace("_", "-")
        row = f"| `{flag}` | `{ENV_PREFIX}{field.name.upper()}` |"
        assert row in README, f"README configuration table lacks {flag}"


@pytest.mark.timeout(30)
async def test_client_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("readme_hello", HELLO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    async with running_server() as server:
        await module.main([f"grpc://{server.grpc_address}", server.ws_url])
    out = capsys.readouterr().out
    assert "published at offset 1" in out
    assert "received b'hello'" in out
