"""A real asyncio TCP proxy on loopback that tests use to break connections on demand.

Clients connect to the proxy, the proxy connects to the server and copies bytes both
ways. Tests can cut every connection (abort: the client sees a reset), stall them
(stop forwarding without closing: a half-open connection), hold them (keep the bytes
and forward them later: a slow link), or refuse new connections (stop listening: the
port is unreachable) and later accept again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from dataclasses import dataclass, field


class Direction(enum.Flag):
    """Which way a stall stops the bytes."""

    NONE = 0
    UPSTREAM = enum.auto()  # client -> server
    DOWNSTREAM = enum.auto()  # server -> client
    BOTH = UPSTREAM | DOWNSTREAM


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    stalled: Direction = Direction.NONE
    frozen: bool = False
    held: Direction = Direction.NONE
    backlog: list[tuple[asyncio.StreamWriter, bytes]] = field(default_factory=list)

    def pause_reading(self) -> None:
        for writer in (self.client, self.server):
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


class TcpProxy:
    """Forwards ``host:port`` (ephemeral by default) to ``target_host:target_port``."""

    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.accepted_connections: list[_Connection] = []
        """Every connection in the order it was accepted (for `hold`)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.cuts = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Starts listening (again, on the same port once it has one)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        try:
            server_reader, server = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client.transport.abort()
            return
        connection = _Connection(client, server)
        self._connections.add(connection)
        self.accepted_connections.append(connection)
        for reader, writer, direction in (
            (client_reader, server, Direction.UPSTREAM),
            (server_reader, client, Direction.DOWNSTREAM),
        ):
            task = asyncio.create_task(self._pump(reader, writer, connection, direction))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: _Connection,
        direction: Direction,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if connection.frozen:
                    connection.pause_reading()
                    await asyncio.Event().wait()  # until cut: nothing more is read
                if direction & connection.stalled:
                    continue  # swallowed: neither forwarded nor refused
                if direction & connection.held:
                    connection.backlog.append((writer, data))
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not connection.stalled and not connection.frozen:
                connection.abort()
                self._connections.discard(connection)

    def freeze(self) -> int:
        """Stops reading and forwarding on every open connection without closing it:
        both peers' sends pile up in their socket buffers until those are full;
        returns how many were frozen."""
        for connection in self._connections:
            connection.frozen = True
            connection.pause_reading()
        return len(self._connections)

    def cut(self) -> int:
        """Aborts every open connection (both sides see a reset); returns how many."""
        connections, self._connections = list(self._connections), set()
        for connection in connections:
            connection.stalled = Direction.NONE
            connection.frozen = False
            connection.abort()
        self.cuts += 1
        return len(connections)

    def stall(self, direction: Direction = Direction.BOTH) -> int:
        """Stops forwarding on every open connection without closing it (new
        connections forward normally); returns how many were stalled."""
        for connection in self._connections:
            connection.stalled = direction
        return len(self._connections)

    def hold(self, index: int, direction: Direction = Direction.DOWNSTREAM) -> None:
        """Keeps the bytes of the `index`-th accepted connection (0 = first) that flow
        in `direction` until `release`: the peer sees a slow link, nothing is lost."""
        self.accepted_connections[index].held = direction

    def release(self) -> None:
        """Forwards every held byte, in order, and stops holding."""
        for connection in self.accepted_connections:
            for writer, data in connection.backlog:
                writer.write(data)
            connection.backlog.clear()
            connection.held = Direction.NONE

    async def refuse(self, *, cut: bool = True) -> None:
        """Stops listening: the port refuses connections. With `cut` every open
        connection is cut too; without, open connections stay as they are (a stalled
        one stays stalled: a black-holed server nobody can reach afresh)."""
        server, self._server = self._server, None
        if cut:
            self.cut()
        if server is not None:
            server.close()
            if cut:  # (newer Pythons wait here for open connections to end)
                await server.wait_closed()

    async def close(self) -> None:
        """Stops listening, aborts every connection and waits for the copying to stop."""
        await self.refuse()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
