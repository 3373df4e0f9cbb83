/** Event fan-out: callbacks called at once, async iterators fed through bounded buffers. */
import { Code } from "@connectrpc/connect";
import { SyncError } from "./errors.js";
import type { SyncEvent, SyncEventOf, SyncEventType } from "./events.js";

/** An `events()` iterator fell more than its buffer behind; later events were not kept for it (reason "events_overflow"). */
export class EventsOverflowError extends SyncError {
  override name = "EventsOverflowError";
  constructor(limit: number) {
    super(
      Code.ResourceExhausted,
      `events() fell more than ${limit} events behind; later events were dropped (re-read the collections and start a new iterator)`,
      "events_overflow",
    );
  }
}

interface Reader {
  readonly items: SyncEvent[];
  overflowed: boolean;
  wake: (() => void) | undefined;
}

/** Delivers each event to every callback and every open iterator, in order. */
export class Inbox {
  private readonly callbacks = new Map<SyncEventType, Set<(event: SyncEvent) => void>>();
  private readonly readers = new Set<Reader>();
  private closed = false;

  constructor(private readonly limit: number) {}

  put(event: SyncEvent): void {
    for (const callback of [...(this.callbacks.get(event.type) ?? [])]) {
      try {
        callback(event);
      } catch (error) {
        console.error(`syncwire: ${event.type} callback failed`, error);
      }
    }
    for (const reader of this.readers) {
      if (reader.overflowed) continue;
      if (reader.items.length >= this.limit) reader.overflowed = true;
      else reader.items.push(event);
      reader.wake?.();
    }
  }

  on<T extends SyncEventType>(type: T, callback: (event: SyncEventOf<T>) => void): () => void {
    let set = this.callbacks.get(type);
    if (set === undefined) this.callbacks.set(type, (set = new Set()));
    const wrapped = callback as (event: SyncEvent) => void;
    set.add(wrapped);
    return () => set.delete(wrapped);
  }

  close(): void {
    this.closed = true;
    for (const reader of this.readers) reader.wake?.();
  }

  async *iterate(): AsyncGenerator<SyncEvent, void, undefined> {
    const reader: Reader = { items: [], overflowed: false, wake: undefined };
    this.readers.add(reader);
    try {
      for (;;) {
        const next = reader.items.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (reader.overflowed) throw new EventsOverflowError(this.limit);
        if (this.closed) return;
        await new Promise<void>((resolve) => (reader.wake = resolve));
        reader.wake = undefined;
      }
    } finally {
      this.readers.delete(reader);
    }
  }
}
