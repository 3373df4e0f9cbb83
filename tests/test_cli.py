"""The `syncwire` command, run as a real subprocess against a real server process.

Every subcommand is exercised end to end over loopback: publish/subscribe over both
transports, a file of 500 deltas, JSON output, presence, info, health (serving and
down), usage errors (exit 2, one line), refusals (exit 1), an unreachable server
(exit 3, one line), Ctrl-C (exit 130, no traceback) and `serve` itself.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.cli.app import main
from tests.process_harness import READY
from tests.security_harness import SECRET, make_pki, make_token

CLI = [sys.executable, "-m", "client.cli"]
RUN_TIMEOUT = 30.0

pytestmark = pytest.mark.timeout(90)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: no colour forcing and no SYNCWIRE_* settings
    inherited from the caller, so output is plain and the defaults are the tested ones."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")
        and not key.startswith("SYNCWIRE_")
    }
    return {**env, **extra}


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, repo: Path, stdin: str | None = None, **env: str) -> Result:
    done = subprocess.run(
        [*CLI, *args],
        cwd=repo,
        env=cli_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_all(commands: Sequence[Sequence[str]], repo: Path, **env: str) -> list[Result]:
    """Runs independent invocations side by side (each one is a separate process)."""
    processes = [
        subprocess.Popen(
            [*CLI, *args],
            cwd=repo,
            env=cli_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
        results.append(Result(process.returncode, out, err))
    return results


@dataclass
class Server:
    process: subprocess.Popen[str]
    grpc_url: str
    ws_url: str
    grpc_address: str

    def url(self, transport: str) -> str:
        return self.grpc_url if transport == "grpc" else self.ws_url


SERVER = [sys.executable, "-m", "server"]


def start_server(repo: Path, *args: str, command: Sequence[str] = SERVER) -> Server:
    """Starts a server process (on free ports unless `args` say otherwise) and waits for
    its ready line."""
    process = subprocess.Popen(
        [*command, "--grpc-port", "0", "--ws-port", "0", *args],
        cwd=repo,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = READY.search(line)
    if match is None:
        process.kill()
        raise AssertionError(f"server did not start: {line!r}")
    return Server(process, f"grpc://{match['grpc']}", match["ws"], match["grpc"])


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.fixture(scope="module")
def server(repo_root: Path) -> Iterator[Server]:
    started = start_server(repo_root)
    yield started
    stop(started.process)


@pytest.fixture
def collection() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_line_error(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("syncwire: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


class Tail:
    """A `syncwire subscribe` running in the background, ready once subscribed."""

    def __init__(self, repo: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "subscribe", *args],
            cwd=repo,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.notices: list[str] = []
        first = self.wait_for_notice("subscribed to ")  # blocks until subscribed (or failure)
        assert first.startswith("subscribed to "), first + self.rest()[1]

    def wait_for_notice(self, start: str) -> str:
        """Reads stderr up to the first line starting with `start` (or its end)."""
        assert self.process.stderr is not None
        while line := self.process.stderr.readline():
            self.notices.append(line)
            if line.startswith(start):
                return line
        return ""

    def rest(self, timeout: float = RUN_TIMEOUT) -> tuple[str, str]:
        """Waits for the exit; returns stdout and all of stderr."""
        out, err = self.process.communicate(timeout=timeout)
        return out, "".join(self.notices) + err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


# ------------------------------------------------------------ publish/subscribe


@pytest.mark.parametrize("transport", ["grpc", "ws"])
def test_publish_then_subscribe_sees_it(
    server: Server, collection: str, repo_root: Path, transport: str
) -> None:
    url = server.url(transport)
    published = run_cli("publish", collection, "hello from the cli", "-s", url, repo=repo_root)
    assert published.code == 0, published.err
    assert published.out.startswith("offset 1 (epoch "), published.out

    replay = run_cli(
        "subscribe", collection, "--from-offset", "0", "--count", "1", "-s", url, repo=repo_root
    )
    assert replay.code == 0, replay.err
    assert replay.out.startswith("#1 ") and "hello from the cli" in replay.out, replay.out
    assert "replayed 1 deltas; now live" in replay.err

    # Live: a tail started first sees the next publish (host:port + --transport form).
    host_port = url.split("://", 1)[1]
    tail = Tail(repo_root, collection, "--count", "1", "-s", host_port, "-t", transport)
    try:
        again = run_cli("publish", collection, "second", "-s", url, repo=repo_root)
        assert again.code == 0, again.err
        out, err = tail.rest()
    finally:
        tail.kill()
    assert tail.process.returncode == 0, err
    assert out.startswith("#2 ") and out.rstrip().endswith("second"), out


def test_publish_file_of_500_lines_and_json_tail(
    server: Server, collection: str, repo_root: Path, tmp_path: Path
) -> None:
    deltas = tmp_path / "deltas.jsonl"
    deltas.write_text("".join(f'{{"n": {n}}}\n' for n in range(1, 501)) + "\n")
    published = run_cli(
        "publish", collection, "--file", str(deltas), "--encoding", "json",
        "-s", server.ws_url, repo=repo_root,
    )  # fmt: skip
    assert published.code == 0, published.err
    assert published.out.startswith(f"published 500 deltas to '{collection}': offsets 1..500 ")

    tail = run_cli(
        "subscribe", collection, "--from-offset", "0", "--count", "500", "--json",
        "-s", server.grpc_url, repo=repo_root,
    )  # fmt: skip
    assert tail.code == 0, tail.err
    records = [json.loads(line) for line in tail.out.splitlines()]
    assert [r["offset"] for r in records] == list(range(1, 501))
    assert [json.loads(r["data"])["n"] for r in records] == list(range(1, 501))
    first = records[0]
    assert first["collection_id"] == collection and first["encoding"] == "json"
    assert first["epoch"] and first["server_time"] and first["replica_id"]


def test_publish_file_shows_progress_and_json_acks(
    server: Server, collection: str, repo_root: Path, tmp_path: Path
) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"one\r\n\ntwo\nthree")  # CRLF, a blank line, no final newline
    published = run_cli(
        "publish", collection, "--file", str(lines), "--json", "-s", server.grpc_url,
        repo=repo_root, TTY_COMPATIBLE="1",
    )  # fmt: skip
    assert published.code == 0, published.err
    acks = [json.loads(line) for line in published.out.splitlines()]
    assert [a["offset"] for a in acks] == [1, 2, 3]
    assert all(a["collection_id"] == collection and not a["duplicate"] for a in acks)
    assert f"publishing to {collection}" in published.err  # the progress bar (stderr)

    tail = run_cli(
        "subscribe", collection, "--from-offset", "0", "-n", "3", "--json", "-q",
        "-s", server.grpc_url, repo=repo_root,
    )  # fmt: skip
    assert [json.loads(line)["data"] for line in tail.out.splitlines()] == ["one", "two", "three"]
    assert tail.err == ""  # --quiet


def test_publish_from_stdin(server: Server, collection: str, repo_root: Path) -> None:
    published = run_cli(
        "publish", collection, "-f", "-", "-s", server.grpc_url, repo=repo_root, stdin="a\nb\n"
    )
    assert published.code == 0, published.err
    assert "published 2 deltas" in published.out


def test_subscribe_survives_a_server_restart(repo_root: Path, collection: str) -> None:
    ports = ["--grpc-port", str(closed_port()), "--ws-port", str(closed_port())]
    first = start_server(repo_root, *ports)
    tail = Tail(repo_root, collection, "--count", "2", "-s", first.ws_url)
    try:
        assert (
            run_cli("publish", collection, "before", "-s", first.ws_url, repo=repo_root).code == 0
        )
        assert stop(first.process) == 0
        second = start_server(repo_root, *ports)  # same ports; memory broker: a new epoch
        try:
            # Resubscribed first: deltas published before that, in a new epoch, are not
            # replayed (the server cannot know what the old epoch's offsets meant).
            assert tail.wait_for_notice("reconnected to ").strip() == (
                f"reconnected to {first.ws_url}"
            )
            after = run_cli("publish", collection, "after", "-s", second.grpc_url, repo=repo_root)
            assert after.code == 0, after.err
            out, err = tail.rest()
        finally:
            stop(second.process)
    finally:
        tail.kill()
        stop(first.process)
    assert tail.process.returncode == 0, err
    assert [line.split()[-1] for line in out.splitlines()] == ["before", "after"]
    assert f"history of '{collection}' was reset" in err


# --------------------------------------------------------- presence and Ctrl-C


def test_presence_lists_member_and_ctrl_c_exits_cleanly(
    server: Server, collection: str, repo_root: Path
) -> None:
    tail = Tail(repo_root, collection, "--join", "--user-id", "alice", "-s", server.ws_url)
    try:
        listed = run_cli("presence", collection, "-s", server.grpc_url, repo=repo_root)
        assert listed.code == 0, listed.err
        header, *rows = listed.out.splitlines()
        assert header.split() == ["PEER", "USER", "NAME", "STATUS", "SINCE"]
        assert len(rows) == 1 and rows[0].split()[1] == "alice", listed.out

        as_json = run_cli("presence", collection, "--json", "-s", server.ws_url, repo=repo_root)
        members = json.loads(as_json.out)["members"]
        assert [m["user_info"]["user_id"] for m in members] == ["alice"]

        tail.process.send_signal(signal.SIGINT)
        _, err = tail.rest()
    finally:
        tail.kill()
    assert tail.process.returncode == 130
    assert err.strip().splitlines()[-1] == "syncwire: interrupted"
    assert "Traceback" not in err

    gone = run_cli("presence", collection, "-s", server.grpc_url, repo=repo_root)
    assert gone.out.strip() == f"nobody is present in '{collection}'"
    gone_json = run_cli("presence", collection, "--json", "-s", server.grpc_url, repo=repo_root)
    assert json.loads(gone_json.out) == {"collection_id": collection, "members": []}


# ------------------------------------------------------------- info, health


@pytest.mark.parametrize("transport", ["grpc", "ws"])
def test_info_and_health(server: Server, repo_root: Path, transport: str) -> None:
    url = server.url(transport)
    shown, as_json, health, sync_health = run_all(
        [
            ["info", "-s", url],
            ["info", "--json", "-s", url],
            ["health", "-s", url],
            ["health", "--service", "syncwire.v1.SyncService", "-s", url],
        ],
        repo_root,
    )
    version = importlib.metadata.version("syncwire")
    assert shown.code == 0, shown.err
    fields = dict(line.split(None, 1) for line in shown.out.splitlines() if " " in line)
    assert fields["version"].strip() == version, shown.out
    assert fields["endpoint"].startswith(url), shown.out
    info = json.loads(as_json.out)
    assert info["server_info"]["version"] == version
    assert "presence" in info["server_info"]["features"]
    assert (health.code, health.out.strip()) == (0, "SERVING"), health.err
    assert (sync_health.code, sync_health.out.strip()) == (0, "SERVING"), sync_health.err


def test_health_unknown_service(server: Server, repo_root: Path) -> None:
    checked = run_cli("health", "--service", "nope", "-s", server.grpc_url, repo=repo_root)
    assert checked.code == 1
    assert one_line_error(checked) == f"syncwire: {server.grpc_url} knows no service 'nope'"


def test_server_down_is_one_line_and_exit_3(repo_root: Path) -> None:
    grpc_url = f"grpc://127.0.0.1:{closed_port()}"
    ws_url = f"ws://127.0.0.1:{closed_port()}"
    commands = [
        ["health", "-s", grpc_url],
        ["publish", "notes", "x", "-s", grpc_url],
        ["info", "-s", ws_url],
        ["presence", "notes", "-s", ws_url],
        ["subscribe", "notes", "-s", ws_url],
    ]
    for args, result in zip(commands, run_all(commands, repo_root), strict=True):
        url = args[-1]
        assert result.code == 3, (args, result.err)
        assert one_line_error(result) == f"syncwire: cannot connect to {url}: connection refused"
        assert result.out == ""


def test_the_other_transports_port_says_to_check_the_port(server: Server, repo_root: Path) -> None:
    """grpc:// at the WebSocket port and ws:// at the gRPC port: one line naming the fix."""
    ws_port = server.ws_url.rsplit(":", 1)[1]
    grpc_at_ws = f"grpc://127.0.0.1:{ws_port}"
    ws_at_grpc = f"ws://{server.grpc_address}"
    results = run_all([["info", "-s", grpc_at_ws], ["info", "-s", ws_at_grpc]], repo_root)
    for result, url, hint in zip(
        results,
        (grpc_at_ws, ws_at_grpc),
        ("no plain gRPC server there: check the port", "no plain WebSocket server there"),
        strict=True,
    ):
        assert result.code == 3, result.err
        line = one_line_error(result)
        assert line.startswith(f"syncwire: cannot connect to {url}: ") and hint in line, line


