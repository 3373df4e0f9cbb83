"""Scenario 3, idle: K idle connections held open with heartbeats; the server's RSS
growth per connection. syncwire connections are subscribed sync streams (over the
WebSocket framing, with and without permessage-deflate, and over native gRPC); the
baseline is a raw websockets server holding plain connections. Every round starts a
fresh server so memory other scenarios left behind does not hide the growth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.clients import RAW_WS, SYNCWIRE_GRPC, SYNCWIRE_WS
from bench.pool import WorkerError, split
from bench.procs import ChildProcess, ProcessFailed
from bench.results import Column, ScenarioResult, SubjectRun
from bench.scenarios.base import (
    BenchContext,
    Scenario,
    Subject,
    SubjectUnavailable,
    alternate,
    collection_name,
)
from bench.servers.launch import start_raw_ws, start_syncwire

SETTLE_SECONDS = 0.5
# Server heartbeats during the hold: often enough that a full run sees one round of them,
# rare enough (production default: 30 s) not to turn K idle sessions into a busy load.
IDLE_HEARTBEAT_SECONDS = 10.0
KIB = 1024


SUBJECTS = (
    (Subject("syncwire-ws", SYNCWIRE_WS, "syncwire", "ws", "syncwire"), False),
    (Subject("syncwire-ws+deflate", SYNCWIRE_WS, "syncwire", "ws", "syncwire"), True),
    (Subject("syncwire-grpc", SYNCWIRE_GRPC, "syncwire", "grpc", "syncwire"), False),
    (Subject("raw-websockets", RAW_WS, "raw-ws", "ws", "baseline"), False),
    (Subject("raw-websockets+deflate", RAW_WS, "raw-ws", "ws", "baseline"), True),
)


class IdleScenario(Scenario):
    name = "idle"
    title = "idle connections: server RSS per connection"
    columns = (
        Column("held", "held"),
        Column("kib_per_conn", "KiB/conn", "{:,.1f}"),
        Column("rss_before_mib", "RSS before MiB", "{:,.1f}"),
        Column("rss_after_mib", "RSS after MiB", "{:,.1f}"),
        Column("open_seconds", "open s", "{:,.1f}"),
        Column("open_retries", "open retries"),
    )

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        options = ctx.options
        beat = max(IDLE_HEARTBEAT_SECONDS, options.idle_hold / 2)
        result.notes.append(
            f"K={options.idle} connections over {len(ctx.pool.workers)} worker processes, "
            f"held {options.idle_hold:g} s; syncwire server heartbeats every {beat:g} s and "
            "clients send one heartbeat mid-hold; RSS = VmRSS of the server process, "
            "(after - before) / K; '+deflate': the client offers permessage-deflate (both "
            "servers: syncwire's default window bits and memLevel); raw websockets clients "
            "exchange one echoed message first and one heartbeat mid-hold, so that their "
            "deflate state is touched as syncwire's is"
        )
        config = {s.name: (s, deflate) for s, deflate in SUBJECTS}
        for subject, _ in SUBJECTS:
            result.runs.append(ctx.new_run(subject.name, role=subject.role))

        async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
            subject, deflate = config[run.subject]
            if subject.server == "syncwire":
                starter: Callable[[], Awaitable[ChildProcess]] = lambda: start_syncwire(  # noqa: E731
                    f"idle-{run.subject}",
                    "--heartbeat-interval",
                    f"{beat:g}",
                    max_connections=options.idle + 1000,
                )
            else:
                starter = lambda: start_raw_ws(f"idle-{run.subject}")  # noqa: E731
            return await self._round(ctx, subject, deflate, starter, index)

        await alternate(ctx, self.name, result.runs, options.rounds, do_round)
        return result

    async def _round(
        self,
        ctx: BenchContext,
        subject: Subject,
        deflate: bool,
        starter: Callable[[], Awaitable[ChildProcess]],
        index: int,
    ) -> dict[str, float]:
        options, workers = ctx.options, ctx.pool.workers
        server = await starter()
        try:
            endpoint = server.endpoints.get(subject.endpoint)
            if not endpoint:
                raise ProcessFailed(f"server announced no {subject.endpoint} endpoint")
            collection = collection_name("idle", subject.name, index)
            args = {
                "kind": subject.kind,
                "endpoint": endpoint,
                "collection": collection,
                "compression": deflate,
            }
            warm = await workers[0].request("idle_open", count=1, timeout=60, **args)
            if warm["failed"]:
                raise SubjectUnavailable(f"{subject.name} unavailable: {warm['first_error']}")
            await workers[0].request("idle_close")
            await asyncio.sleep(SETTLE_SECONDS / 3 if options.quick else SETTLE_SECONDS)
            before = server.rss_bytes()
            started = time.monotonic()
            opened = await asyncio.gather(
                *(
                    worker.request("idle_open", count=count, timeout=600, **args)
                    for worker, count in zip(
                        workers, split(options.idle, len(workers)), strict=True
                    )
                    if count
                )
            )
            open_seconds = time.monotonic() - started
            retried = sum(r["retried"] for r in opened)
            failed = sum(r["failed"] for r in opened)
            if failed:
                first = next(r["first_error"] for r in opened if r["first_error"])
                raise WorkerError(f"{failed} of {options.idle} connections failed: {first}")
            await asyncio.sleep(options.idle_hold / 2)
            await asyncio.gather(*(w.request("idle_heartbeat", timeout=300) for w in workers))
            await asyncio.sleep(options.idle_hold / 2)
            after = server.rss_bytes()
            closed = await asyncio.gather(*(w.request("idle_close", timeout=300) for w in workers))
            held = sum(r["alive"] for r in closed)
            if not server.alive():
                raise ProcessFailed(f"server died: {server.stderr_tail()}")
        finally:
            await asyncio.gather(
                *(w.request("idle_close") for w in workers), return_exceptions=True
            )
            await server.stop()
        return {
            "held": float(held),
            "kib_per_conn": (after - before) / options.idle / KIB,
            "rss_before_mib": before / KIB / KIB,
            "rss_after_mib": after / KIB / KIB,
            "open_seconds": open_seconds,
            "open_retries": float(retried),
        }
