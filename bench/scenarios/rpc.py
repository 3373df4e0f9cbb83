"""Scenario 2, rpc: unary calls per second. syncwire's unary Publish over native gRPC
and over the WebSocket channel, against a raw grpc.aio unary echo and a raw websockets
request/response echo, all with 256-byte payloads and the same callers per worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.clients import RAW_GRPC, RAW_WS, SYNCWIRE_GRPC, SYNCWIRE_WS
from bench.histogram import Histogram
from bench.pool import WorkerError
from bench.procs import ProcessFailed
from bench.results import Column, ScenarioResult, SubjectRun
from bench.scenarios.base import (
    BenchContext,
    Scenario,
    Servers,
    Subject,
    alternate,
    collection_name,
    describe_failure,
)
from bench.servers.launch import start_raw_grpc, start_raw_ws, start_syncwire
from bench.timing import cpu_during

START_LEAD_S = 0.5


SUBJECTS = (
    Subject("syncwire-grpc", SYNCWIRE_GRPC, "syncwire", "grpc", "syncwire"),
    Subject("syncwire-ws", SYNCWIRE_WS, "syncwire", "ws", "syncwire"),
    Subject("raw-grpc", RAW_GRPC, "raw-grpc", "grpc", "baseline"),
    Subject("raw-websockets", RAW_WS, "raw-ws", "ws", "baseline"),
)


class RpcScenario(Scenario):
    name = "rpc"
    title = "unary calls: syncwire Publish vs raw echo"
    columns = (
        Column("calls_per_s", "calls/s"),
        Column("p50_ms", "p50 ms", "{:,.2f}"),
        Column("p99_ms", "p99 ms", "{:,.2f}"),
        Column("server_cpu", "server CPU", "{:.0%}"),
        Column("client_cpu", "clients CPU", "{:.0%}"),
        Column("other_cpu", "other CPU", "{:.0%}"),
        Column("server_us_per_call", "server us/call", "{:,.1f}"),
        Column("errors", "errors"),
    )

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        options = ctx.options
        result.notes.append(
            f"{len(ctx.pool.workers)} worker processes x {options.rpc_concurrency} concurrent "
            "callers; gRPC and the WebSocket channel share one channel per worker, the raw "
            "websockets echo uses one connection per caller (no call ids to multiplex)"
        )
        servers = Servers()
        try:
            await servers.start(
                {
                    "syncwire": start_syncwire("syncwire"),
                    "raw-ws": start_raw_ws(),
                    "raw-grpc": start_raw_grpc(),
                }
            )
            by_name = {s.name: s for s in SUBJECTS}
            for subject in SUBJECTS:
                run = ctx.new_run(subject.name, role=subject.role)
                result.runs.append(run)
                if run.skipped is not None:
                    continue
                if subject.server in servers.failed:
                    run.skipped = (
                        f"{subject.server} did not start: {servers.failed[subject.server]}"
                    )
                    continue
                try:
                    await self._round(
                        ctx, servers, subject, "probe", seconds=0.05, warmup=0.0, probe=True
                    )
                except (WorkerError, ProcessFailed) as exc:
                    run.skipped = f"{subject.name} unavailable: {describe_failure(exc)}"
                    ctx.progress(f"rpc {subject.name}: skipped: {run.skipped}")

            async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
                return await self._round(
                    ctx,
                    servers,
                    by_name[run.subject],
                    collection_name("rpc", run.subject, index),
                    seconds=options.seconds,
                    warmup=options.warmup,
                )

            await alternate(ctx, self.name, result.runs, options.rounds, do_round)
        finally:
            await servers.stop_all()
        return result

    async def _round(
        self,
        ctx: BenchContext,
        servers: Servers,
        subject: Subject,
        collection: str,
        *,
        seconds: float,
        warmup: float,
        probe: bool = False,
    ) -> dict[str, float]:
        """One round; a `probe` only proves every worker's first call succeeds."""
        endpoint = servers.endpoint(subject.server, subject.endpoint)
        pool = ctx.pool
        t_start = time.monotonic_ns() + int(START_LEAD_S * 1e9)
        t0 = t_start + int(warmup * 1e9)
        t1 = t0 + int(seconds * 1e9)
        cpu = asyncio.create_task(
            cpu_during((servers.started[subject.server].pid,), pool.pids, t0, t1)
        )
        reports: list[dict[str, Any]] = await asyncio.gather(
            *(
                worker.request(
                    "rpc",
                    kind=subject.kind,
                    endpoint=endpoint,
                    collection=collection,
                    concurrency=ctx.options.rpc_concurrency,
                    t_start=t_start,
                    t0=t0,
                    t1=t1,
                    compression=ctx.options.compression,
                    timeout=START_LEAD_S + warmup + seconds + 60,
                )
                for worker in pool.workers
            )
        )
        cpu_used = await cpu
        if probe:
            return {}
        latency = Histogram()
        for report in reports:
            latency.merge(Histogram.from_json(report["latency"]))
        errors = sum(r["errors"] for r in reports)
        calls = sum(r["calls"] for r in reports)
        if calls == 0 or errors:
            first = next((r["first_error"] for r in reports if r["first_error"]), "no calls")
            raise WorkerError(f"{errors} failed calls, {calls} completed: {first}")
        p50, p99 = latency.percentile(0.5), latency.percentile(0.99)
        assert p50 is not None and p99 is not None
        return {
            "calls_per_s": calls / seconds,
            "p50_ms": p50 / 1000,
            "p99_ms": p99 / 1000,
            **cpu_used,
            "server_us_per_call": cpu_used["server_cpu"] / (calls / seconds) * 1e6,
            "errors": float(errors),
        }
