"""Scenario 4, translate: legacy JSON <-> typed messages per second (the translator's
pure functions, one worker process, one core), with plain orjson loads+dumps of the
same frame as the floor any JSON relay pays."""

from __future__ import annotations

from bench.pool import WorkerError
from bench.procs import CpuWindow
from bench.results import Column, ScenarioResult, SubjectRun
from bench.scenarios.base import BenchContext, Scenario, SubjectUnavailable, alternate
from bench.translate_cases import CASES

REFERENCE = "orjson loads+dumps (reference)"


class TranslateScenario(Scenario):
    name = "translate"
    title = "legacy JSON <-> typed translation"
    columns = (
        Column("ops_per_s", "messages/s"),
        Column("us_per_op", "us/message", "{:,.2f}"),
    )

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        seconds = (
            max(0.2, ctx.options.seconds / 4) if ctx.options.quick else ctx.options.seconds / 2
        )
        result.notes.append(
            f"{seconds:g} s per case and round, 256-byte payloads (sync `data` object, "
            "wrapper Delta bytes)"
        )
        for case in CASES:
            result.runs.append(
                ctx.new_run(case, role="baseline" if case == REFERENCE else "syncwire")
            )
        worker = ctx.pool.publisher

        async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
            window = CpuWindow({"worker": [worker.pid]})
            window.begin()
            try:
                report = await worker.request("translate", case=run.subject, seconds=seconds)
            except WorkerError as exc:
                if "No module named" in str(exc) or "ImportError" in str(exc):
                    raise SubjectUnavailable(f"translator unavailable: {exc}") from None
                raise
            used = window.end()
            return {
                "ops_per_s": report["ops"] / report["seconds"],
                "us_per_op": report["seconds"] / report["ops"] * 1e6,
                "other_cpu": max(0.0, used["machine"] - used["worker"]),
            }

        await alternate(ctx, self.name, result.runs, ctx.options.rounds, do_round)
        return result
