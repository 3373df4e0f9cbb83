"""Scenario 6, catch-up: N subscribers that were 1,000 deltas behind on one collection
reconnect at once and recover from history (typed WebSocket and native gRPC clients).
Every one must complete its recovery without being cut; the replay's deliveries/s is
compared with the live max-rate fan-out of the same subject (fanout scenario)."""

from __future__ import annotations

import asyncio
import time

from bench.clients import SYNCWIRE_GRPC, SYNCWIRE_WS
from bench.pool import WorkerError, split
from bench.procs import cpu_seconds
from bench.results import Column, ScenarioResult, SubjectRun
from bench.scenarios.base import BenchContext, Scenario, Servers, alternate, collection_name
from bench.servers.launch import start_syncwire

BEHIND = 1000  # deltas each subscriber missed (the server's default history holds 1,000)
START_LEAD_NS = 3_000_000_000  # connections open before, subscriptions start together
SUBJECTS = ((SYNCWIRE_WS, "ws"), (SYNCWIRE_GRPC, "grpc"))


class CatchUpScenario(Scenario):
    name = "catchup"
    title = f"catch-up: N subscribers recover {BEHIND} deltas from history at once"
    columns = (
        Column("replayed_per_s", "replayed msg/s"),
        Column("seconds", "recovery s", "{:,.2f}"),
        Column("completed", "completed"),
        Column("cut", "cut or short"),
        Column("server_cpu_s", "server CPU s", "{:,.2f}"),
        Column("server_us_per_msg", "server us/msg", "{:,.1f}"),
    )

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        options = ctx.options
        result.notes.append(
            f"N={options.subscribers} subscribers over the subscriber workers, each "
            f"{BEHIND} deltas (256 bytes) behind, subscribing with their epoch and last "
            "offset at the same instant; recovery s = from that instant until the last one "
            "has every replayed delta; server us/msg = server CPU over that time / deltas "
            "replayed"
        )
        servers = Servers()
        try:
            await servers.start({"syncwire": start_syncwire("catchup")})
            if servers.failed:
                result.skipped = f"syncwire did not start: {servers.failed['syncwire']}"
                return result
            pid = servers.started["syncwire"].pid
            runs = [ctx.new_run(kind) for kind, _ in SUBJECTS]
            result.runs = runs
            endpoints = {kind: servers.endpoint("syncwire", key) for kind, key in SUBJECTS}

            async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
                return await _round(ctx, run.subject, endpoints[run.subject], pid, index)

            await alternate(ctx, self.name, runs, options.rounds, do_round)
        finally:
            await servers.stop_all()
        return result


async def _round(
    ctx: BenchContext, kind: str, endpoint: str, pid: int, index: int
) -> dict[str, float]:
    options, pool = ctx.options, ctx.pool
    collection = collection_name("catchup", kind, index)
    position = await pool.publisher.request(
        "catchup_seed",
        kind=kind,
        endpoint=endpoint,
        collection=collection,
        count=BEHIND,
        compression=options.compression,
        timeout=120,
    )
    workers = pool.subscribers
    counts = split(options.subscribers, len(workers))
    t_start = time.monotonic_ns() + START_LEAD_NS
    cpu_at_start: list[float] = []

    async def begin() -> None:
        await asyncio.sleep(max((t_start - time.monotonic_ns()) / 1e9, 0))
        cpu_at_start.append(cpu_seconds(pid))

    starter = asyncio.create_task(begin())
    reports = await asyncio.gather(
        *(
            worker.request(
                "catchup_recover",
                kind=kind,
                endpoint=endpoint,
                collection=collection,
                count=count,
                epoch=position["epoch"],
                since=position["offset"],
                expected=BEHIND,
                t_start=t_start,
                compression=options.compression,
                timeout=300,
            )
            for worker, count in zip(workers, counts, strict=True)
            if count
        )
    )
    await starter
    server_cpu_s = cpu_seconds(pid) - cpu_at_start[0]
    failed = sum(r["failed"] for r in reports)
    completed = sum(r["completed"] for r in reports)
    recovered = sum(r["recovered"] for r in reports)
    if not completed:
        first = next((r["first_error"] for r in reports if r["first_error"]), "none completed")
        raise WorkerError(f"no subscriber recovered: {first}")
    if failed:
        first = next(r["first_error"] for r in reports if r["first_error"])
        ctx.progress(f"catchup {kind}: {failed} subscribers cut or short, first: {first}")
    seconds = (max(r["last_done"] for r in reports) - t_start) / 1e9
    return {
        "replayed_per_s": recovered / max(seconds, 1e-9),
        "seconds": seconds,
        "completed": float(completed),
        "cut": float(failed),
        "server_cpu_s": server_cpu_s,
        "server_us_per_msg": server_cpu_s / max(recovered, 1) * 1e6,
    }
