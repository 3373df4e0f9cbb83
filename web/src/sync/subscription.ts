/**
 * A subscription handle: where the client stands in one collection, kept across
 * reconnects (as the Python client's `client/subscription.py`). Its epoch and offset are
 * the position of the last delta delivered to the application; they are what the client
 * sends when it rejoins, and what it uses to drop deltas it already has.
 */
import { create } from "@bufbuild/protobuf";
import {
  RecoveryStatus,
  SubscribeSchema,
  type SetPresence,
  type Snapshot,
  type Subscribe,
  type Subscribed,
} from "../gen/syncwire/v1/sync_pb.js";
import type { Delta, UserInfo } from "../gen/syncwire/v1/types_pb.js";
import type { Recovery } from "./events.js";

const RECOVERY: Record<number, Recovery> = {
  [RecoveryStatus.UNSPECIFIED]: "none",
  [RecoveryStatus.RECOVERED]: "recovered",
  [RecoveryStatus.EPOCH_MISMATCH]: "epoch_mismatch",
  [RecoveryStatus.GAP_TOO_OLD]: "gap_too_old",
  [RecoveryStatus.OFFSET_AHEAD]: "offset_ahead",
  [RecoveryStatus.SNAPSHOT]: "snapshot",
};

/** The `Recovery` name of a `RecoveryStatus` value ("none" for unknown values). */
export function toRecovery(status: RecoveryStatus): Recovery {
  return RECOVERY[status] ?? "none";
}

/** Handle returned by `SyncClient.subscribe`. */
export class Subscription {
  private epochValue: string;
  private offsetValue: bigint;
  private hasPosition: boolean;
  private recoveryValue: Recovery = "none";
  private serverOffsetValue = 0n;
  private oldestOffsetValue = 0n;
  private activeValue = false;
  /** The link the Subscribe went out on (an opaque token), if any. */
  sentOn: object | undefined;
  /** The last presence this client set here; restored after a reconnect. */
  presence: SetPresence | undefined;
  /** Settles once the server answered the first Subscribe. */
  readonly activated: Promise<void>;
  activatedSettled = false;
  private settle!: (error?: Error) => void;

  constructor(
    readonly collectionId: string,
    readonly joinPresence: boolean,
    readonly userInfo: UserInfo | undefined,
    lastOffset: bigint | undefined,
    epoch: string,
  ) {
    this.epochValue = epoch;
    this.offsetValue = lastOffset ?? 0n;
    this.hasPosition = lastOffset !== undefined;
    this.activated = new Promise<void>((resolve, reject) => {
      this.settle = (error) => {
        if (this.activatedSettled) return;
        this.activatedSettled = true;
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    this.activated.catch(() => undefined);
  }

  /** The collection's history epoch as this client knows it. */
  get epoch(): string {
    return this.epochValue;
  }

  /** Offset of the last delta delivered (or the collection's offset when joined). */
  get offset(): bigint {
    return this.offsetValue;
  }

  /** Outcome of the latest (re)join. */
  get recovery(): Recovery {
    return this.recoveryValue;
  }

  /** The collection's latest offset when the server last answered a join. */
  get serverOffset(): bigint {
    return this.serverOffsetValue;
  }

  /** Oldest offset the server still had in history when it last answered. */
  get oldestOffset(): bigint {
    return this.oldestOffsetValue;
  }

  /** True while the server delivers this collection on the current connection. */
  get active(): boolean {
    return this.activeValue;
  }

  /** @internal What to send to (re)join: with the position, if the client has one. */
  subscribeMessage(): Subscribe {
    return create(SubscribeSchema, {
      collectionId: this.collectionId,
      joinPresence: this.joinPresence,
      epoch: this.epochValue,
      lastOffset: this.hasPosition ? this.offsetValue : undefined,
      userInfo: this.userInfo,
    });
  }

  /** @internal */
  markSent(link: object): void {
    this.sentOn = link;
    this.activeValue = false;
  }

  /** @internal The connection is gone; the next one rejoins. */
  detach(): void {
    this.sentOn = undefined;
    this.activeValue = false;
  }

  /** @internal */
  resolveActivated(error?: Error): void {
    this.settle(error);
  }

  /**
   * @internal Takes the server's answer (or unasked notice) into the position: after
   * RECOVERED or GAP_TOO_OLD the replay continues from the client's offset; after
   * SNAPSHOT the position is 0 until the Snapshot that follows sets it; after an
   * EPOCH_MISMATCH with replayed deltas the position starts just before the oldest
   * replayed one; otherwise the server's offset is the new starting point.
   */
  applyJoined(subscribed: Subscribed, solicited: boolean): void {
    const recovery = toRecovery(subscribed.recovery);
    const keep = (recovery === "recovered" || recovery === "gap_too_old") && this.hasPosition;
    if (recovery === "snapshot") {
      this.offsetValue = 0n; // the Snapshot that follows sets the position (`restore`)
    } else if (recovery === "epoch_mismatch" && subscribed.replayed > 0) {
      this.offsetValue = subscribed.oldestOffset > 0n ? subscribed.oldestOffset - 1n : 0n;
    } else if (!keep) {
      this.offsetValue = subscribed.offset;
    } else if (!solicited && subscribed.offset > this.offsetValue) {
      this.offsetValue = subscribed.offset;
    }
    this.epochValue = subscribed.epoch;
    this.hasPosition = true;
    this.recoveryValue = recovery;
    this.serverOffsetValue = subscribed.offset;
    this.oldestOffsetValue = subscribed.oldestOffset;
    if (solicited) this.activeValue = true;
  }

  /** @internal Whether `delta` is new (above the offset) in the current epoch. */
  accept(delta: Delta): boolean {
    return delta.epoch === this.epochValue && delta.offset > this.offsetValue;
  }

  /** @internal Moves the position to a delivered snapshot. */
  restore(snapshot: Snapshot): void {
    this.epochValue = snapshot.epoch;
    this.offsetValue = snapshot.offset;
    this.hasPosition = true;
  }

  /** @internal */
  advance(delta: Delta): void {
    this.epochValue = delta.epoch;
    this.offsetValue = delta.offset;
    this.hasPosition = true;
  }
}