# ------------------------------------------------------ where the options go


@pytest.fixture(scope="module")
def two_servers(repo_root: Path) -> Iterator[tuple[Server, Server]]:
    """Two servers told apart by their message limit and their admin credential."""
    first = start_server(repo_root, "--max-message-bytes", "100001", "--admin-token", "admin-a")
    try:
        second = start_server(
            repo_root, "--max-message-bytes", "200002", "--admin-token", "admin-b"
        )
    except BaseException:
        stop(first.process)
        raise
    yield first, second
    stop(second.process)
    stop(first.process)


def test_common_options_reach_every_command_in_every_position(
    two_servers: tuple[Server, Server], repo_root: Path
) -> None:
    """--server/--transport (and --admin-token for admin) before the command name, after
    a group's name, or after the subcommand's name all pick the server named, never the
    one in the environment (which stands in for the default one): the message limit says
    which server answered info; only the second server takes admin-b."""
    other, named = two_servers
    ws_hostport = named.ws_url.removeprefix("ws://")
    url = named.grpc_url
    info_commands = [
        ["--server", url, "info", "--json"],
        ["info", "--server", url, "--json"],
        ["--server", named.ws_url, "info", "--json"],
        ["--transport", "ws", "info", "--json", "--server", ws_hostport],
        ["--server", ws_hostport, "info", "--json", "--transport", "ws"],
        ["--timeout", "5", "--server", url, "info", "--json", "--timeout", "6"],
    ]
    admin_commands = [
        ["--server", url, "admin", "collections"],
        ["admin", "--server", url, "collections"],
        ["admin", "collections", "--server", url],
        ["--server", named.ws_url, "admin", "collections", "--json"],
        ["--transport", "ws", "admin", "--server", ws_hostport, "collections"],
        ["admin", "--transport", "ws", "presence", "room", "--server", ws_hostport],
        ["--server", url, "admin", "disconnect", "--peer", "nobody"],
        ["admin", "--server", url, "revoke", "--jti", "j-1", "--for", "60"],
    ]
    with_token = [
        ["--server", url, "admin", "--admin-token", "admin-b", "collections"],
        ["admin", "--admin-token", "admin-b", "--server", url, "collections"],
        ["admin", "--admin-token", "admin-b", "collections", "--server", url],
    ]
    env = {"SYNCWIRE_SERVER": other.grpc_url}
    results = run_all(
        [*info_commands, *admin_commands], repo_root, **env, SYNCWIRE_ADMIN_TOKEN="admin-b"
    )
    results += run_all(with_token, repo_root, **env, SYNCWIRE_ADMIN_TOKEN="admin-a")
    for args, result in zip([*info_commands, *admin_commands, *with_token], results, strict=True):
        assert result.code == 0, (args, result.err)
    for args, result in zip(info_commands, results[: len(info_commands)], strict=True):
        limit = json.loads(result.out)["server_info"]["max_message_bytes"]
        assert int(limit) == 200002, (args, result.out)


