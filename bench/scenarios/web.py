"""Scenario web: the TypeScript transport (syncwire-web in Node) beside the Python
``WebSocketChannel``, against the same syncwire server in the same run: unary Publish
calls per second and fan-out deliveries per second, alternating rounds. The server is
the shared bottleneck, so the ratio shows the client-side overhead of the Node transport.

The Node client is web/dist/bench/client.js (built by ``npm run build`` in web/); its
Python twin is bench/clients/web_reference.py. The subject is skipped with a reason when
node or the build is missing."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

from bench.procs import ProcessFailed
from bench.results import Column, ScenarioResult, SubjectRun
from bench.scenarios.base import (
    BenchContext,
    Scenario,
    Servers,
    SubjectUnavailable,
    alternate,
    collection_name,
)
from bench.servers.launch import start_syncwire

NODE_CLIENT = Path(__file__).resolve().parents[2] / "web" / "dist" / "bench" / "client.js"
NODE = "web-node"
PYTHON = "python-ws"
PHASES = ("unary", "fanout")
MAX_FANOUT_SUBSCRIBERS = 100


def _command(
    subject: str, mode: str, url: str, seconds: float, width: int, collection: str, deflate: bool
) -> list[str]:
    args = [mode, url, f"{seconds:g}", str(width), collection, "deflate" if deflate else "plain"]
    if subject == NODE:
        node = shutil.which("node")
        if node is None or not NODE_CLIENT.exists():
            raise SubjectUnavailable(
                "node or web/dist/bench/client.js missing (cd web && npm ci && npm run build)"
            )
        return [node, str(NODE_CLIENT), *args]
    return [sys.executable, "-m", "bench.clients.web_reference", *args]


async def _measure(command: list[str], timeout: float) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise ProcessFailed(f"{command[0]} exited {process.returncode}: {err.decode()[-500:]}")
    figures: dict[str, float] = json.loads(lines[-1])
    if figures["errors"]:
        raise ProcessFailed(f"{figures['errors']:g} failed calls or missing deliveries")
    return {"per_s": figures["rate"], "count": figures["count"], "errors": figures["errors"]}


class WebScenario(Scenario):
    name = "web"
    title = "syncwire-web (Node) vs Python WebSocketChannel, same server"
    columns = (
        Column("per_s", "calls or deliveries/s"),
        Column("count", "count"),
        Column("errors", "errors"),
    )

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        options = ctx.options
        subscribers = min(options.subscribers, MAX_FANOUT_SUBSCRIBERS)
        widths = {"unary": options.rpc_concurrency, "fanout": subscribers}
        result.notes.append(
            f"one client process per round, one WebSocket each: unary = {widths['unary']} "
            f"concurrent Publish callers; fanout = {subscribers} Sync streams subscribed to one "
            "collection while 4 callers publish (deliveries / time to the last delivery); "
            f"permessage-deflate {'on' if options.compression else 'off'} for both (--compression)"
        )
        servers = Servers()
        try:
            await servers.start({"syncwire": start_syncwire("syncwire")})
            if "syncwire" in servers.failed:
                result.skipped = f"syncwire did not start: {servers.failed['syncwire']}"
                return result
            url = servers.endpoint("syncwire", "ws")
            for phase in PHASES:
                for subject in (NODE, PYTHON):
                    result.runs.append(ctx.new_run(subject, phase=phase))

            async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
                collection = collection_name("web", run.phase, run.subject, index)
                command = _command(
                    run.subject,
                    run.phase,
                    url,
                    options.seconds,
                    widths[run.phase],
                    collection,
                    options.compression,
                )
                return await _measure(command, options.seconds + 120)

            await alternate(ctx, self.name, result.runs, options.rounds, do_round)
        finally:
            await servers.stop_all()
        for phase in PHASES:
            node, python = (
                result.median(NODE, "per_s", phase),
                result.median(PYTHON, "per_s", phase),
            )
            if node is not None and python:
                result.notes.append(f"{phase}: {NODE} / {PYTHON} = {node / python:.2f}x")
        return result
