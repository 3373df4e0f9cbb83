"""What a new user meets first, run as they would run it: real processes, one-line answers.

Each case is a subprocess (the `syncwire` command, `python -m server`) against a real
server or a real socket on loopback, asserting the exact line a user reads and the exit
code scripts branch on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from syncwire.v1 import sync_pb2_grpc

from .process_harness import start_server_process
from .service_harness import SyncStream
from .test_cli import (
    CLI,
    RUN_TIMEOUT,
    Server,
    cli_env,
    closed_port,
    one_line_error,
    run_all,
    run_cli,
    server,
    start_server,
    stop,
)

pytestmark = pytest.mark.timeout(120)

__all__ = ["server"]  # the running-server fixture, shared with test_cli

NOT_UTF8 = os.fsdecode(b"\xff\xfe")
"""What Python makes of the argument bytes ff fe: lone surrogates, sent back as ff fe."""


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A loopback port whose listener never answers a connection attempt: its accept
    queue is full (listen backlog 0, already taken), so the kernel drops new SYNs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


# ------------------------------------------------------------------ arguments


def test_non_utf8_data_is_published_as_its_bytes(server: Server, repo_root: Path) -> None:
    published = run_cli("publish", "bytes-arg", NOT_UTF8, "-s", server.grpc_url, repo=repo_root)
    assert published.code == 0, published.err
    assert published.out.startswith("offset 1 (epoch "), published.out
    assert published.err == ""

    tail = run_cli(
        "subscribe", "bytes-arg", "--from-offset", "0", "-n", "1", "--json", "-q",
        "-s", server.grpc_url, repo=repo_root,
    )  # fmt: skip
    assert tail.code == 0, tail.err
    record = json.loads(tail.out)
    assert record["offset"] == 1 and record["data_base64"] == "//4=", record


def test_non_utf8_text_arguments_are_one_usage_line(repo_root: Path) -> None:
    json_data = run_cli("publish", "notes", "--encoding", "json", NOT_UTF8, repo=repo_root)
    assert json_data.code == 2
    assert one_line_error(json_data).startswith("syncwire: DATA: not valid JSON: ")
    bad_collection = run_cli("presence", f"n{NOT_UTF8}", repo=repo_root)
    assert bad_collection.code == 2
    assert one_line_error(bad_collection) == (
        "syncwire: Invalid value for 'COLLECTION': b'n\\xff\\xfe' is not valid UTF-8 "
        "(see 'syncwire presence --help')"
    )


def test_connection_options_before_or_after_the_command(server: Server, repo_root: Path) -> None:
    host_port = server.ws_url.split("://", 1)[1]
    before, after, mixed = run_all(
        [
            ["--transport", "ws", "--server", host_port, "health"],
            ["health", "--transport", "ws", "--server", host_port],
            # After the command name wins over before it.
            ["--server", "grpc://127.0.0.1:1", "health", "--server", server.ws_url],
        ],
        repo_root,
    )
    for result in (before, after, mixed):
        assert (result.code, result.out.strip()) == (0, "SERVING"), result.err

    wrong_type = run_cli("--timeout", "abc", "health", repo=repo_root)
    assert wrong_type.code == 2
    assert one_line_error(wrong_type) == (
        "syncwire: Invalid value for '--timeout': 'abc' is not a valid float range. "
        "(see 'syncwire --help')"
    )
    serve = run_cli("--timeout", "3", "serve", repo=repo_root)
    assert serve.code == 2
    assert one_line_error(serve) == (
        "syncwire: --timeout: connection options of the client commands, not of serve"
    )


def test_server_argument_errors_are_one_line(repo_root: Path) -> None:
    served = run_cli("serve", "--grpc-port", "abc", repo=repo_root)
    assert served.code == 2
    assert served.err == (
        "syncwire serve: argument --grpc-port: invalid int value: 'abc' "
        "(see 'syncwire serve --help')\n"
    )
    direct = subprocess.run(
        [sys.executable, "-m", "server", "--ws-port", "x"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, env=cli_env(), check=False,
    )  # fmt: skip
    assert direct.returncode == 2
    assert direct.stderr == (
        "syncwire-server: argument --ws-port: invalid int value: 'x' "
        "(see 'syncwire-server --help')\n"
    )
    shown = run_cli("serve", "--help", repo=repo_root)
    assert shown.code == 0 and shown.out.startswith("usage: syncwire serve "), shown.out


# ------------------------------------------------------------------- the server


@pytest.mark.parametrize("which", ["grpc", "ws"])
def test_port_in_use_is_one_line(repo_root: Path, held_port: int, which: str) -> None:
    ports = {"grpc": "0", "ws": "0", which: str(held_port)}
    result = subprocess.run(
        [sys.executable, "-m", "server", "--grpc-port", ports["grpc"], "--ws-port", ports["ws"]],
        cwd=repo_root, env=cli_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
        check=False,
    )  # fmt: skip
    name = "gRPC" if which == "grpc" else "WebSocket"
    assert result.returncode == 1
    assert result.stderr == (
        f"syncwire-server: cannot bind {name} port 127.0.0.1:{held_port}: address already in use\n"
    )


async def test_sigterm_drain_with_grpc_subscribers_logs_no_error() -> None:
    server = await start_server_process("--shutdown-grace", "1")
    try:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            # Many streams: each one is a chance for the drain's abort to race its reader.
            streams = [SyncStream(stub) for _ in range(30)]
            for stream in streams:
                await stream.welcome()
                await stream.subscribe("doc")
            assert await server.terminate(timeout=20) == 0
        assert server.process.stderr is not None
        err = (await server.process.stderr.read()).decode()
    finally:
        server.kill()
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records, err
    assert [r for r in records if r["level"] in ("error", "critical")] == []
    assert "Traceback" not in err


# -------------------------------------------------------------------- timeouts


def test_timeout_is_honoured_against_a_host_that_does_not_answer(
    repo_root: Path, unanswering_port: int
) -> None:
    # 11 s: longer than the 10 s after which the connect used to give up on its own.
    commands = [
        ["health", "-s", f"{scheme}://127.0.0.1:{unanswering_port}", "--timeout", "11"]
        for scheme in ("grpc", "ws")
    ]
    started = time.monotonic()
    results = run_all(commands, repo_root)
    elapsed = time.monotonic() - started
    for result, scheme in zip(results, ("grpc", "ws"), strict=True):
        assert result.code == 3
        assert one_line_error(result) == (
            f"syncwire: cannot connect to {scheme}://127.0.0.1:{unanswering_port}: timed out"
        )
    assert elapsed >= 11  # waited for --timeout, not for a built-in 10 s


# ---------------------------------------------------------------- the example


def test_hello_example_without_a_server_says_it_is_unreachable(repo_root: Path) -> None:
    grpc_url, ws_url = f"grpc://127.0.0.1:{closed_port()}", f"ws://127.0.0.1:{closed_port()}"
    # examples/hello.py as `python examples/hello.py URL URL` runs it, with a short
    # first-connect timeout instead of its 10 s default.
    program = (
        "import asyncio, runpy, sys; "
        "main = runpy.run_path('examples/hello.py')['main']; "
        f"sys.exit(asyncio.run(main([{grpc_url!r}, {ws_url!r}], first_connect_timeout=0.5)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=repo_root, env=cli_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    connecting, unreachable = result.stdout.splitlines()
    assert connecting == f"connecting to {grpc_url} or {ws_url}"
    assert unreachable.startswith(
        f"server unreachable: cannot reach {grpc_url}, {ws_url} within 0.5 s"
    ), unreachable
    assert unreachable.endswith("(start one: python -m server)")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------ progress display


def _terminal_tail(repo_root: Path, *args: str) -> subprocess.Popen[str]:
    """`syncwire subscribe ARGS` whose stderr counts as a terminal (bars are drawn)."""
    return subprocess.Popen(
        [*CLI, "subscribe", *args],
        cwd=repo_root,
        env=cli_env(TTY_COMPATIBLE="1", COLUMNS="100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], text: str) -> str:
    """stderr read up to the line containing `text` (or its end)."""
    assert process.stderr is not None
    seen = ""
    while line := process.stderr.readline():
        seen += line
        if text in line:
            break
    return seen


def test_live_tail_draws_no_replay_bar(server: Server, repo_root: Path) -> None:
    tail = _terminal_tail(repo_root, "live-bar", "-n", "1", "-s", server.grpc_url)
    try:
        before = _read_until(tail, "subscribed to ")
        assert "subscribed to " in before, before
        assert run_cli("publish", "live-bar", "x", "-s", server.grpc_url, repo=repo_root).code == 0
        out, rest = tail.communicate(timeout=RUN_TIMEOUT)
    finally:
        tail.kill()
    assert tail.returncode == 0, rest
    assert out.rstrip().endswith("x")
    assert "replaying" not in before + rest


def test_replay_bar_is_gone_once_live(server: Server, repo_root: Path) -> None:
    for data in ("a", "b"):
        assert (
            run_cli("publish", "replay-bar", data, "-s", server.grpc_url, repo=repo_root).code == 0
        )
    tail = _terminal_tail(
        repo_root, "replay-bar", "--from-offset", "0", "-n", "3", "-s", server.grpc_url
    )
    try:
        replayed = _read_until(tail, "replayed 2 deltas; now live")
        assert "replayed 2 deltas; now live" in replayed, replayed
        assert (
            run_cli("publish", "replay-bar", "c", "-s", server.grpc_url, repo=repo_root).code == 0
        )
        out, live = tail.communicate(timeout=RUN_TIMEOUT)
    finally:
        tail.kill()
    assert tail.returncode == 0, live
    assert [line.split()[-1] for line in out.splitlines()] == ["a", "b", "c"]
    assert "replaying" not in replayed.rsplit("replayed 2 deltas", 1)[1] + live


# ---------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_publish_file_says_what_may_have_been_applied(
    repo_root: Path, tmp_path: Path
) -> None:
    """Ctrl-C while the server is frozen: the CLI waits (at most --timeout) for the
    acknowledgements of what it sent, cannot get them, and says which lines may or may
    not have been applied instead of a resume line that could duplicate them."""
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"{n}\n" for n in range(1, 20_001)))
    served = start_server(repo_root)
    publisher: subprocess.Popen[str] | None = None
    try:
        publisher = subprocess.Popen(
            [*CLI, "publish", "resume", "--file", str(lines), "--json", "--timeout", "2",
             "-s", served.grpc_url],
            cwd=repo_root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert publisher.stdout is not None
        printed = [publisher.stdout.readline() for _ in range(3)]  # three acks are in
        assert all(json.loads(line)["offset"] for line in printed), printed
        # The server stops answering (frozen): whatever is still in flight stays so.
        served.process.send_signal(signal.SIGSTOP)
        publisher.send_signal(signal.SIGINT)
        out, err = publisher.communicate(timeout=RUN_TIMEOUT)
    finally:
        served.process.send_signal(signal.SIGCONT)
        if publisher is not None:
            publisher.kill()
        stop(served.process)
    assert publisher.returncode == 130, err
    match = re.fullmatch(
        r"syncwire: interrupted: (\d+) of 20000 deltas acknowledged; lines (\d+)\.\.(\d+) "
        r"may or may not have been applied \(.+\); lines from (\d+) on were not sent",
        err.strip().splitlines()[-1],
    )
    assert match is not None, err
    acknowledged, first, last, unsent = map(int, match.groups())
    assert acknowledged >= len(printed) + len(out.splitlines())
    assert first == acknowledged + 1 <= last < unsent == last + 1 < 20_001
    assert "resume from" not in err and "Traceback" not in err
