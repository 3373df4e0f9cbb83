"""Server configuration: one typed place, filled from flags > environment > TOML file.

Every field of `ServerConfig` is an option. Its flag is `--field-name`, its environment
variable `SYNCWIRE_FIELD_NAME`, its TOML key `field_name` (top level of the file given
with `--config`). Values are validated once, at start, with a message that names the
option and the bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.ws.origin import OriginPatternError, parse_patterns
from wire.deflate import MAX_MEM_LEVEL, MAX_WINDOW_BITS, MIN_MEM_LEVEL, MIN_WINDOW_BITS
from wire.protocol import (
    DEFAULT_RECEIVE_MESSAGE_BYTES,
    PING_INTERVAL_SECONDS,
    PING_TIMEOUT_SECONDS,
)

ENV_PREFIX = "SYNCWIRE_"
MIB = 1024 * 1024
SNAPSHOT_ENVELOPE_BYTES = 4096
"""Room a snapshot's message needs around its data (collection id, epoch, offset, request
id, framing): `max_snapshot_bytes` + this (at most half of `max_message_bytes`) must fit
in `max_message_bytes`, so a snapshot the broker accepts can also be put over the network
and delivered to a late joiner."""


def snapshot_envelope_bytes(max_message_bytes: int) -> int:
    """The room (bytes) kept around a snapshot's data within a message of
    `max_message_bytes`: 4096, or half the message for very small limits."""
    return min(SNAPSHOT_ENVELOPE_BYTES, max_message_bytes // 2)
MAX_WORKERS = 64


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option."""


