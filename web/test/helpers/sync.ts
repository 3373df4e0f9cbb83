/** Sync-stream helpers for the tests: a request queue and response waiting. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SyncRequestSchema, SyncResponse } from "../../src/gen/syncwire/v1/sync_pb.js";

export type SyncRequestInit = MessageInitShape<typeof SyncRequestSchema>;

/** An async iterable of requests fed by `push`, ended by `close`. */
export class RequestQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift()!;
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/** Reads responses until one satisfies `match` (bounded by the test's own timeout). */
export async function readUntil(
  responses: AsyncIterator<SyncResponse>,
  match: (response: SyncResponse) => boolean,
): Promise<SyncResponse> {
  for (;;) {
    const next = await responses.next();
    if (next.done === true) throw new Error("the stream ended first");
    if (match(next.value)) return next.value;
  }
}
