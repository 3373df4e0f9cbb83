"""The script: three people edit one list concurrently; everyone must converge.

Phase 1: each adds items. Phase 2, after everyone has seen phase 1: conflicting edits,
all stamped before any is sent (so they are truly concurrent): alice and bob rename the
same item, carol removes an item alice marks done, and more. The last-writer-wins rule
decides each conflict identically on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from .model import Op
from .participants import LegacyParticipant, Participant, TypedParticipant


async def barrier(everyone: Sequence[Participant], phase: int) -> None:
    names = [p.name for p in everyone]
    await asyncio.gather(*(p.finish_phase(phase, names) for p in everyone))


def say(who: Participant, what: str) -> None:
    print(f"  {who.label:<26} {what}", flush=True)


async def edit(who: Participant, ops: Sequence[Op], descriptions: Sequence[str]) -> None:
    for description in descriptions:
        say(who, description)
    await who.send_all(ops)


async def run(grpc_url: str, ws_url: str, collection_id: str) -> list[Participant]:
    """Plays the scenario; returns the participants with their final replicas."""
    alice = TypedParticipant("alice", grpc_url, collection_id)
    bob = TypedParticipant("bob", ws_url, collection_id)
    carol = LegacyParticipant("carol", ws_url, collection_id)
    everyone: list[Participant] = [alice, bob, carol]
    async with contextlib.AsyncExitStack() as stack:
        for participant in everyone:
            await stack.enter_async_context(participant)
        print(f"phase 1: everyone adds items to {collection_id!r}", flush=True)
        await asyncio.gather(
            edit(
                alice,
                [alice.todo.add("a1", "buy milk"), alice.todo.add("a2", "book flights")],
                ["adds 'buy milk'", "adds 'book flights'"],
            ),
            edit(bob, [bob.todo.add("b1", "write the docs")], ["adds 'write the docs'"]),
            edit(carol, [carol.todo.add("c1", "fix the login bug")], ["adds 'fix the login bug'"]),
        )
        await barrier(everyone, 1)

        print("phase 2: concurrent, conflicting edits", flush=True)
        # Every op is stamped here, before anything is sent: none has seen the others.
        plans = [
            (
                alice,
                [
                    alice.todo.rename(alice.todo.find("write the docs"), "write the README"),
                    alice.todo.set_done(alice.todo.find("book flights")),
                    alice.todo.set_done(alice.todo.find("fix the login bug")),
                ],
                ["renames 'write the docs' to 'write the README'",
                 "marks 'book flights' done", "marks 'fix the login bug' done"],
            ),
            (
                bob,
                [
                    bob.todo.rename(bob.todo.find("write the docs"), "write the API docs"),
                    bob.todo.set_done(bob.todo.find("buy milk")),
                ],
                ["renames 'write the docs' to 'write the API docs'", "marks 'buy milk' done"],
            ),
            (
                carol,
                [
                    carol.todo.remove(carol.todo.find("book flights")),
                    carol.todo.rename(carol.todo.find("buy milk"), "buy oat milk"),
                ],
                ["removes 'book flights'", "renames 'buy milk' to 'buy oat milk'"],
            ),
        ]  # fmt: skip
        await asyncio.gather(*(edit(who, ops, said) for who, ops, said in plans))
        await barrier(everyone, 2)
    return everyone
