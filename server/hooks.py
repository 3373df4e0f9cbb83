"""Application hooks: what an application decides around the transport.

An application subclasses `Hooks` and overrides the calls it needs; the server runs
them on every transport (native gRPC, WebSocket framing, legacy JSON) through one
`HookRunner`, with a per-hook timeout, a failure policy and a latency histogram:

- `on_connect(caller)`: a new sync session (refuse, or attach the user's `UserInfo`,
  which presence then shows instead of what the client says);
- `on_subscribe(caller, collection_id)`: authorize a subscribe (and optionally give the
  subscriber initial data, `SubscribeResult`);
- `on_publish(caller, delta)`: accept (return None), refuse (raise `HookRefusal`) or
  replace the delta (return a `Delta`); it runs before the broker assigns an offset, so
  a refused delta never exists;
- `on_presence(caller, presence)`: observe a presence change made on this node.

Refuse by raising `HookRefusal(code, reason_code, message)`: the caller gets that gRPC
status (unary call, or a Sync stream refused at connect), that `Error` (on the stream)
or a legacy `error` whose `code` is `reason_code`. Any other exception, or running past
the hook's timeout, is a *hook failure*: with the default failure policy ("closed") the
request is refused UNAVAILABLE (`hook_failed` / `hook_timeout`, retry hint 1000 ms);
with "open" it goes ahead as if the hook had accepted. Observe-only `on_presence` never
blocks anything: its failures are logged. See docs/application-integration.md.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import grpc

from syncwire.v1 import types_pb2

from .auth import Principal
from .config import ConfigError, ServerConfig
from .errors import RequestError
from .metrics import ServerMetrics

log = logging.getLogger(__name__)

HookName = Literal["connect", "subscribe", "publish", "presence"]
HOOK_NAMES: Final[tuple[HookName, ...]] = ("connect", "subscribe", "publish", "presence")

REFUSED: Final = "refused"
"""Default reason code of a `HookRefusal`."""
HOOK_FAILED: Final = "hook_failed"
"""Reason code of a request refused because its hook raised (failure policy "closed")."""
HOOK_TIMEOUT: Final = "hook_timeout"
"""Reason code of a request refused because its hook ran past its timeout ("closed")."""
HOOK_RETRY_AFTER_MS: Final = 1000

MAX_PENDING_OBSERVERS: Final = 1000
"""Most `on_presence` calls in flight per server; beyond it changes are not observed
(counted in `syncwire_hook_seconds{hook="presence",outcome="dropped"}`)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a hook is asked about.

    `peer_id`: the session's server-assigned peer id ("" for a unary call);
    `transport`: "grpc", "websocket" or "legacy"; `peer_address`: the transport's peer
    string (e.g. "ipv4:127.0.0.1:50000"); `user_id`: the token's `sub` ("" without
    authentication); `claims`: every claim of the caller's verified token ({} without
    authentication)."""

    peer_id: str
    transport: str
    peer_address: str
    user_id: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)


def caller_of(
    peer_id: str, transport: str, peer_address: str, principal: Principal | None
) -> Caller:
    """The `Caller` of a session or unary call authenticated as `principal` (None:
    authentication is off)."""
    if principal is None:
        return Caller(peer_id, transport, peer_address)
    return Caller(peer_id, transport, peer_address, principal.subject, principal.claims)


class HookRefusal(Exception):
    """Raised by a hook to refuse: the caller sees `code` (a gRPC status, not OK),
    `reason_code` (a stable machine-readable word) and `message`."""

    def __init__(
        self,
        message: str = "refused by the application",
        *,
        code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED,
        reason_code: str = REFUSED,
    ) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("a refusal's code cannot be OK")
        super().__init__(message)
        self.code = code
        self.reason_code = reason_code or REFUSED
        self.message = message

    def to_request_error(self, collection_id: str = "") -> RequestError:
        return RequestError(self.code, self.reason_code, self.message, collection_id=collection_id)


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """What `on_connect` may attach to an accepted session: `user_info` replaces the
    user information the client gives when it joins presence."""

    user_info: types_pb2.UserInfo | None = None


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """What `on_subscribe` may give an accepted subscriber: `initial_data` reaches the
    client in `Subscribed.initial_data` (opaque bytes, at most `max_snapshot_bytes`)."""

    initial_data: bytes = b""


class Hooks:
    """The application's hooks; every method is optional (the defaults accept) and may
    raise `HookRefusal`. Methods are coroutines run on the server's event loop: keep
    them short, or they count against their timeout."""

    async def on_connect(self, caller: Caller) -> ConnectResult | None:
        """A sync session opens (after authentication, before the Welcome is used)."""
        return None

    async def on_subscribe(self, caller: Caller, collection_id: str) -> SubscribeResult | None:
        """`caller` subscribes to `collection_id` (after the token's permissions);
        accept (None, or a `SubscribeResult` with initial data) or raise `HookRefusal`."""
        return None

    async def on_publish(self, caller: Caller, delta: types_pb2.Delta) -> types_pb2.Delta | None:
        """`caller` publishes `delta` (validated; offset, epoch and server_time unset).
        Return None to accept it, a Delta to publish instead (its `crdt_type`, `delta`,
        `encoding`, `timestamp` and `replica_id` replace the original's; the collection,
        client message id and peer id stay), or raise `HookRefusal`."""
        return None

    async def on_presence(self, caller: Caller, presence: types_pb2.Presence) -> None:
        """`caller` joined, left or updated its presence in a collection (observe only;
        the change already happened)."""
        return None

    async def close(self) -> None:
        """Called once when the server stops (release connections here)."""
        return None

    def implements(self, name: HookName) -> bool:
        """Whether the server should call `on_<name>`: by default, when the subclass
        overrides it (the defaults are skipped and cost nothing)."""
        method = f"on_{name}"
        return getattr(type(self), method, None) is not getattr(Hooks, method)


def load_hooks(spec: str) -> Hooks | None:
    """The hooks object a `hooks` option names (`MODULE:OBJECT`; a class is
    instantiated without arguments). None for "". Raises ConfigError."""
    if not spec:
        return None
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigError(f"hooks: {spec!r} is not MODULE:OBJECT")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the option's fault
        raise ConfigError(f"hooks: cannot import {module_name!r}: {exc}") from None
    target = getattr(module, name, None)
    if isinstance(target, type) and issubclass(target, Hooks):
        target = target()
    if not isinstance(target, Hooks):
        raise ConfigError(f"hooks: {spec!r} is not a server.hooks.Hooks instance or subclass")
    return target


TRACEBACK_INTERVAL: Final = 60.0
"""Seconds between two logged tracebacks of one hook failing with one exception type;
the failures in between log one line each (type and message)."""

_MAX_FAILURE_KINDS: Final = 1024
"""Most (hook, exception type) pairs remembered for `TRACEBACK_INTERVAL`."""


class HookRunner:
    """Runs an application's `Hooks` with per-hook timeouts, the failure policy and the
    `syncwire_hook_seconds{hook, outcome}` histogram (outcome: accepted, replaced,
    refused, failed, timeout, dropped). Hooks the application did not override cost
    nothing."""

    def __init__(self, hooks: Hooks | None, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.hooks = hooks
        self.fail_open = config.hook_failure_policy == "open"
        self.max_initial_data = config.snapshot_limit
        self.timeouts: dict[HookName, float] = {
            "connect": config.hook_connect_timeout,
            "subscribe": config.hook_subscribe_timeout,
            "publish": config.hook_publish_timeout,
            "presence": config.hook_presence_timeout,
        }
        self.enabled = {name: hooks is not None and hooks.implements(name) for name in HOOK_NAMES}
        self._latency = metrics.hook_latency
        self._observers: set[asyncio.Task[None]] = set()
        self._traceback_logged: dict[tuple[HookName, type[BaseException]], float] = {}

    async def close(self) -> None:
        """Closes the application's hooks (`Hooks.close`), once, at server stop."""
        hooks, self.hooks = self.hooks, None
        self.enabled = dict.fromkeys(HOOK_NAMES, False)
        for task in list(self._observers):
            task.cancel()
        await asyncio.gather(*self._observers, return_exceptions=True)
        if hooks is not None:
            await hooks.close()

    async def connect(self, caller: Caller) -> types_pb2.UserInfo | None:
        """Runs `on_connect`; the user info it attached, if any. Raises RequestError."""
        if not self.enabled["connect"]:
            return None
        assert self.hooks is not None
        result = await self._run("connect", self.hooks.on_connect(caller), "")
        return result.user_info if isinstance(result, ConnectResult) else None

    async def subscribe(self, caller: Caller, collection_id: str) -> bytes:
        """Runs `on_subscribe`; the initial data it gave (b"" for none). Raises
        RequestError (with `collection_id`)."""
        if not self.enabled["subscribe"]:
            return b""
        assert self.hooks is not None
        result = await self._run(
            "subscribe", self.hooks.on_subscribe(caller, collection_id), collection_id
        )
        if not isinstance(result, SubscribeResult):
            return b""
        if len(result.initial_data) > self.max_initial_data:
            message = f"subscribe hook: initial data over {self.max_initial_data} bytes"
            self._failed("subscribe", HOOK_FAILED, message, collection_id)
            return b""
        return result.initial_data

    async def publish(self, caller: Caller, delta: types_pb2.Delta) -> types_pb2.Delta:
        """Runs `on_publish`; the delta to publish (`delta` itself, changed in place when
        the hook replaced it). Raises RequestError."""
        if not self.enabled["publish"]:
            return delta
        assert self.hooks is not None
        collection_id = delta.collection_id
        offered = types_pb2.Delta()
        offered.CopyFrom(delta)
        replacement = await self._run(
            "publish", self.hooks.on_publish(caller, offered), collection_id
        )
        if isinstance(replacement, types_pb2.Delta):
            delta.crdt_type = replacement.crdt_type
            delta.delta = replacement.delta
            delta.encoding = replacement.encoding
            delta.replica_id = replacement.replica_id
            if replacement.HasField("timestamp"):
                delta.timestamp.CopyFrom(replacement.timestamp)
            else:
                delta.ClearField("timestamp")
        return delta

    def presence_changed(self, caller: Caller, presence: types_pb2.Presence) -> None:
        """Schedules `on_presence` (observe only: never waits, never refuses)."""
        if not self.enabled["presence"]:
            return
        assert self.hooks is not None
        if len(self._observers) >= MAX_PENDING_OBSERVERS:
            self._latency.labels("presence", "dropped").observe(0.0)
            return
        task = asyncio.get_running_loop().create_task(self._observe(self.hooks, caller, presence))
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)

    async def _observe(self, hooks: Hooks, caller: Caller, presence: types_pb2.Presence) -> None:
        try:
            await self._run("presence", hooks.on_presence(caller, presence), "")
        except RequestError as exc:
            log.warning("presence hook: %s", exc.message)

    async def _run(self, name: HookName, call: Any, collection_id: str) -> Any:
        """Awaits one hook call within its timeout; maps its outcome (see the module
        docstring). Returns what the hook returned (None when failing open)."""
        started = time.perf_counter()
        outcome = "accepted"
        try:
            async with asyncio.timeout(self.timeouts[name]):
                result = await call
            if result is not None and name == "publish":
                outcome = "replaced"
            return result
        except HookRefusal as refusal:
            outcome = "refused"
            raise refusal.to_request_error(collection_id) from None
        except TimeoutError:
            outcome = "timeout"
            return self._failed(name, HOOK_TIMEOUT, f"{name} hook timed out", collection_id)
        except grpc.aio.AioRpcError as exc:
            # A proxy service's call failed (the application down, UNIMPLEMENTED, ...):
            # one line for the operator; the caller is not told the application's address.
            outcome = "failed"
            log.error(
                "%s hook failed: the proxy call ended %s: %s",
                name,
                exc.code().name,
                " ".join((exc.details() or "").split()),
            )
            return self._failed(name, HOOK_FAILED, f"{name} hook failed", collection_id)
        except Exception as exc:
            outcome = "failed"
            self._log_failure(name, exc)
            return self._failed(name, HOOK_FAILED, f"{name} hook failed", collection_id)
        finally:
            self._latency.labels(name, outcome).observe(time.perf_counter() - started)

    def _log_failure(self, name: HookName, exc: Exception) -> None:
        """Logs a hook that raised: its traceback at most once per `TRACEBACK_INTERVAL`
        per (hook, exception type) (a client retrying a refused request calls the hook
        again every second), one line otherwise."""
        kind = (name, type(exc))
        now = time.monotonic()
        last = self._traceback_logged.get(kind)
        if last is not None and now - last < TRACEBACK_INTERVAL:
            log.error(
                "%s hook failed: %s: %s (the traceback is logged at most once a minute)",
                name,
                type(exc).__name__,
                " ".join(str(exc).split()),
            )
            return
        if len(self._traceback_logged) >= _MAX_FAILURE_KINDS:
            self._traceback_logged.clear()
        self._traceback_logged[kind] = now
        log.error("%s hook failed", name, exc_info=exc)

    def _failed(self, name: HookName, reason_code: str, message: str, collection_id: str) -> None:
        """The failure policy: "open" goes ahead (None), "closed" refuses UNAVAILABLE.
        An observer (`on_presence`) failing is only logged."""
        if name == "presence":
            log.warning("%s", message)
            return None
        if self.fail_open:
            log.warning("%s; going ahead (failure policy open)", message)
            return None
        raise RequestError(
            grpc.StatusCode.UNAVAILABLE,
            reason_code,
            message,
            collection_id=collection_id,
            retry_after_ms=HOOK_RETRY_AFTER_MS,
        )
