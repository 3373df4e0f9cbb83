"""The /metrics endpoint during live traffic, and configuration precedence/validation."""

from __future__ import annotations

import argparse
import asyncio
import re
import urllib.request
from pathlib import Path

import pytest

from server.__main__ import build_parser
from server.config import ConfigError, ServerConfig, load_config
from syncwire.v1 import sync_pb2_grpc

from .service_harness import SyncStream, open_channel, running_server

pytestmark = pytest.mark.timeout(30)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics_show_live_counts() -> None:
    async with running_server(metrics_port=0) as server:
        assert server.metrics_port
        async with open_channel(server, "grpc") as channel:
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await stream.welcome()
            await stream.subscribe("m")
            for i in range(20):
                await stream.publish("m", bytes([i]) * 10)
            for _ in range(20):
                await stream.expect("delta")
            text = await asyncio.to_thread(_scrape, server.metrics_port)
            assert _value(text, 'syncwire_connections{transport="grpc"}') == 1
            assert _value(text, "syncwire_deltas_published_total") == 20
            assert _value(text, "syncwire_delta_bytes_published_total") == 200
            assert _value(text, 'syncwire_messages_in_total{kind="publish",transport="grpc"}') == 20
            assert _value(text, 'syncwire_recoveries_total{outcome="unspecified"}') == 1
            assert _value(text, "syncwire_publish_to_deliver_seconds_count") >= 1
            assert _value(text, "syncwire_broker_up") == 1
            await stream.close()


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "syncwire.toml"
    file.write_text('grpc_port = 1111\nws_port = 2222\nheartbeat_interval = 5\nlog_level = "info"\n')
    env = {"SYNCWIRE_WS_PORT": "3333", "SYNCWIRE_GRPC_PORT": "4444", "SYNCWIRE_WS_COMPRESSION": "off"}
    config = load_config(_args("--config", str(file), "--grpc-port", "5555"), env)
    assert config.grpc_port == 5555  # flag
    assert config.ws_port == 3333  # environment over file
    assert config.heartbeat_interval == 5.0  # file
    assert config.log_level == "info"
    assert config.ws_compression is False
    assert load_config(_args(), {}) == ServerConfig()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--grpc-port", "70000"], {}, "invalid grpc_port = 70000"),
        ([], {"SYNCWIRE_IDLE_TIMEOUT": "soon"}, "invalid idle_timeout = 'soon'"),
        ([], {"SYNCWIRE_BROKER": "kafka://x"}, "invalid broker"),
        ([], {"SYNCWIRE_MAX_CONNECTIONS": "0"}, "invalid max_connections = 0"),
        ([], {"SYNCWIRE_WS_COMPRESSION": "maybe"}, "not a boolean"),
        ([], {"SYNCWIRE_GRPC_PORT": "abc"}, "invalid grpc_port = 'abc' (from SYNCWIRE_GRPC_PORT): not a whole number"),
        ([], {"SYNCWIRE_HISTORY_TTL": "1h"}, "invalid history_ttl = '1h' (from SYNCWIRE_HISTORY_TTL): not a number"),
    ],
)
def test_bad_values_are_named(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_args(*argv), env)


def test_bad_file_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("no_such_option = 1\n")
    with pytest.raises(ConfigError, match=r"unknown option 'no_such_option'$"):
        load_config(_args("--config", str(file)), {})
    file.write_text("grpc_prot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown option 'grpc_prot' \(did you mean 'grpc_port'\?\)"):
        load_config(_args("--config", str(file)), {})
    file.write_text("grpc_port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_args("--config", str(file)), {})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(_args("--config", str(tmp_path / "missing.toml")), {})
