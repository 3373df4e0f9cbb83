/** Encoded records waiting for the socket, and how they are coalesced into batches. */
import { concatBytes } from "./codec.js";

/**
 * Records queued while the socket is busy are coalesced into one WebSocket message up
 * to this size; a single larger record travels alone (docs/protocol.md).
 */
export const BATCH_BYTES = 64 * 1024;

/** A FIFO of encoded frame records with a running byte count, for back-pressure. */
export class Outbox {
  private records: Uint8Array[] = [];
  private head = 0;
  private pending = 0;

  constructor(private readonly batchBytes: number = BATCH_BYTES) {}

  /** Bytes queued and not yet handed to the socket. */
  get pendingBytes(): number {
    return this.pending;
  }

  /** Whether anything is queued. */
  get empty(): boolean {
    return this.head >= this.records.length;
  }

  /** Queues one encoded record. */
  push(record: Uint8Array): void {
    this.records.push(record);
    this.pending += record.length;
  }

  /**
   * The next WebSocket message: queued records joined, in order, while they fit in the
   * batch size (the first always goes); undefined when nothing is queued.
   */
  takeBatch(): Uint8Array | undefined {
    if (this.empty) return undefined;
    const parts = [this.records[this.head++]!];
    let size = parts[0]!.length;
    while (this.head < this.records.length && size + this.records[this.head]!.length <= this.batchBytes) {
      const record = this.records[this.head++]!;
      parts.push(record);
      size += record.length;
    }
    if (this.head === this.records.length) {
      this.records = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.records = this.records.slice(this.head);
      this.head = 0;
    }
    this.pending -= size;
    return concatBytes(parts);
  }
}
