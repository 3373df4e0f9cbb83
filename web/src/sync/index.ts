/** The `SyncClient` and its vocabulary. */
export { SyncClient } from "./client.js";
export type { PresenceOptions, PublishOptions, SubscribeOptions, SyncClientOptions } from "./client.js";
export { Backoff } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export {
  ClientClosedError,
  MessageTooLargeError,
  NotConnectedError,
  NotSubscribedError,
  OutboxFullError,
  RequestFailed,
  SyncError,
  TokenProviderError,
  TokenRefusedError,
} from "./errors.js";
export { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.js";
export { lostDeltas } from "./events.js";
export type {
  DeltaEvent,
  ErrorEvent,
  PeerJoined,
  PeerLeft,
  PresenceChanged,
  Recovery,
  RecoveryEvent,
  SnapshotEvent,
  SyncEvent,
  SyncEventOf,
  SyncEventType,
  TokenRefused,
} from "./events.js";
export { EventsOverflowError } from "./inbox.js";
export { ServerDisconnected } from "./link.js";
export { LocalCoordinator, MemoryOutboxStore } from "./outbox.js";
export { IndexedDbOutboxStore, TabCoordinator, indexedDbOutbox } from "./indexeddb.js";
export type { OutboxCoordinator, OutboxEntry, OutboxMessage, OutboxStore } from "./outbox.js";
export type { ConnectionState, StateChange } from "./state.js";
export { Subscription } from "./subscription.js";
export type { TokenProvider } from "./tokens.js";
export type { GetHistoryResponse, PublishAck, Snapshot, SnapshotStored } from "../gen/syncwire/v1/sync_pb.js";
export { CrdtType, PayloadEncoding, PresenceAction } from "../gen/syncwire/v1/types_pb.js";
export type { Delta, PeerJoin, PeerLeave, Presence, ServerInfo, UserInfo } from "../gen/syncwire/v1/types_pb.js";
