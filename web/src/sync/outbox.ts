/**
 * The publish outbox: every publish waits here, under its client message id, until the
 * server acknowledges it. Entries are kept by an `OutboxStore` (in memory, or in
 * IndexedDB so a reload or a closed tab loses nothing: see `indexeddb.ts`) in the order
 * they were queued; a connected client flushes them in that order while holding the
 * outbox's flush lock (Web Locks in browsers, so exactly one tab of an origin flushes a
 * shared outbox at a time). A resend after a lost connection carries the same client
 * message id, and the server's de-duplication makes it take effect once (docs/protocol.md).
 */
import { OutboxFullError } from "./errors.js";

/** One queued publish: `seq` orders entries, `delta` is the encoded `syncwire.v1.Delta`. */
export interface OutboxEntry {
  readonly seq: number;
  readonly clientMessageId: string;
  readonly collectionId: string;
  readonly delta: Uint8Array;
}

/** Where outbox entries are kept. Every method may be called from several tabs at once (IndexedDB) or one (memory). */
export interface OutboxStore {
  /** Appends an entry and returns its seq. @throws OutboxFullError when `limit` entries are stored already (checked atomically). */
  add(entry: Omit<OutboxEntry, "seq">, limit: number): Promise<number>;
  /** Up to `max` entries in seq order. */
  list(max: number): Promise<OutboxEntry[]>;
  /** Removes an entry (no-op when already gone). */
  remove(seq: number): Promise<void>;
  /** How many entries are stored. */
  count(): Promise<number>;
  /** Releases the store's resources. */
  close(): void;
}

/** What an outbox tells the other tabs sharing it (and hears from them). */
export type OutboxMessage =
  | { readonly kind: "added" }
  | { readonly kind: "acknowledged"; readonly clientMessageId: string; readonly ack: Uint8Array }
  | {
      readonly kind: "refused";
      readonly clientMessageId: string;
      readonly code: number;
      readonly message: string;
      readonly reasonCode: string;
    };

/** Coordination between the clients sharing one store: an exclusive flush lock and a message channel. */
export interface OutboxCoordinator {
  /** Runs `work` while holding the outbox's flush lock (exclusive across everyone sharing the store). */
  withFlushLock<T>(work: () => Promise<T>): Promise<T>;
  /** Tells the others sharing the store. */
  post(message: OutboxMessage): void;
  /** Hears what the others post (not one's own messages). */
  listen(listener: (message: OutboxMessage) => void): void;
  close(): void;
}

/** Entries kept in this JavaScript realm only (lost on reload): the default outside browsers. */
export class MemoryOutboxStore implements OutboxStore {
  private entries: OutboxEntry[] = [];
  private nextSeq = 1;

  async add(entry: Omit<OutboxEntry, "seq">, limit: number): Promise<number> {
    if (this.entries.length >= limit) throw new OutboxFullError(limit);
    const seq = this.nextSeq++;
    this.entries.push({ ...entry, seq });
    return seq;
  }

  async list(max: number): Promise<OutboxEntry[]> {
    return this.entries.slice(0, max);
  }

  async remove(seq: number): Promise<void> {
    this.entries = this.entries.filter((entry) => entry.seq !== seq);
  }

  async count(): Promise<number> {
    return this.entries.length;
  }

  close(): void {}
}

/** A flush lock for one realm (a promise chain) and no one to talk to. */
export class LocalCoordinator implements OutboxCoordinator {
  private tail: Promise<unknown> = Promise.resolve();

  withFlushLock<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work, work);
    this.tail = run.catch(() => undefined);
    return run;
  }

  post(): void {}

  listen(): void {}

  close(): void {}
}
