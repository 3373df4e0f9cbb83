"""The collaborative todo example: runs end to end as CI would run it (one command, a
real server process, two typed clients and a legacy JSON client), and its CRDT model
converges whatever order operations arrive in."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.todo.model import Mark, Message, Op, TodoList, decode, encode

EXPECTED_LIST = """\
the list:
  [x] buy oat milk
  [ ] write the API docs
  [x] fix the login bug
"""


@pytest.mark.timeout(90)
def test_example_runs_with_one_command_and_converges(repo_root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.todo", "--timeout", "60"],
        cwd=repo_root,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCWIRE_")},
        capture_output=True,
        text=True,
        timeout=75,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert EXPECTED_LIST in done.stdout, done.stdout
    assert done.stdout.rstrip().splitlines()[-1] == (
        "converged: alice (typed, gRPC), bob (typed, WebSocket), carol (legacy JSON)"
    )


def _ops() -> list[Op]:
    alice, bob = TodoList("alice"), TodoList("bob")
    ops = [alice.add("1", "milk"), bob.add("2", "docs")]
    for op in ops:
        alice.apply(op)
        bob.apply(op)
    return [
        *ops,
        alice.rename("2", "README"),
        bob.rename("2", "API docs"),
        alice.set_done("1"),
        bob.remove("1"),
    ]


def test_replicas_converge_in_any_order_and_with_repeats() -> None:
    ops = _ops()
    results = set()
    for order in itertools.permutations(ops):
        replica = TodoList("observer")
        for op in (*order, *order[:2]):  # repeats are harmless
            replica.apply(op)
        results.add(tuple(replica.snapshot()))
    assert results == {(("API docs", False),)}


def test_messages_round_trip_through_json() -> None:
    messages: list[Message] = [*_ops(), Mark("carol", 2)]
    for message in messages:
        assert decode(json.loads(encode(message))) == message
    with pytest.raises(ValueError):
        decode({"op": "add", "id": "x"})


@pytest.mark.timeout(150)
def test_a_late_joiner_gets_the_whole_list_from_a_snapshot(repo_root: Path) -> None:
    """Issue 18: 5,000 edits, history 1,000; a newcomer from offset 0 gets the snapshot
    the application stored at 4,500, then the 500 deltas after it, and the writer's list."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.todo.late_join", "--timeout", "120"],
        cwd=repo_root,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCWIRE_")},
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "newcomer: recovery SNAPSHOT: snapshot at offset 4500, then 500 deltas" in done.stdout
    assert "newcomer: 900 of 900 items, the same list as the writer" in done.stdout