def test_a_failing_publish_hook_has_its_own_message_and_exit_code(
    repo_root: Path, tmp_path: Path, collection: str
) -> None:
    """An on_publish hook that raises, under the default (closed) failure policy: the
    server answers UNAVAILABLE hook_failed; the CLI says the application's hook failed
    (exit 4), not that the server is unreachable (exit 3), at the first refusal instead
    of retrying every second until --timeout (which ran the hook 10 times)."""
    calls = tmp_path / "calls"
    (tmp_path / "raising_hooks.py").write_text(
        "from server.hooks import Hooks\n"
        "class Raising(Hooks):\n"
        "    async def on_publish(self, caller, delta):\n"
        f"        with open({str(calls)!r}, 'a') as calls:\n"
        "            calls.write('publish\\n')\n"
        "        raise RuntimeError('boom')\n"
        "hooks = Raising()\n"
    )
    path = os.pathsep.join(
        filter(None, [str(tmp_path), str(repo_root), os.environ.get("PYTHONPATH")])
    )
    process = subprocess.Popen(
        [*SERVER, "--grpc-port", "0", "--ws-port", "0", "--hooks", "raising_hooks:hooks"],
        cwd=repo_root,
        env=cli_env(PYTHONPATH=path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = READY.search(process.stdout.readline())
        assert ready is not None
        urls = [f"grpc://{ready['grpc']}", ready["ws"]]
        commands = [["publish", collection, "boom", "--timeout", "20", "-s", url] for url in urls]
        for url, result in zip(urls, run_all(commands, repo_root), strict=True):
            assert result.code == 4, result.err
            assert one_line_error(result) == (
                f"syncwire: {url} refused the publish: the application's hook failed: "
                "publish hook failed (hook_failed; the server's log says why)"
            )
        # One call per command, give or take a retry the client began before the command
        # ended (it retries after 1 s); retrying until --timeout made about 60.
        assert len(calls.read_text().splitlines()) <= 4
    finally:
        stop(process)


# ---------------------------------------------------------- refusals, usage


def test_oversize_delta_is_refused_with_exit_1(
    server: Server, collection: str, repo_root: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (2 * 1024 * 1024) + b"\n")
    refused = run_cli("publish", collection, "-f", str(big), "-s", server.grpc_url, repo=repo_root)
    assert refused.code == 1
    line = one_line_error(refused)
    assert f"{server.grpc_url} refused the publish of line 1: resource_exhausted" in line
    assert "message limit" in line


USAGE_ERRORS = [
    (["publish", "notes"], "give exactly one delta"),
    (["publish", "notes", "a", "--data", "b"], "give exactly one delta"),
    (["publish", "notes", "x", "--bogus"], "No such option '--bogus'"),
    (["publish", "notes", "x", "-s", "http://h:1"], "unsupported endpoint"),
    (["publish", "notes", "x", "-s", "grpc://h:1", "-t", "ws"], "contradicts"),
    (["publish", "notes", "{", "--encoding", "json"], "DATA: not valid JSON"),
    (["publish", "notes", "-f", "does-not-exist.txt"], "does-not-exist.txt"),
    (["subscribe", "notes", "--count", "0"], "--count"),
    (["subscribe", "notes", "--epoch", "e"], "--epoch needs --from-offset"),
    (["info", "--timeout", "soon"], "--timeout"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
]


def test_usage_errors_exit_2_with_one_line(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two as real processes; the rest through the same entry point in this process (each
    # subprocess costs an interpreter start, and the parsing under test is identical).
    commands = [args for args, _ in USAGE_ERRORS[:2]]
    as_processes = run_all(commands, repo_root)
    capsys.readouterr()
    for index, (args, says) in enumerate(USAGE_ERRORS):
        if index < len(as_processes):
            result = as_processes[index]
        else:
            code = main(args)
            captured = capsys.readouterr()
            result = Result(code, captured.out, captured.err)
        assert result.code == 2, (args, result.err)
        assert says in one_line_error(result), args
        assert result.out == "", args


def test_invalid_json_line_is_refused_before_sending(repo_root: Path, tmp_path: Path) -> None:
    deltas = tmp_path / "deltas.jsonl"
    deltas.write_text('{"ok": 1}\n\n{"bad": }\n')
    # The server is unreachable: the file is checked (and refused) before connecting.
    result = run_cli(
        "publish", "notes", "-f", str(deltas), "-e", "json",
        "-s", f"grpc://127.0.0.1:{closed_port()}", repo=repo_root,
    )  # fmt: skip
    assert result.code == 2
    assert one_line_error(result).startswith(f"syncwire: {deltas}:3: not valid JSON")


def test_help_lists_every_command(repo_root: Path) -> None:
    shown = run_cli("--help", repo=repo_root)
    assert shown.code == 0
    for command in ("serve", "publish", "subscribe", "presence", "info", "health"):
        assert f"  {command} " in shown.out
    bare = run_cli(repo=repo_root)
    assert bare.code == 2 and "Usage: syncwire" in bare.err


# ------------------------------------------------------------- token and TLS


def test_token_and_tls(repo_root: Path, tmp_path: Path, collection: str) -> None:
    pki = make_pki(tmp_path)
    secured = start_server(
        repo_root,
        "--auth-secret", SECRET,
        "--tls-cert", str(pki.cert_file),
        "--tls-key", str(pki.key_file),
    )  # fmt: skip
    grpcs = f"grpcs://{secured.grpc_address}"
    token = make_token(pubs=[collection], subs=[collection])
    ca = ["--ca", str(pki.ca_file)]
    try:
        anonymous, forbidden, expired, untrusted, untrusted_ws, plain, plain_ws = run_all(
            [
                ["publish", collection, "x", "-s", grpcs, *ca],
                ["publish", "elsewhere", "x", "-s", grpcs, *ca, "--token", token],
                ["info", "-s", grpcs, *ca, "--token", make_token(expires_in=-60)],
                ["health", "--tls", "-s", secured.grpc_address],
                ["health", "-s", secured.ws_url],  # the system store does not know the CA
                ["health", "-s", f"grpc://{secured.grpc_address}"],  # plain text to TLS
                ["health", "-s", secured.ws_url.replace("wss://", "ws://")],
            ],
            repo_root,
        )
        published = run_cli(
            "publish", collection, "secret", "-s", grpcs, *ca, repo=repo_root,
            SYNCWIRE_TOKEN=token,
        )  # fmt: skip
        tail = run_cli(
            "subscribe", collection, "--from-offset", "0", "-n", "1", "-s", secured.ws_url,
            repo=repo_root, SYNCWIRE_TOKEN=token, SYNCWIRE_CA=str(pki.ca_file),
        )  # fmt: skip
    finally:
        stop(secured.process)
    assert secured.ws_url.startswith("wss://")
    assert anonymous.code == 1
    assert one_line_error(anonymous) == (
        f"syncwire: {grpcs} refused the session: unauthenticated: missing token "
        "(give a token with --token or SYNCWIRE_TOKEN)"
    )
    assert forbidden.code == 1
    assert one_line_error(forbidden) == (
        f"syncwire: {grpcs} refused the publish: permission_denied: "
        "the token does not allow publish on 'elsewhere'"
    )
    assert expired.code == 1
    assert one_line_error(expired) == (
        f"syncwire: {grpcs} refused the info: unauthenticated: token expired "
        "(give a fresh token with --token or SYNCWIRE_TOKEN)"
    )
    for result, hint in (
        (plain, "(no plain gRPC server there: check the port, or use grpcs:// or --tls)"),
        (plain_ws, "(no plain WebSocket server there: check the port, or use wss:// or --tls)"),
    ):
        assert result.code == 3
        assert one_line_error(result).endswith(hint), result.err
    for result, url in ((untrusted, grpcs), (untrusted_ws, secured.ws_url)):
        assert result.code == 3
        assert one_line_error(result).startswith(
            f"syncwire: cannot connect to {url}: TLS handshake failed: certificate not trusted"
        )
        assert result.err.rstrip().endswith("; give its CA with --ca FILE")
    assert published.code == 0, published.err
    assert tail.code == 0, tail.err
    assert tail.out.rstrip().endswith("secret")


# --------------------------------------------------------------------- serve


def test_serve_runs_the_server(repo_root: Path) -> None:
    served = start_server(repo_root, command=[*CLI, "serve"])
    try:
        checked = run_cli("health", "-s", served.ws_url, repo=repo_root)
        assert (checked.code, checked.out.strip()) == (0, "SERVING"), checked.err
    finally:
        code = stop(served.process)
    assert code == 0


def test_serve_passes_arguments_through(repo_root: Path) -> None:
    shown = run_cli("serve", "--help", repo=repo_root)
    assert shown.code == 0 and "--grpc-port" in shown.out
    version = run_cli("serve", "--version", repo=repo_root)
    expected = importlib.metadata.version("syncwire")
    assert (version.code, version.out.strip()) == (0, f"syncwire serve {expected}")
    bad = run_cli("serve", "--max-connections", "0", repo=repo_root)
    assert bad.code == 2
    assert "max_connections" in bad.err
