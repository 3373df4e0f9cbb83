"""The syncwire client library.

`SyncClient` is the high-level typed API (subscribe, publish, presence, events, state)
over any channel: native gRPC, the WebSocket framing (`WebSocketChannel`) or an
in-process server (`InProcessChannel`).
"""

from .backoff import Backoff
from .config import ClientConfig
from .endpoints import ChannelFactory, ChannelSettings, Endpoint, Transport, open_channel
from .errors import (
    ClientClosedError,
    ConnectionLost,
    HeartbeatTimeout,
    MessageTooLargeError,
    NotConnectedError,
    NotSubscribedError,
    OutboxFullError,
    RequestFailed,
    SendBufferFullError,
    ServerDisconnected,
    ServerUnreachableError,
    SwitchingEndpoint,
    SyncError,
    TokenRefusedError,
)
from .events import (
    DeltaEvent,
    ErrorEvent,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    Recovery,
    RecoveryEvent,
    SnapshotEvent,
    SyncEvent,
    TokenRefused,
)
from .publishing import PendingPublish
from .state import ConnectionState, StateChange, StateChangesOverflow
from .stats import ClientStats
from .subscription import Subscription
from .sync_client import SyncClient
from .tokens import Clock, SystemClock, TokenProvider, TokenProviderError

__all__ = [
    "Backoff",
    "ChannelFactory",
    "ChannelSettings",
    "ClientClosedError",
    "ClientConfig",
    "ClientStats",
    "Clock",
    "ConnectionLost",
    "ConnectionState",
    "DeltaEvent",
    "Endpoint",
    "ErrorEvent",
    "HeartbeatTimeout",
    "MessageTooLargeError",
    "NotConnectedError",
    "NotSubscribedError",
    "OutboxFullError",
    "PeerJoined",
    "PeerLeft",
    "PendingPublish",
    "PresenceChanged",
    "Recovery",
    "RecoveryEvent",
    "RequestFailed",
    "SendBufferFullError",
    "ServerDisconnected",
    "ServerUnreachableError",
    "SnapshotEvent",
    "StateChange",
    "StateChangesOverflow",
    "Subscription",
    "SwitchingEndpoint",
    "SyncClient",
    "SyncError",
    "SyncEvent",
    "SystemClock",
    "TokenProvider",
    "TokenProviderError",
    "TokenRefused",
    "TokenRefusedError",
    "Transport",
    "open_channel",
]
