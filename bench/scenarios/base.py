"""What scenarios share: the run context, server sets, alternating rounds."""

from __future__ import annotations

import asyncio
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from bench.options import BenchOptions
from bench.pool import WorkerError, WorkerPool
from bench.procs import ChildProcess, ProcessFailed
from bench.results import Column, ScenarioResult, SubjectRun
from bench.timing import wait_for_quiet


class SubjectUnavailable(Exception):
    """The subject cannot be measured in this run (a piece it needs is missing); its
    remaining rounds are skipped with this message as the reason."""


@dataclass
class BenchContext:
    options: BenchOptions
    pool: WorkerPool
    progress: Callable[[str], None]

    def new_run(self, subject: str, phase: str = "", role: str = "syncwire") -> SubjectRun:
        """A subject's run, skipped up front when ``--subject`` left it out."""
        run = SubjectRun(subject, phase, role)
        if self.options.subjects and subject not in self.options.subjects:
            run.skipped = "not selected (--subject)"
        return run


class Scenario(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]

    def result(self) -> ScenarioResult:
        return ScenarioResult(self.name, self.title, list(self.columns))

    @abstractmethod
    async def run(self, ctx: BenchContext) -> ScenarioResult: ...


@dataclass(frozen=True, slots=True)
class Subject:
    """A system under test: a client kind against one endpoint of one server."""

    name: str
    kind: str
    server: str
    endpoint: str
    role: str  # "syncwire" or "baseline"


@dataclass
class Servers:
    """Servers of one scenario, started concurrently; a server that fails to start is
    remembered with its reason so its subjects can be skipped."""

    started: dict[str, ChildProcess] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    async def start(self, starters: dict[str, Awaitable[ChildProcess]]) -> None:
        names = list(starters)
        outcomes = await asyncio.gather(*starters.values(), return_exceptions=True)
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, ChildProcess):
                self.started[name] = outcome
            elif isinstance(outcome, BaseException):
                self.failed[name] = _one_line(outcome)

    def endpoint(self, server: str, key: str) -> str:
        child = self.started[server]
        value = child.endpoints.get(key)
        if not value:
            raise ProcessFailed(f"{server} announced no {key} endpoint: {child.endpoints}")
        return value

    async def stop(self, name: str) -> None:
        child = self.started.pop(name, None)
        if child is not None:
            await child.stop()

    async def stop_all(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.started.values()))
        self.started.clear()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


def describe_failure(exc: BaseException) -> str:
    return _one_line(exc)


REDO_NOISY = 2

RoundFn = Callable[[SubjectRun, int], Awaitable[dict[str, float]]]


async def alternate(
    ctx: BenchContext, scenario: str, runs: list[SubjectRun], rounds: int, do_round: RoundFn
) -> None:
    """Rounds in A, B, A, B order over the runs that are not skipped; a failed round is
    recorded as an error of its subject and the others carry on.

    The machine may be shared: each round first waits (up to ``--quiet-wait`` s) for
    the machine to be quiet, and a round during which processes outside the measured
    server and clients used more than ``--max-other-load`` cores is run again (up to
    ``REDO_NOISY`` times, not in --quick); the discarded figures are kept in the run's info."""
    options = ctx.options
    redos = 0 if options.quick else REDO_NOISY
    for index in range(rounds):
        for run in runs:
            if run.skipped is not None:
                continue
            label = f"{scenario} {run.phase + ' ' if run.phase else ''}{run.subject}"
            for attempt in range(redos + 1):
                note = ""
                if options.quiet_wait > 0:
                    load = await wait_for_quiet(options.max_other_load, options.quiet_wait)
                    note = f" (machine load before: {load:.0%} of a core)"
                ctx.progress(f"{label}: round {index + 1}/{rounds}{note}")
                try:
                    figures = await do_round(run, index)
                except SubjectUnavailable as exc:
                    run.skipped = _one_line(exc)
                    ctx.progress(f"{label}: skipped: {run.skipped}")
                    break
                except (WorkerError, ProcessFailed, OSError, TimeoutError) as exc:
                    run.errors.append(f"round {index + 1}: {_one_line(exc)}")
                    ctx.progress(f"{label}: round {index + 1} failed: {_one_line(exc)}")
                    break
                other = figures.get("other_cpu", 0.0)
                if other <= options.max_other_load or attempt == redos:
                    run.rounds.append(figures)
                    break
                run.info.setdefault("discarded_noisy_rounds", []).append(figures)
                ctx.progress(f"{label}: other load {other:.0%} of a core, running it again")


def collection_name(*parts: object) -> str:
    """A collection id the server accepts (``[A-Za-z0-9_-]{1,50}``), unique per round."""
    raw = "-".join(str(p) for p in parts) + f"-{time.monotonic_ns() % 10**6}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", raw)[-50:]
