"""Per-collection publish order survives refusals for now (rate limit) and the CLI's
`publish --file` summary and Ctrl-C report say what the server holds."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import ClientConfig, Endpoint, SyncClient
from tests.service_harness import running_server
from tests.test_cli import (
    CLI,
    RUN_TIMEOUT,
    Server,
    cli_env,
    run_cli,
    start_server,
    stop,
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_rate_limited_publishes_keep_their_order(transport: str) -> None:
    """100 concurrent publishes into one collection through a rate limit of 50/s with a
    burst of 10: refused publishes are not overtaken by later ones, so the i-th publish
    gets offset i and the history holds the deltas in publish order."""
    async with running_server(rate_limit_messages=50.0, rate_limit_burst=0.2) as server:
        url = f"grpc://{server.grpc_address}" if transport == "grpc" else server.ws_url
        config = ClientConfig(heartbeat_interval=30.0, outbox_path=None)
        async with SyncClient([Endpoint.parse(url).url], config) as client:
            await client.connect()
            async with asyncio.timeout(45):
                acks = await asyncio.gather(
                    *(client.publish("rl", f"line {i}".encode()) for i in range(1, 101))
                )
            assert client.stats.publishes_sent > 100, "the rate limit refused nothing"
            assert [ack.offset for ack in acks] == list(range(1, 101))
            assert not any(ack.duplicate for ack in acks)


# ------------------------------------------------------------ the CLI, as a subprocess


@pytest.fixture(scope="module")
def limited_server(repo_root: Path) -> Iterator[Server]:
    """A server process whose rate limit (50 messages/s, burst 10) refuses a file's
    publishes for now."""
    started = start_server(repo_root, "--rate-limit-messages", "50", "--rate-limit-burst", "0.2")
    yield started
    stop(started.process)


@pytest.fixture(scope="module")
def plain_server(repo_root: Path) -> Iterator[Server]:
    """A server process without a rate limit."""
    started = start_server(repo_root)
    yield started
    stop(started.process)


def test_cli_publish_file_through_a_rate_limit_keeps_file_order(
    limited_server: Server, repo_root: Path, tmp_path: Path
) -> None:
    """`publish --file` of 100 lines through the rate limit: the summary names the real
    offset range, the acks come in file order, and offset i holds line i."""
    lines = tmp_path / "l100.txt"
    lines.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    url = limited_server.grpc_url
    published = run_cli("publish", "rl", "--file", str(lines), "-s", url, repo=repo_root)
    assert published.code == 0, published.err
    assert published.out.startswith("published 100 deltas to 'rl': offsets 1..100 ")

    again = run_cli("publish", "rl2", "--file", str(lines), "--json", "-s", url, repo=repo_root)
    assert again.code == 0, again.err
    assert [json.loads(line)["offset"] for line in again.out.splitlines()] == list(range(1, 101))

    history = run_cli(
        "subscribe", "rl", "--from-offset", "0", "-n", "100", "--json", "-q", "-s", url,
        repo=repo_root,
    )  # fmt: skip
    assert history.code == 0, history.err
    records = [json.loads(line) for line in history.out.splitlines()]
    assert [(r["offset"], r["data"]) for r in records] == [
        (i, f"line {i}") for i in range(1, 101)
    ]


def publishing_a_file(
    server: Server, collection: str, total: int, repo_root: Path, tmp_path: Path
) -> subprocess.Popen[str]:
    """`publish --file --json` of `total` lines, once its first 300 acks were printed
    (publishing is well under way)."""
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i}\n" for i in range(1, total + 1)))
    process = subprocess.Popen(
        [*CLI, "publish", collection, "--file", str(lines), "--json", "-s", server.grpc_url],
        cwd=repo_root,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(300):
        if not process.stdout.readline():
            process.kill()
            raise AssertionError(f"the command ended before 300 acks: {process.communicate()}")
    return process


def test_cli_ctrl_c_reports_exactly_what_the_server_applied(
    plain_server: Server, repo_root: Path, tmp_path: Path
) -> None:
    """Ctrl-C while a 20 000-line file is being published (after 300 acknowledgements,
    read from --json output): the command stops submitting lines, waits for the
    acknowledgements of those in flight, and reports the exact number the server holds
    and the right line to resume from; resuming from there leaves every line once."""
    collection = f"ctrlc-{uuid.uuid4().hex[:8]}"
    total = 20_000
    process = publishing_a_file(plain_server, collection, total, repo_root, tmp_path)
    try:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    report = err.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"syncwire: interrupted: (\d+) of {total} deltas acknowledged; resume from line (\d+)",
        report,
    )
    assert match is not None, err
    applied, resume = int(match[1]), int(match[2])
    assert 300 <= applied < total and resume == applied + 1

    history = run_cli(
        "subscribe", collection, "--from-offset", "0", "-n", str(applied), "--json", "-q",
        "-s", plain_server.grpc_url, repo=repo_root,
    )  # fmt: skip
    assert history.code == 0, history.err
    records = [json.loads(line) for line in history.out.splitlines()]
    assert [r["data"] for r in records] == [f"line {i}" for i in range(1, applied + 1)]
    # Nothing beyond: the next publish gets the offset right after the reported ones.
    probe = run_cli("publish", collection, f"line {resume}", "-s", plain_server.grpc_url, repo=repo_root)
    assert probe.code == 0, probe.err
    assert probe.out.startswith(f"offset {resume} "), probe.out


def test_cli_second_ctrl_c_names_the_lines_that_may_have_been_applied(
    repo_root: Path, tmp_path: Path
) -> None:
    """When the acknowledgements cannot arrive (the server is stopped with SIGSTOP) the
    second Ctrl-C ends the wait, and the report names the lines that may or may not
    have been applied instead of a resume line."""
    paused = start_server(repo_root)
    process = publishing_a_file(paused, "paused", 20_000, repo_root, tmp_path)
    try:
        assert process.stderr is not None
        paused.process.send_signal(signal.SIGSTOP)
        process.send_signal(signal.SIGINT)
        while not (line := process.stderr.readline()).startswith("stopping: "):
            assert line, "no 'stopping:' notice after the first Ctrl-C"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        paused.process.send_signal(signal.SIGCONT)
        if process.poll() is None:
            process.kill()
            process.communicate()
        stop(paused.process)
    assert process.returncode == 130, err
    report = err.strip().splitlines()[-1]
    match = re.fullmatch(
        r"syncwire: interrupted: (\d+) of 20000 deltas acknowledged; lines (\d+)\.\.(\d+) "
        r"may or may not have been applied \(.+\); lines from (\d+) on were not sent",
        report,
    )
    assert match is not None, err
    acknowledged, first, last, unsent = map(int, match.groups())
    assert acknowledged >= 300 and first == acknowledged + 1
    assert first <= last and unsent == last + 1
    assert "resume from" not in err
