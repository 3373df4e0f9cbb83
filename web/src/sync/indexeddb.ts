/**
 * A browser outbox that survives reloads and is shared by the tabs of an origin:
 * entries in IndexedDB (database `syncwire-outbox:<name>`, one object store keyed by an
 * auto-incremented seq, so the order of queueing is the order of sending), the flush
 * lock a Web Lock (`navigator.locks`, exactly one tab flushes at a time; a tab that
 * closes or reloads releases it), and acknowledgements told to the tab that queued the
 * publish over a BroadcastChannel. A full outbox is checked in the same IndexedDB
 * transaction as the insert, so tabs racing for the last place cannot both get it.
 */
import type { SyncClientOptions } from "./client.js";
import { Code } from "@connectrpc/connect";
import { OutboxFullError, SyncError } from "./errors.js";
import { LocalCoordinator, type OutboxCoordinator, type OutboxEntry, type OutboxMessage, type OutboxStore } from "./outbox.js";

const STORE = "entries";

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function storageError(what: string, error: unknown): SyncError {
  return new SyncError(Code.Unavailable, `IndexedDB outbox: ${what} failed: ${String(error)}`, "outbox_storage");
}

/** Outbox entries in IndexedDB, shared by every tab of the origin that opens the same name. */
export class IndexedDbOutboxStore implements OutboxStore {
  private readonly db: Promise<IDBDatabase>;

  constructor(readonly name: string) {
    const open = indexedDB.open(`syncwire-outbox:${name}`, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: "seq", autoIncrement: true });
    this.db = request(open);
    this.db.catch(() => undefined);
  }

  async add(entry: Omit<OutboxEntry, "seq">, limit: number): Promise<number> {
    const db = await this.db;
    return await new Promise<number>((resolve, reject) => {
      const tx = db.transaction(STORE, "readwrite");
      const store = tx.objectStore(STORE);
      let seq = 0;
      let full = false;
      const counting = store.count();
      counting.onsuccess = () => {
        if (counting.result >= limit) {
          full = true;
          tx.abort();
          return;
        }
        const adding = store.add({ ...entry });
        adding.onsuccess = () => (seq = adding.result as number);
      };
      tx.oncomplete = () => resolve(seq);
      tx.onabort = () => reject(full ? new OutboxFullError(limit) : storageError("add", tx.error));
    });
  }

  async list(max: number): Promise<OutboxEntry[]> {
    const db = await this.db;
    return await request(db.transaction(STORE, "readonly").objectStore(STORE).getAll(null, max) as IDBRequest<OutboxEntry[]>);
  }

  async remove(seq: number): Promise<void> {
    const db = await this.db;
    await new Promise<void>((resolve, reject) => {
      const tx = db.transaction(STORE, "readwrite");
      tx.objectStore(STORE).delete(seq);
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(storageError("remove", tx.error));
    });
  }

  async count(): Promise<number> {
    const db = await this.db;
    return await request(db.transaction(STORE, "readonly").objectStore(STORE).count());
  }

  close(): void {
    void this.db.then((db) => db.close(), () => undefined);
  }
}

/** The flush lock as a Web Lock and the tabs' messages over a BroadcastChannel (a local lock where Web Locks are missing). */
export class TabCoordinator implements OutboxCoordinator {
  private readonly channel: BroadcastChannel;
  private readonly fallback = new LocalCoordinator();

  constructor(private readonly name: string) {
    this.channel = new BroadcastChannel(`syncwire-outbox:${name}`);
  }

  withFlushLock<T>(work: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (locks === undefined) return this.fallback.withFlushLock(work);
    // The lock's promise resolves with what `work` resolves with.
    return locks.request(`syncwire-outbox-flush:${this.name}`, work) as unknown as Promise<T>;
  }

  post(message: OutboxMessage): void {
    this.channel.postMessage(message);
  }

  listen(listener: (message: OutboxMessage) => void): void {
    this.channel.onmessage = (event: MessageEvent<OutboxMessage>) => listener(event.data);
  }

  close(): void {
    this.channel.close();
  }
}

/**
 * The `outbox` option of a browser `SyncClient` whose queued publishes survive a reload
 * and are shared by the origin's tabs: `new SyncClient({ url, outbox: indexedDbOutbox(url) })`.
 * Use one name per server (the default outbox of `url` is a good one).
 */
export function indexedDbOutbox(name: string): NonNullable<SyncClientOptions["outbox"]> {
  return { store: new IndexedDbOutboxStore(name), coordinator: new TabCoordinator(name) };
}