def _opt(
    default: Any,
    help: str,
    *,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    secret: bool = False,
) -> Any:
    """A config field; `secret` keeps the value out of repr() and error messages."""
    return field(
        default=default,
        repr=not secret,
        metadata={"help": help, "choices": choices, "metavar": metavar, "secret": secret},
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server can be told. Defaults are safe for local development."""

    host: str = _opt("127.0.0.1", "address both listeners bind to")
    grpc_port: int = _opt(50051, "gRPC port (0 = pick a free port)")
    ws_port: int = _opt(8080, "WebSocket port (0 = pick a free port)")
    broker: str = _opt(
        "memory://",
        "broker URL: memory:// (embedded default), redis://HOST:PORT/DB, "
        "redis+sentinel://HOST:PORT,.../MASTER/DB or redis+cluster://HOST:PORT,...",
    )
    broker_durable: bool = _opt(
        False,
        "declare the Redis broker durable (appendonly yes + appendfsync always, checked "
        "on every connect to Redis): Redis restarts then keep epochs",
    )
    broker_timeout: float = _opt(
        2.0,
        "seconds a broker operation (each Redis call or connect attempt) may take; past it "
        "the request is answered UNAVAILABLE (broker_unavailable)",
    )
    workers: int = _opt(
        1, "server processes sharing the ports on this host (> 1 needs a shared broker)"
    )
    max_connections: int = _opt(
        1000, "maximum concurrent client sessions, all transports (host-wide: split among workers)"
    )
    max_message_bytes: int = _opt(MIB, "largest accepted client message in bytes")
    services: str = _opt(
        "",
        "application gRPC services to serve next to SyncService on both ports: "
        "comma-separated MODULE:FUNCTION, each function registering servicers on the "
        "grpc.aio.Server it is given (docs/your-own-service.md)",
        metavar="MODULE:FUNCTION[,...]",
    )
    hooks: str = _opt(
        "",
        "application hooks (connect, subscribe, publish, presence): MODULE:OBJECT naming a "
        "server.hooks.Hooks instance or subclass (docs/application-integration.md)",
        metavar="MODULE:OBJECT",
    )
    proxy_url: str = _opt(
        "",
        "the application's syncwire.v1.ProxyService answering the hooks over gRPC: "
        "grpc://HOST:PORT or grpcs://HOST:PORT (instead of --hooks)",
        metavar="URL",
    )
    proxy_hooks: str = _opt(
        "connect,subscribe,publish,presence",
        "which hooks --proxy-url answers, comma-separated (the others accept without a call)",
    )
    hook_failure_policy: str = _opt(
        "closed",
        "what a hook that raises or times out means: closed = refuse the request "
        "(UNAVAILABLE, hook_failed/hook_timeout), open = go ahead as if accepted",
        choices=("closed", "open"),
    )
    hook_connect_timeout: float = _opt(2.0, "seconds the connect hook may take")
    hook_subscribe_timeout: float = _opt(2.0, "seconds the subscribe hook may take")
    hook_publish_timeout: float = _opt(1.0, "seconds the publish hook may take")
    hook_presence_timeout: float = _opt(2.0, "seconds the presence hook may take")
    max_concurrent_calls: int = _opt(
        1000,
        "most calls one client connection may have open at once (WebSocket: the call over "
        "it ends RESOURCE_EXHAUSTED; gRPC: HTTP/2 max concurrent streams, further calls wait)",
    )
    heartbeat_interval: float = _opt(30.0, "seconds between server heartbeats")
    idle_timeout: float = _opt(300.0, "seconds of client silence before a session is dropped")
    history_size: int = _opt(1000, "deltas kept per collection for recovery")
    max_snapshot_bytes: int = _opt(
        0,
        "largest collection snapshot in bytes (PutSnapshot beyond it: INVALID_ARGUMENT); "
        "0 = max-message-bytes - 4096, the most it may be",
    )
    client_snapshots: bool = _opt(
        False,
        "let clients put snapshots (PutSnapshot) into collections they may publish to; "
        "otherwise only the application does (SyncCore.put_snapshot)",
    )
    history_ttl: float = _opt(3600.0, "seconds a delta stays in history")
    dedupe_ttl: float = _opt(86400.0, "seconds a client message id is remembered")
    subscriber_queue: int = _opt(
        10000,
        "live messages buffered per session before it counts as a slow consumer "
        "(also the unread direct replies at which its requests stop being read)",
    )
    subscriber_queue_bytes: int = _opt(
        4 * MIB,
        "bytes of live messages buffered per session before it counts as a slow consumer "
        "(also the unread reply bytes at which its requests stop being read)",
    )
    max_subscriptions: int = _opt(
        500, "collections one session may subscribe to at once (RESOURCE_EXHAUSTED beyond)"
    )
    shutdown_grace: float = _opt(10.0, "seconds to drain sessions on SIGTERM/SIGINT")
    legacy_collection: str = _opt(
        "default", "home collection of legacy JSON clients that give no room_id"
    )
    ws_compression: bool = _opt(True, "negotiate permessage-deflate on WebSocket")
    ws_compression_window_bits: int = _opt(
        10,
        "permessage-deflate LZ77 window, 2**N bytes, both directions (9..15; larger: "
        "better ratio across messages, more memory per connection)",
    )
    ws_compression_mem_level: int = _opt(
        4, "zlib memLevel of each connection's compressor (1..9; larger: faster, more memory)"
    )
    ws_ping_interval: float = _opt(
        PING_INTERVAL_SECONDS,
        "seconds between WebSocket keepalive pings, control and call-0 Ping (0 = off)",
    )
    ws_ping_timeout: float = _opt(
        PING_TIMEOUT_SECONDS,
        "seconds to wait for a pong; a peer that misses it is dropped at once",
    )
    ws_close_timeout: float = _opt(
        10.0, "seconds a WebSocket closing handshake may take before the socket is dropped"
    )
    metrics_port: int = _opt(-1, "Prometheus /metrics HTTP port (-1 = off, 0 = pick a free port)")
    log_level: str = _opt(
        "warning",
        "log level: debug, info, warning, error or critical",
        choices=("debug", "info", "warning", "error", "critical"),
    )
    log_format: str = _opt(
        "auto",
        "log format: json (one object per line), text, or auto (text on a terminal, else json)",
        choices=("auto", "json", "text"),
    )
    # Security and limits (docs/security.md).
    auth_secret: str = _opt(
        "",
        "HS256 secret (>= 32 bytes) that turns JWT authentication on; prefer the "
        "environment variable, command lines are visible to other local users",
        metavar="SECRET",
        secret=True,
    )
    auth_public_key: str = _opt(
        "",
        "PEM public key file that turns JWT authentication on (RSA: RS256, EC P-256: ES256)",
        metavar="FILE",
    )
    auth_audience: str = _opt("", "required JWT aud claim (empty: tokens must carry no aud)")
    auth_issuer: str = _opt("", "required JWT iss claim (empty: not checked)")
    auth_leeway: float = _opt(5.0, "seconds of clock skew tolerated on exp and nbf")
    admin_token: str = _opt(
        "",
        "the server API's credential (syncwire.v1.AdminService, `syncwire admin`), sent as "
        "'authorization: Bearer TOKEN'; empty: the server API refuses every call",
        metavar="TOKEN",
        secret=True,
    )
    rate_limit_messages: float = _opt(
        0.0, "client messages per second per connection (0 = unlimited)"
    )
    rate_limit_bytes: float = _opt(0.0, "client bytes per second per connection (0 = unlimited)")
    rate_limit_burst: float = _opt(
        2.0, "seconds of the rate limits a connection may use at once (bucket size)"
    )
    max_connections_per_address: int = _opt(
        100,
        "maximum concurrent connections and sessions per client IP address (0 = unlimited; "
        "host-wide: split among workers)",
    )
    tls_cert: str = _opt(
        "", "PEM certificate chain file: both listeners serve TLS (grpcs, wss)", metavar="FILE"
    )
    tls_key: str = _opt("", "PEM private key file of the --tls-cert certificate", metavar="FILE")
    allowed_origins: str = _opt(
        "",
        "browser origins allowed to open WebSockets besides the server's own host: "
        "glob patterns separated by commas, e.g. 'https://app.example.com,https://*.example.com' "
        "('*' = any); clients sending no Origin are not affected",
        metavar="PATTERNS",
    )

    @property
    def snapshot_limit(self) -> int:
        """The largest snapshot, in bytes, the server stores: `max_snapshot_bytes`, or
        when that is 0 (the default) `max_message_bytes` minus the envelope room (4096)."""
        if self.max_snapshot_bytes:
            return self.max_snapshot_bytes
        return self.max_message_bytes - snapshot_envelope_bytes(self.max_message_bytes)

    def response_bytes(self, receive_limit: int | None = None) -> int:
        """The byte bound of the entries of one response whose size grows with stored
        data (a GetHistory slice, a GetPresence or ListCollections answer): the smallest
        of `max_message_bytes`, 4 MiB (gRPC clients' default receive limit,
        `wire.protocol.DEFAULT_RECEIVE_MESSAGE_BYTES`) and the caller's announced
        `receive_limit` (bytes; None: not announced), minus the envelope room (4096, or
        half the message for very small limits) for the fields around the entries."""
        bound = min(self.max_message_bytes, DEFAULT_RECEIVE_MESSAGE_BYTES)
        if receive_limit is not None:
            bound = min(bound, receive_limit)
        return bound - snapshot_envelope_bytes(bound)

    def __post_init__(self) -> None:
        _check(0 <= self.grpc_port <= 65535, "grpc_port", self.grpc_port, "must be 0..65535")
        _check(0 <= self.ws_port <= 65535, "ws_port", self.ws_port, "must be 0..65535")
        _check(-1 <= self.metrics_port <= 65535, "metrics_port", self.metrics_port, "must be -1..65535")
        _check(self.max_connections >= 1, "max_connections", self.max_connections, "must be >= 1")
        self._check_workers()
        _check(
            self.max_message_bytes >= 1024,
            "max_message_bytes",
            self.max_message_bytes,
            "must be >= 1024",
        )
        _check(
            self.max_concurrent_calls >= 1,
            "max_concurrent_calls",
            self.max_concurrent_calls,
            "must be >= 1",
        )
        for name in (
            "heartbeat_interval",
            "idle_timeout",
            "history_ttl",
            "dedupe_ttl",
            "ws_close_timeout",
            "broker_timeout",
        ):
            value = getattr(self, name)
            _check(value > 0, name, value, "must be > 0")
        for name in ("connect", "subscribe", "publish", "presence"):
            timeout = getattr(self, f"hook_{name}_timeout")
            _check(timeout > 0, f"hook_{name}_timeout", timeout, "must be > 0")
        envelope = snapshot_envelope_bytes(self.max_message_bytes)
        _check(self.max_snapshot_bytes >= 0, "max_snapshot_bytes", self.max_snapshot_bytes, "must be >= 0")
        _check(
            self.max_snapshot_bytes + envelope <= self.max_message_bytes,
            "max_snapshot_bytes",
            self.max_snapshot_bytes,
            f"must leave {envelope} bytes of max_message_bytes "
            f"({self.max_message_bytes}) for the message around it",
        )

        _check(self.history_size >= 0, "history_size", self.history_size, "must be >= 0")
        _check(self.subscriber_queue >= 16, "subscriber_queue", self.subscriber_queue, "must be >= 16")
        _check(
            self.subscriber_queue_bytes >= 1024,
            "subscriber_queue_bytes",
            self.subscriber_queue_bytes,
            "must be >= 1024",
        )
        _check(self.max_subscriptions >= 1, "max_subscriptions", self.max_subscriptions, "must be >= 1")
        _check(self.shutdown_grace >= 0, "shutdown_grace", self.shutdown_grace, "must be >= 0")
        _check(
            MIN_WINDOW_BITS <= self.ws_compression_window_bits <= MAX_WINDOW_BITS,
            "ws_compression_window_bits",
            self.ws_compression_window_bits,
            f"must be {MIN_WINDOW_BITS}..{MAX_WINDOW_BITS}",
        )
        _check(
            MIN_MEM_LEVEL <= self.ws_compression_mem_level <= MAX_MEM_LEVEL,
            "ws_compression_mem_level",
            self.ws_compression_mem_level,
            f"must be {MIN_MEM_LEVEL}..{MAX_MEM_LEVEL}",
        )
        if self.broker != "memory://":
            from server.broker.redis_connect import RedisTarget

            try:
                RedisTarget.parse(self.broker)
            except ValueError as exc:
                raise ConfigError(f"invalid broker: {exc} (or memory://)") from None
        _check(bool(self.legacy_collection), "legacy_collection", self.legacy_collection, "must not be empty")
        self._check_security()
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None:
                value = getattr(self, f.name)
                _check(value in choices, f.name, value, f"must be one of {', '.join(choices)}")


    def _check_workers(self) -> None:
        _check(1 <= self.workers <= MAX_WORKERS, "workers", self.workers, f"must be 1..{MAX_WORKERS}")
        if self.workers == 1:
            return
        _check(
            self.broker != "memory://",
            "workers",
            self.workers,
            "more than one worker needs a shared broker (--broker redis://HOST:PORT/DB); "
            "memory:// would give each worker collections of its own",
        )
        _check(
            self.max_connections >= self.workers,
            "max_connections",
            self.max_connections,
            f"must be >= workers ({self.workers}): the limit is split among them",
        )
        _check(
            self.max_connections_per_address == 0
            or self.max_connections_per_address >= self.workers,
            "max_connections_per_address",
            self.max_connections_per_address,
            f"must be 0 or >= workers ({self.workers}): the limit is split among them",
        )

    def per_worker(self, port_grpc: int, port_ws: int) -> ServerConfig:
        """The configuration one of `workers` processes runs with: the resolved shared
        ports, no metrics listener of its own (the supervisor serves the aggregate) and
        the host-wide connection limits split evenly (rounded down, so the host total
        never exceeds them). Rate limits are per connection and stay as they are."""
        n = self.workers
        return dataclasses.replace(
            self,
            workers=1,
            grpc_port=port_grpc,
            ws_port=port_ws,
            metrics_port=-1,
            max_connections=self.max_connections // n,
            max_connections_per_address=self.max_connections_per_address // n,
        )

    def _check_security(self) -> None:
        _check(
            not (self.auth_secret and self.auth_public_key),
            "auth_public_key",
            self.auth_public_key,
            "set either auth_secret or auth_public_key, not both",
        )
        _check(
            not self.auth_secret or len(self.auth_secret.encode("utf-8")) >= 32,
            "auth_secret",
            "<hidden>",
            "must be at least 32 bytes (RFC 7518: HS256 keys have at least 256 bits)",
        )
        for name in ("auth_public_key", "tls_cert", "tls_key"):
            path = getattr(self, name)
            _check(not path or Path(path).is_file(), name, path, "no such file")
        for name in ("auth_audience", "auth_issuer"):
            value = getattr(self, name)
            _check(
                not value or self.auth_enabled,
                name,
                value,
                "needs authentication on (auth_secret or auth_public_key)",
            )
        _check(
            bool(self.tls_cert) == bool(self.tls_key),
            "tls_key" if self.tls_cert else "tls_cert",
            "",
            "tls_cert and tls_key are set together",
        )
        for name in ("auth_leeway", "rate_limit_messages", "rate_limit_bytes"):
            value = getattr(self, name)
            _check(value >= 0, name, value, "must be >= 0")
        _check(self.rate_limit_burst > 0, "rate_limit_burst", self.rate_limit_burst, "must be > 0")
        try:
            parse_patterns(self.allowed_origins)
        except OriginPatternError as exc:
            _check(False, "allowed_origins", self.allowed_origins, str(exc))
        _check(
            self.max_connections_per_address >= 0,
            "max_connections_per_address",
            self.max_connections_per_address,
            "must be >= 0",
        )

    @property
    def auth_enabled(self) -> bool:
        """Whether calls need a JWT (a secret or a public key is configured)."""
        return bool(self.auth_secret or self.auth_public_key)

    @property
    def origin_patterns(self) -> tuple[str, ...]:
        """``allowed_origins`` as a tuple of glob patterns (lower case)."""
        return parse_patterns(self.allowed_origins)

    @property
    def tls_enabled(self) -> bool:
        """True when `tls_cert` is set: both listeners serve TLS."""
        return bool(self.tls_cert)


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {name} = {value!r}: {rule}")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not a whole number") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("not a number") from None


def _parser_for(kind: type) -> Callable[[str], Any]:
    """The argparse type of one option (argparse words its own errors)."""
    if kind is bool:
        return _parse_bool
    return kind


# Parsers of an option's text from the environment or a TOML string: ValueError in words.
_TEXT_PARSERS: dict[type, Callable[[str], Any]] = {
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
}


def _field_type(f: dataclasses.Field[Any]) -> type:
    mapping: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
    return mapping[str(f.type)]


def _coerce(name: str, kind: type, raw: object, source: str) -> Any:
    if kind is str and isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return ",".join(raw)  # a TOML array of strings, for list-valued options
    try:
        if isinstance(raw, str):
            return _TEXT_PARSERS.get(kind, kind)(raw)
        if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
            return raw
    except ValueError as exc:
        raise ConfigError(f"invalid {name} = {raw!r} (from {source}): {exc}") from None
    raise ConfigError(f"invalid {name} = {raw!r} (from {source}): expected {kind.__name__}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per config field (default None, so unset flags fall through)."""
    parser.add_argument("--config", metavar="FILE", help="optional TOML configuration file")
    for f in dataclasses.fields(ServerConfig):
        kind = _field_type(f)
        env = ENV_PREFIX + f.name.upper()
        help_text = f"{f.metadata['help']} (default {f.default!r}; env {env})"
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=_parser_for(kind),
                default=None,
                choices=f.metadata.get("choices"),
                help=help_text,
                metavar=f.metadata.get("metavar") or f.name.upper(),
            )


def load_config(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Builds the config: flags beat environment, environment beats the TOML file."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = getattr(args, "config", None) or environ.get(ENV_PREFIX + "CONFIG")
    known = {f.name: f for f in dataclasses.fields(ServerConfig)}
    if config_file:
        values.update(_read_toml(Path(config_file), known))
    for name, f in known.items():
        env = ENV_PREFIX + name.upper()
        if env in environ:
            values[name] = _coerce(name, _field_type(f), environ[env], env)
        flag_value = getattr(args, name, None) if args is not None else None
        if flag_value is not None:
            values[name] = flag_value
    return ServerConfig(**values)


def _read_toml(path: Path, known: Mapping[str, dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = key.replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"config file {path}: unknown option {key!r}{hint}")
        values[name] = _coerce(name, _field_type(known[name]), raw, str(path))
    return values
