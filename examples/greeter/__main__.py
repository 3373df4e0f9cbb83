"""``python -m examples.greeter``: serves Greeter on both listeners, calls it over gRPC
and over WebSocket, and prints what each transport answered (the same)."""

from __future__ import annotations

import asyncio

from examples.greeter.client import greet
from examples.greeter.server import greeter_servers


async def main() -> None:
    async with greeter_servers() as (grpc_address, ws_url):
        for transport, target in (("grpc", grpc_address), ("ws", ws_url)):
            for line in await greet(target, "world"):
                print(f"{transport}: {line}")


if __name__ == "__main__":
    asyncio.run(main())
