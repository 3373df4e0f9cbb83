"""``python -m examples.todo``: run the shared todo list demo and check convergence."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from client import SyncError

from . import web_page
from .participants import Participant
from .scenario import run
from .server_process import local_server


def show(participants: Sequence[Participant]) -> bool:
    """Prints the final list; True when every replica holds the same one."""
    reference = participants[0].todo.snapshot()
    converged = all(p.todo.snapshot() == reference for p in participants)
    for participant in participants if not converged else participants[:1]:
        title = "the list" if converged else f"{participant.label} sees"
        print(f"\n{title}:")
        for text, done in participant.todo.snapshot():
            print(f"  [{'x' if done else ' '}] {text}")
    names = ", ".join(p.label for p in participants)
    verdict = "converged" if converged else "DID NOT converge"
    print(
        "\nconflicts resolve by last-writer-wins on (Lamport counter, replica): alice's and "
        "bob's simultaneous renames tie on the counter, so bob's (the larger name) wins; "
        "carol's removal hides 'book flights' although alice marked it done."
    )
    print(f"{verdict}: {names}", flush=True)
    return converged


async def main_async(args: argparse.Namespace) -> int:
    if args.web:
        return await web_page.serve(args)
    collection_id = args.collection or f"todo-{uuid.uuid4().hex[:8]}"
    async with asyncio.timeout(args.timeout):
        if args.grpc and args.ws:
            participants = await run(args.grpc, args.ws, collection_id)
        else:
            async with local_server() as server:
                print(f"started a server: {server.grpc_url} and {server.ws_url}")
                participants = await run(server.grpc_url, server.ws_url, collection_id)
    return 0 if show(participants) else 1


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.todo",
        description="A todo list edited at once by two typed clients and a legacy JSON "
        "client; exits 0 when all three end with the same list.",
    )
    parser.add_argument(
        "--grpc", metavar="URL", help="existing server, e.g. grpc://127.0.0.1:50051"
    )
    parser.add_argument("--ws", metavar="URL", help="its WebSocket URL, e.g. ws://127.0.0.1:8080")
    parser.add_argument("--collection", help="collection to use (default: a fresh one)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    parser.add_argument(
        "--web",
        action="store_true",
        help="serve the todo web page (and a local server unless --ws is given) until "
        "interrupted, instead of running the scripted demo",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="with --web: the page's HTTP port (default: a free one)"
    )
    args = parser.parse_args(argv)
    if bool(args.grpc) != bool(args.ws) and not (args.web and args.ws):
        parser.error("--grpc and --ws go together")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        return asyncio.run(main_async(args))
    except (SyncError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"todo example failed: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
