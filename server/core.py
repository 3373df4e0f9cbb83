"""The transport-free heart of the server: config, broker, sessions and their upkeep.

`SyncCore` is what every transport (gRPC servicer, WebSocket adapter via the same
servicer, legacy JSON handler) shares. It admits sessions, validates and publishes
deltas, sends heartbeats, expires idle sessions and ends every session on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

import grpc

from syncwire.v1 import sync_pb2, types_pb2
from wire.tasks import cancel_and_wait

from . import __version__
from .admin_commands import REVOKED, AdminCommands
from .auth import (
    Action,
    Authenticator,
    Principal,
    bearer_token,
    forbidden,
    handshake_token,
    unauthenticated,
)
from .broker import Broker, BrokerError, MemoryBroker
from .clock import now_timestamp
from .config import ServerConfig
from .errors import RequestError, validate_collection_id
from .event_queue import SessionEnd
from .hooks import Caller, HookRunner, Hooks
from .metrics import ServerMetrics
from .ratelimit import AddressCounter, RateLimiter, peer_host
from .revocations import Revocations
from .session import Session

log = logging.getLogger(__name__)

FEATURES = ("presence", "history", "recovery", "idempotent-publish", "binary-ack", "legacy-json")


class SessionRegistry:
    """The sessions connected to this node, bounded by `max_connections` in all and by
    `max_per_address` per client IP address (0 = unlimited)."""

    def __init__(self, max_connections: int, max_per_address: int = 0) -> None:
        self.max_connections = max_connections
        self._sessions: dict[str, Session] = {}
        self._addresses = AddressCounter(max_per_address)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._sessions.values()))

    def admit(self, session: Session) -> None:
        """Registers `session`; raises RequestError(RESOURCE_EXHAUSTED) with
        "too_many_connections" at `max_connections` or "too_many_connections_per_address" at the
        per-address limit (both with retry_after_ms 1000).
        """
        if len(self._sessions) >= self.max_connections:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too_many_connections",
                f"server is at its connection limit ({self.max_connections})",
                retry_after_ms=1000,
            )
        address = peer_host(session.peer_address)
        if self._addresses.full(address):
            assert address is not None
            raise self._addresses.refusal(address)
        self._sessions[session.peer_id] = session
        self._addresses.add(address)

    def remove(self, session: Session) -> None:
        """Unregisters `session` (unknown sessions are ignored)."""
        if self._sessions.pop(session.peer_id, None) is not None:
            self._addresses.remove(peer_host(session.peer_address))

    def sessions(self) -> list[Session]:
        """A snapshot of the registered sessions."""
        return list(self._sessions.values())


def create_broker(config: ServerConfig) -> Broker:
    """The broker named by `config.broker`."""
    if config.broker != "memory://":
        from .broker.redis import RedisBroker

        return RedisBroker(
            config.broker,
            history_size=config.history_size,
            history_ttl=config.history_ttl,
            dedupe_ttl=config.dedupe_ttl,
            presence_ttl=max(config.idle_timeout, 3 * config.heartbeat_interval),
            durable=config.broker_durable,
            op_timeout=config.broker_timeout,
        )
    return MemoryBroker(
        history_size=config.history_size,
        history_ttl=config.history_ttl,
        dedupe_ttl=config.dedupe_ttl,
    )


class SyncCore:
    """Shared server state and behaviour; one per server process."""

    def __init__(
        self, config: ServerConfig, broker: Broker | None = None, hooks: Hooks | None = None
    ) -> None:
        """`hooks`: the application's hooks (`server.hooks`), None for none."""
        self.config = config
        self.broker = broker if broker is not None else create_broker(config)
        self.registry = SessionRegistry(config.max_connections, config.max_connections_per_address)
        self.authenticator = Authenticator.from_config(config)
        self.rate_limiter = RateLimiter.from_config(config)
        self.metrics = ServerMetrics(self.registry.sessions)
        self.hooks = HookRunner(hooks, config, self.metrics)
        self.revocations = Revocations()
        self.hold_clock: Callable[[], float] = time.monotonic
        """Monotonic seconds the sessions' publish holds expire by (`PublishHolds`);
        tests replace it before sessions connect."""
        self.admin = AdminCommands(self)
        self.server_id = str(uuid.uuid4())
        self._upkeep: asyncio.Task[None] | None = None
        self._shutting_down = False

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Starts the broker and the upkeep task (heartbeats, idle checks, maintenance)."""
        await self.broker.start()
        self._upkeep = asyncio.create_task(self._upkeep_loop(), name="syncwire-upkeep")

    async def stop(self) -> None:
        """Stops the upkeep task and closes the broker."""
        if self._upkeep is not None:
            await cancel_and_wait(self._upkeep, log, "the upkeep loop")
            self._upkeep = None
        await self.hooks.close()
        await self.admin.detach()
        await self.broker.close()

    def begin_shutdown(self, reason: str = "server shutting down") -> None:
        """Tells every session the server is going away; they end with UNAVAILABLE."""
        self._shutting_down = True
        end = SessionEnd(grpc.StatusCode.UNAVAILABLE, reason, reconnect=True, label="shutdown")
        for session in self.registry.sessions():
            session.end(end)

    @property
    def shutting_down(self) -> bool:
        """True once `begin_shutdown` was called."""
        return self._shutting_down

    # ---------------------------------------------------------------- sessions

    def open_session(
        self, *, transport: str, peer_address: str, principal: Principal | None = None
    ) -> Session:
        """Creates and admits a session; raises RequestError when the server is full or
        shutting down. A session with a principal ends (UNAUTHENTICATED) when its token
        expires."""
        if self._shutting_down:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE, "shutting_down", "server is shutting down"
            )
        session = Session(self, transport=transport, peer_address=peer_address)
        self.registry.admit(session)
        self.metrics.sessions_opened.labels(transport).inc()
        authenticator = self.authenticator
        if principal is not None and authenticator is not None:
            session.authorize_until(
                principal, authenticator.deadline(principal), authenticator.clock()
            )
        return session

    async def connect(
        self, *, transport: str, peer_address: str, principal: Principal | None = None
    ) -> Session:
        """`open_session`, then the application's connect hook: a refused (or, failing
        closed, failed) connect closes the session again and raises RequestError."""
        session = self.open_session(
            transport=transport, peer_address=peer_address, principal=principal
        )
        if not self.hooks.enabled["connect"]:
            return session
        try:
            session.user_info = await self.hooks.connect(session.caller())
            if session.principal is None and self.revocations.refuses_user(
                session.user_id, self.revocation_clock()
            ):
                raise unauthenticated(REVOKED, "user revoked")
        except BaseException:
            await session.close("refused")
            raise
        return session

    def server_info(self) -> types_pb2.ServerInfo:
        """The `ServerInfo` sent in `Welcome` and by GetServerInfo: version, limits,
        `FEATURES`, heartbeat interval and idle timeout (whole seconds, at least 1), the
        protocol version, this process's server id and `publish_holds` (sessions keep
        publish order per collection across refusals for now, `server.publish_order`).
        """
        config = self.config
        return types_pb2.ServerInfo(
            version=__version__,
            max_connections=config.max_connections,
            features=FEATURES,
            heartbeat_interval_seconds=max(1, round(config.heartbeat_interval)),
            protocol_version=types_pb2.PROTOCOL_VERSION_1,
            max_message_bytes=config.max_message_bytes,
            idle_timeout_seconds=max(1, round(config.idle_timeout)),
            server_id=self.server_id,
            publish_holds=True,
        )

    # -------------------------------------------------------------- behaviour

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal | None:
        """The principal of a call's `authorization: Bearer` metadata; None while
        authentication is off. Raises RequestError(UNAUTHENTICATED)."""
        if self.authenticator is None:
            return None
        return self.check_revoked(self.authenticator.authenticate(bearer_token(metadata)))

    def authenticate_handshake(self, path: str, headers: Mapping[str, str]) -> Principal | None:
        """`authenticate` for a legacy WebSocket handshake: the `Authorization` header
        (lower-case header names) or the `token` query parameter of `path`."""
        if self.authenticator is None:
            return None
        return self.check_revoked(
            self.authenticator.authenticate(handshake_token(path, headers))
        )

    def check_revoked(self, principal: Principal) -> Principal:
        """`principal`, unless its token or user is revoked (admin RevokeToken): then
        raises RequestError(UNAUTHENTICATED, "token_revoked")."""
        if self.revocations and self.authenticator is not None:
            if self.revocations.refuses(principal, self.authenticator.clock()):
                raise unauthenticated(REVOKED, "token revoked")
        return principal

    def revocation_clock(self) -> float:
        """Now, in POSIX seconds, on the clock revocations are kept by (the
        authenticator's, which tests may inject; the system's without authentication)."""
        return self.authenticator.clock() if self.authenticator is not None else time.time()

    def end_revoked_sessions(self) -> int:
        """Ends (UNAUTHENTICATED, no reconnect advised) the sessions revoked now: those
        whose token is revoked ("token revoked") and, without a token, those whose user
        id from the connect hook is ("user revoked"); returns how many."""
        if not self.revocations:
            return 0
        now = self.revocation_clock()
        ended = 0
        for session in self.registry.sessions():
            principal = session.principal
            if principal is not None:
                revoked = self.revocations.refuses(principal, now)
            else:
                revoked = self.revocations.refuses_user(session.user_id, now)
            if revoked:
                what = "token revoked" if principal is not None else "user revoked"
                session.end(
                    SessionEnd(
                        grpc.StatusCode.UNAUTHENTICATED, what, reconnect=False, label=REVOKED
                    )
                )
                ended += 1
        return ended

    def authorize(self, principal: Principal | None, action: Action, collection_id: str) -> None:
        """Raises RequestError(PERMISSION_DENIED) when `principal` may not `action`
        ("subscribe" or "publish") the collection. Without authentication configured
        everything is allowed."""
        if self.authenticator is None:
            return
        if principal is None:  # a transport forgot to authenticate: refuse, never allow
            raise unauthenticated("missing_token", "missing token")
        if not principal.may(action, collection_id):
            raise forbidden(action, collection_id)

    def charge(self, peer_address: str, size: int) -> None:
        """Counts one client message of `size` bytes against the connection's rate
        limit; raises RequestError(RESOURCE_EXHAUSTED, "rate_limited") beyond it."""
        if self.rate_limiter is not None:
            self.rate_limiter.charge(peer_address, size)

    async def publish(
        self,
        delta: types_pb2.Delta,
        *,
        caller: Caller | None = None,
        principal: Principal | None = None,
    ) -> sync_pb2.PublishAck:
        """Validates, runs the publish hook on, and publishes a delta on behalf of
        `caller` (its `peer_id` goes into the delta; None: the server itself, an empty
        peer id, no permission check and no hook); returns the ack. Raises
        RequestError (invalid, forbidden, refused by the hook) or BrokerError; a refused
        delta never reaches the broker, so it gets no offset."""
        validate_collection_id(delta.collection_id)
        if caller is not None:  # the server's own publishes need no permission
            self.authorize(principal, "publish", delta.collection_id)
        if delta.offset or delta.epoch or delta.HasField("server_time"):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "server_fields_set",
                "offset, epoch and server_time are assigned by the server; leave them unset",
                collection_id=delta.collection_id,
            )
        delta.peer_id = "" if caller is None else caller.peer_id
        if caller is not None and self.hooks.enabled["publish"]:
            delta = await self.hooks.publish(caller, delta)
        try:
            result = await self.broker.publish(delta)
        except BrokerError:
            self.metrics.broker_errors.inc()
            raise
        if result.duplicate:
            self.metrics.duplicates.inc()
        else:
            self.metrics.deltas_published.inc()
            self.metrics.delta_bytes_published.inc(len(delta.delta))
        return result.to_ack(delta.client_message_id)

    async def put_snapshot(
        self,
        collection_id: str,
        offset: int,
        data: bytes,
        epoch: str = "",
        *,
        principal: Principal | None = None,
    ) -> sync_pb2.SnapshotStored:
        """Stores `data` as the collection's snapshot at `offset` of `epoch` (empty: the
        current epoch): the state including every delta up to `offset`. Subscribers
        whose position history cannot cover get it (RECOVERY_STATUS_SNAPSHOT). With a
        `principal` (a client's PutSnapshot) it must be allowed to publish there.
        Raises RequestError: INVALID_ARGUMENT `snapshot_too_large` (over
        `max_snapshot_bytes`), FAILED_PRECONDITION `snapshot_epoch_mismatch` /
        `snapshot_outdated` (a newer snapshot is stored), OUT_OF_RANGE
        `snapshot_offset_ahead` (beyond the latest offset); or BrokerError."""
        validate_collection_id(collection_id)
        if principal is not None:
            self.authorize(principal, "publish", collection_id)
        limit = self.config.snapshot_limit
        if len(data) > limit:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "snapshot_too_large",
                f"snapshot is {len(data)} bytes; the limit is {limit}",
                collection_id=collection_id,
            )
        outcome, current, at = await self.broker.put_snapshot(collection_id, epoch, offset, data)
        if outcome == "stored":
            return sync_pb2.SnapshotStored(collection_id=collection_id, epoch=current, offset=at)
        code, message = {
            "epoch_mismatch": (
                grpc.StatusCode.FAILED_PRECONDITION,
                f"epoch {epoch!r} is not the collection's current epoch {current!r}",
            ),
            "offset_ahead": (
                grpc.StatusCode.OUT_OF_RANGE,
                f"offset {offset} is beyond the collection's latest offset {at}",
            ),
            "outdated": (
                grpc.StatusCode.FAILED_PRECONDITION,
                f"a newer snapshot (offset {at}) is stored",
            ),
        }[outcome]
        raise RequestError(code, f"snapshot_{outcome}", message, collection_id=collection_id)

    # ------------------------------------------------------------------ upkeep

    def _tick_seconds(self) -> float:
        config = self.config
        return min(max(min(config.heartbeat_interval, config.idle_timeout) / 4, 0.05), 5.0)

    async def _upkeep_loop(self) -> None:
        """Heartbeats every interval, idle expiry, presence refresh, broker upkeep."""
        next_beat = time.monotonic() + self.config.heartbeat_interval
        while True:
            await asyncio.sleep(self._tick_seconds())
            now = time.monotonic()
            try:
                self.metrics.broker_up.set(1 if self.broker.healthy else 0)
                self.metrics.refresh()
                self._expire_idle(now)
                self._expire_tokens()
                if now >= next_beat:
                    next_beat = now + self.config.heartbeat_interval
                    self.send_heartbeats()
                    await self.broker.presence_refresh(
                        [(c, s.peer_id) for s in self.registry.sessions() for c in s.present_in]
                    )
                    await self.broker.maintenance()
                    await self.admin.upkeep()
                    self.revocations.prune(self.revocation_clock())
            except Exception:
                log.exception("upkeep failed; retrying next tick")

    def _expire_idle(self, now: float) -> None:
        """Heartbeat silence: a session that sent nothing for `idle_timeout` is released
        at once (its transport may be stuck writing to a dead peer)."""
        limit = now - self.config.idle_timeout
        for session in self.registry.sessions():
            if session.last_seen < limit:
                session.abandon(
                    SessionEnd(
                        grpc.StatusCode.UNAVAILABLE,
                        f"idle timeout: nothing received for {self.config.idle_timeout:g} s",
                        label="idle_timeout",
                    )
                )

    def _expire_tokens(self) -> None:
        """Ends sessions whose token deadline passed on the authenticator's clock (the
        per-session timer covers the real clock; this covers an injected one)."""
        if self.authenticator is None:
            return
        now = self.authenticator.clock()
        for session in self.registry.sessions():
            if session.expires_at is not None and now > session.expires_at:
                session.expire_token()

    def send_heartbeats(self) -> None:
        """Delivers one shared `Heartbeat{timestamp, server_id}` to every session (the
        upkeep task calls it every `heartbeat_interval` seconds).
        """
        beat = sync_pb2.SyncResponse(
            heartbeat=types_pb2.Heartbeat(timestamp=now_timestamp(), server_id=self.server_id)
        )
        for session in self.registry.sessions():
            session.deliver(beat)
