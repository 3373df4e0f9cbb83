/**
 * What `SyncClient.events()` yields and `SyncClient.on` calls back with: a
 * discriminated union on `type`, one case per event of the Python client
 * (`client/events.py`). Deltas and presence carry the server's protobuf messages.
 */
import type { Snapshot } from "../gen/syncwire/v1/sync_pb.js";
import type { Delta, PeerJoin, PeerLeave, Presence } from "../gen/syncwire/v1/types_pb.js";
import type { SyncError, TokenRefusedError } from "./errors.js";

/**
 * Outcome of (re)joining a collection; mirrors `syncwire.v1.RecoveryStatus`.
 * - "none": no position was given, the subscription started live;
 * - "recovered": everything missed was replayed, no gap;
 * - "epoch_mismatch": the server's history was lost or reset: resynchronise from your own state;
 * - "gap_too_old": history no longer reaches back far enough: deltas in between are gone;
 * - "offset_ahead": the client knew more than the server (its history was reset);
 * - "snapshot": history could not cover the position, the collection's snapshot could: a
 *   `SnapshotEvent` comes next (replace your state with it), then every later delta.
 */
export type Recovery = "none" | "recovered" | "epoch_mismatch" | "gap_too_old" | "offset_ahead" | "snapshot";

/** True when deltas may be missing and the application must resynchronise. */
export function lostDeltas(recovery: Recovery): boolean {
  return recovery === "epoch_mismatch" || recovery === "gap_too_old" || recovery === "offset_ahead";
}

/** A delta of a subscribed collection, delivered once, in offset order. */
export interface DeltaEvent {
  readonly type: "delta";
  readonly collectionId: string;
  readonly delta: Delta;
}

/**
 * The collection's snapshot (application bytes at `snapshot.offset`, in `snapshot.epoch`),
 * after a join answered with recovery "snapshot": replace your state with it; the deltas
 * after its offset follow.
 */
export interface SnapshotEvent {
  readonly type: "snapshot";
  readonly collectionId: string;
  readonly snapshot: Snapshot;
}

/** A peer joined the presence of a subscribed collection. */
export interface PeerJoined {
  readonly type: "peerJoined";
  readonly collectionId: string;
  readonly join: PeerJoin;
}

/** A peer left the presence of a subscribed collection (`leave.reason` says why, e.g. a dead connection). */
export interface PeerLeft {
  readonly type: "peerLeft";
  readonly collectionId: string;
  readonly leave: PeerLeave;
}

/** A peer updated its presence state (for example "typing"). */
export interface PresenceChanged {
  readonly type: "presenceChanged";
  readonly collectionId: string;
  readonly presence: Presence;
}

/**
 * The server's answer when a collection was rejoined after a reconnect, or its unasked
 * notice that the collection's history moved on (`unsolicited`). Offsets are bigints.
 */
export interface RecoveryEvent {
  readonly type: "recovery";
  readonly collectionId: string;
  readonly recovery: Recovery;
  /** The collection's epoch now. */
  readonly epoch: string;
  /** The collection's latest offset when the server answered. */
  readonly offset: bigint;
  /** The epoch the client had. */
  readonly previousEpoch: string;
  /** The last offset the client had received. */
  readonly previousOffset: bigint;
  /** How many missed deltas the server replays (they follow this event). */
  readonly replayed: number;
  /** Oldest offset the server still has in history. */
  readonly oldestOffset: bigint;
  /** True for a notice the server pushed without a resubscribe. */
  readonly unsolicited: boolean;
  /** With recovery "snapshot": the offset of the snapshot that follows; 0n otherwise. */
  readonly snapshotOffset: bigint;
}

/**
 * A server error nobody awaits: a presence update refused, a subscription ended by the
 * server (a resubscribe refused for good, or PERMISSION_DENIED pushed for it), a publish queued by
 * an earlier page load refused for good.
 */
export interface ErrorEvent {
  readonly type: "error";
  readonly error: SyncError;
  /** What was refused: "subscribe", "presence", "publish" or "" (unknown). */
  readonly request: "subscribe" | "presence" | "publish" | "";
}

/** Terminal: the server refused the provider's token twice in a row; the client is "offline". */
export interface TokenRefused {
  readonly type: "tokenRefused";
  readonly error: TokenRefusedError;
}

/** Everything `SyncClient.events()` yields. */
export type SyncEvent = DeltaEvent | SnapshotEvent | PeerJoined | PeerLeft | PresenceChanged | RecoveryEvent | ErrorEvent | TokenRefused;

/** The event type names, for `SyncClient.on(type, callback)`. */
export type SyncEventType = SyncEvent["type"];

/** The event of one type name. */
export type SyncEventOf<T extends SyncEventType> = Extract<SyncEvent, { type: T }>;
