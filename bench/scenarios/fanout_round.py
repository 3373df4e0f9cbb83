"""One fan-out round: N subscribers over the subscriber workers, one publisher, a
measured window, then a drain; shared by the fan-out and Redis scenarios."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench.histogram import Histogram
from bench.pool import WorkerError, split
from bench.results import Column
from bench.scenarios.base import BenchContext
from bench.timing import cpu_during

START_LEAD_NS = 100_000_000

FANOUT_COLUMNS = (
    Column("delivered_per_s", "delivered msg/s"),
    Column("published_per_s", "published msg/s"),
    Column("p50_ms", "p50 ms", "{:,.2f}"),
    Column("p99_ms", "p99 ms", "{:,.2f}"),
    Column("server_cpu", "server CPU", "{:.0%}"),
    Column("client_cpu", "clients CPU", "{:.0%}"),
    Column("other_cpu", "other CPU", "{:.0%}"),
    Column("server_us_per_msg", "server us/msg", "{:,.1f}"),
    Column("client_us_per_msg", "clients us/msg", "{:,.1f}"),
    Column("missing", "missing"),
    Column("out_of_order", "reordered"),
)


@dataclass(frozen=True, slots=True)
class FanoutTarget:
    """Where a round's clients connect and which processes are the server side."""

    kind: str
    publisher_endpoint: str
    subscriber_endpoints: tuple[str, ...]
    server_pids: tuple[int, ...]
    compression: bool = False


async def probe(ctx: BenchContext, target: FanoutTarget, collection: str) -> None:
    """Raises WorkerError when a client of the target cannot subscribe at all."""
    await ctx.pool.publisher.request(
        "probe",
        kind=target.kind,
        endpoint=target.publisher_endpoint,
        collection=collection,
        compression=target.compression,
        timeout=30,
    )


async def fanout_round(
    ctx: BenchContext, target: FanoutTarget, collection: str, rate: float
) -> dict[str, float]:
    """Runs one round; `rate` 0 publishes as fast as flow control allows."""
    options, pool = ctx.options, ctx.pool
    workers = pool.subscribers
    counts = split(options.subscribers, len(workers))
    try:
        await asyncio.gather(
            *(
                worker.request(
                    "subscribe",
                    kind=target.kind,
                    endpoint=target.subscriber_endpoints[i % len(target.subscriber_endpoints)],
                    collection=collection,
                    count=count,
                    compression=target.compression,
                    timeout=120,
                )
                for i, (worker, count) in enumerate(zip(workers, counts, strict=True))
                if count
            )
        )
        slots = [w.index for w, count in zip(workers, counts, strict=True) if count]
        published, cpu_used = await _publish(ctx, target, collection, rate, slots)
        drain = max(5.0, options.seconds)
        reports = await asyncio.gather(
            *(
                w.request(
                    "collect",
                    last_seq=published["last_seq"],
                    drain_seconds=drain,
                    timeout=drain + 60,
                )
                for w in workers
            )
        )
    except WorkerError:
        await asyncio.gather(
            *(w.request("collect", last_seq=0, drain_seconds=0) for w in workers),
            return_exceptions=True,
        )
        raise
    return summarize_round(reports, published, options.seconds, cpu_used)


async def _publish(
    ctx: BenchContext, target: FanoutTarget, collection: str, rate: float, slots: list[int]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Opens the publisher, arms the subscribers' window, publishes, closes."""
    options, pool = ctx.options, ctx.pool
    publisher = pool.publisher
    try:
        await publisher.request(
            "publisher_open",
            kind=target.kind,
            endpoint=target.publisher_endpoint,
            collection=collection,
            compression=target.compression,
            timeout=60,
        )
        t_start = time.monotonic_ns() + START_LEAD_NS
        t0 = t_start + int(options.warmup * 1e9)
        t1 = t0 + int(options.seconds * 1e9)
        await asyncio.gather(*(w.request("arm", t0=t0, t1=t1) for w in pool.subscribers))
        cpu = asyncio.create_task(cpu_during(target.server_pids, pool.pids, t0, t1))
        published = await publisher.request(
            "publish",
            t_start=t_start,
            t0=t0,
            t1=t1,
            window=options.window,
            rate=rate,
            slots=slots,
            timeout=options.warmup + options.seconds + 60,
        )
        return published, await cpu
    finally:
        await publisher.request("publisher_close")


def summarize_round(
    reports: list[dict[str, Any]],
    published: dict[str, Any],
    seconds: float,
    cpu_used: dict[str, float],
) -> dict[str, float]:
    latency = Histogram()
    for report in reports:
        latency.merge(Histogram.from_json(report["latency"]))
    failed = sum(r["failed"] for r in reports)
    if failed:
        first = next(f for r in reports for f in r["failures"])
        raise WorkerError(f"{failed} subscribers failed during the round: {first}")
    p50, p99 = latency.percentile(0.50), latency.percentile(0.99)
    if p50 is None or p99 is None:
        raise WorkerError("no message published in the measured window was delivered")
    delivered_per_s = sum(r["in_window"] for r in reports) / seconds
    return {
        "delivered_per_s": delivered_per_s,
        "published_per_s": published["in_window"] / seconds,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        **cpu_used,
        "server_us_per_msg": cpu_used["server_cpu"] / delivered_per_s * 1e6,
        "client_us_per_msg": cpu_used["client_cpu"] / delivered_per_s * 1e6,
        "received": sum(r["received"] for r in reports),
        "expected": sum(r["expected"] for r in reports),
        "missing": sum(r["missing"] for r in reports),
        "out_of_order": sum(r["out_of_order"] for r in reports),
        "latency_samples": latency.total,
        "publisher_stalls": published["stalls"],
    }
