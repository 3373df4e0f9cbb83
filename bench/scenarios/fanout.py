"""Scenario 1, fan-out: one publisher, N subscribers in one collection, 256-byte
payloads. Phase "max": the publisher goes as fast as its echo window allows. Phase
"half-rate": each raw baseline's median max publish rate is halved and the baseline
and its syncwire counterparts are paced at that rate, to compare p99 latency."""

from __future__ import annotations

from bench.clients import LEGACY_JSON, RAW_GRPC, RAW_WS, SOCKETIO, SYNCWIRE_GRPC, SYNCWIRE_WS
from bench.pool import WorkerError
from bench.procs import ProcessFailed
from bench.results import ScenarioResult, SubjectRun
from bench.scenarios.base import (
    BenchContext,
    Scenario,
    Servers,
    Subject,
    alternate,
    collection_name,
    describe_failure,
)
from bench.scenarios.fanout_round import FANOUT_COLUMNS, FanoutTarget, fanout_round, probe
from bench.servers.launch import start_raw_grpc, start_raw_ws, start_socketio, start_syncwire

MAX, HALF = "max", "half-rate"


SUBJECTS = (
    Subject("syncwire-ws", SYNCWIRE_WS, "syncwire", "ws", "syncwire"),
    Subject("syncwire-grpc", SYNCWIRE_GRPC, "syncwire", "grpc", "syncwire"),
    Subject("legacy-json", LEGACY_JSON, "syncwire", "ws", "syncwire"),
    Subject("raw-websockets", RAW_WS, "raw-ws", "ws", "baseline"),
    Subject("raw-grpc", RAW_GRPC, "raw-grpc", "grpc", "baseline"),
    Subject("python-socketio", SOCKETIO, "socketio", "url", "baseline"),
)
BY_NAME = {s.name: s for s in SUBJECTS}

# Raw baseline -> the syncwire subjects compared with it at half its max rate.
HALF_RATE_PAIRS = {
    "raw-websockets": ("syncwire-ws", "legacy-json"),
    "raw-grpc": ("syncwire-grpc",),
}


class FanoutScenario(Scenario):
    name = "fanout"
    title = "fan-out: 1 publisher -> N subscribers, 256-byte payloads"
    columns = FANOUT_COLUMNS

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        options = ctx.options
        result.notes.append(
            f"N={options.subscribers} subscribers (+ the publisher, which also receives), "
            f"{options.seconds:g} s measured after {options.warmup:g} s warm-up, "
            f"{options.rounds} round(s); the max phase keeps at most {options.window} messages "
            "between the publisher and the slowest subscriber, so its latency is queueing "
            "(see the half-rate phase for latency)"
        )
        servers = Servers()
        try:
            await servers.start(
                {
                    "syncwire": start_syncwire("syncwire"),
                    "raw-ws": start_raw_ws(),
                    "raw-grpc": start_raw_grpc(),
                    "socketio": start_socketio(),
                }
            )
            targets: dict[str, FanoutTarget] = {}
            for subject in SUBJECTS:
                run = ctx.new_run(subject.name, MAX, subject.role)
                result.runs.append(run)
                if run.skipped is not None:
                    continue
                target = await self._target(ctx, servers, subject, run)
                if target is not None:
                    targets[subject.name] = target

            async def max_round(run: SubjectRun, index: int) -> dict[str, float]:
                collection = collection_name("fan", run.subject, index)
                return await fanout_round(ctx, targets[run.subject], collection, 0.0)

            max_runs = list(result.runs)
            await alternate(ctx, self.name, max_runs, options.rounds, max_round)
            await self._half_rate(ctx, result, targets, max_runs)
        finally:
            await servers.stop_all()
        return result

    async def _target(
        self, ctx: BenchContext, servers: Servers, subject: Subject, run: SubjectRun
    ) -> FanoutTarget | None:
        if subject.server in servers.failed:
            run.skipped = f"{subject.server} server did not start: {servers.failed[subject.server]}"
            return None
        try:
            endpoint = servers.endpoint(subject.server, subject.endpoint)
            target = FanoutTarget(
                subject.kind,
                endpoint,
                (endpoint,),
                (servers.started[subject.server].pid,),
                ctx.options.compression,
            )
            await probe(ctx, target, collection_name("probe", subject.name))
        except (WorkerError, ProcessFailed) as exc:
            run.skipped = f"{subject.name} unavailable: {describe_failure(exc)}"
            ctx.progress(f"fanout {subject.name}: skipped: {run.skipped}")
            return None
        return target

    async def _half_rate(
        self,
        ctx: BenchContext,
        result: ScenarioResult,
        targets: dict[str, FanoutTarget],
        max_runs: list[SubjectRun],
    ) -> None:
        half_runs: list[SubjectRun] = []
        rates: dict[str, float] = {}
        for baseline, partners in HALF_RATE_PAIRS.items():
            max_rate = result.median(baseline, "published_per_s", MAX)
            for name in (baseline, *partners):
                run = ctx.new_run(name, HALF, BY_NAME[name].role)
                result.runs.append(run)
                half_runs.append(run)
                if run.skipped is not None:
                    continue
                if name not in targets:
                    run.skipped = next(r.skipped for r in max_runs if r.subject == name)
                elif max_rate is None or max_rate <= 0:
                    run.skipped = f"no max publish rate was measured for {baseline}"
                else:
                    rates[name] = max_rate / 2
                    run.info.update(rate=max_rate / 2, baseline=baseline)
        if rates:
            result.notes.append(
                "half-rate phase: paced publisher at half the raw baseline's median max "
                "publish rate ("
                + ", ".join(f"{b}: {rates[b]:,.0f}/s" for b in HALF_RATE_PAIRS if b in rates)
                + "), each payload stamped with its scheduled send time"
            )

        async def half_round(run: SubjectRun, index: int) -> dict[str, float]:
            collection = collection_name("half", run.subject, index)
            return await fanout_round(ctx, targets[run.subject], collection, rates[run.subject])

        await alternate(ctx, self.name, half_runs, ctx.options.rounds, half_round)
