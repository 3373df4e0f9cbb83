/**
 * The browser test page's `SyncClient` half (imported by page.ts): one client per page,
 * driven by the Python tests through `window.syncClientTest`; everything it saw is kept
 * in `seen` for the tests to read.
 */
import { indexedDbOutbox, SyncClient, SyncError, type PublishAck } from "../../src/index.js";

const seen = {
  deltas: [] as { offset: string; epoch: string; text: string; peerId: string }[],
  recoveries: [] as { recovery: string; epoch: string; previousEpoch: string; previousOffset: string; replayed: number }[],
  states: [] as string[],
  joined: [] as string[],
  left: [] as string[],
  acks: [] as { offset: string; duplicate: boolean }[],
  errors: [] as string[],
};
let client: SyncClient | undefined;

interface StartOptions {
  readonly userId?: string;
  /** Keep the outbox in IndexedDB (shared by the tabs of the browser context). */
  readonly persistent?: boolean;
  readonly outboxLimit?: number;
  /** Every reconnect delay is ~60 s (to show that the browser's hints cut it short). */
  readonly slowBackoff?: boolean;
}

/** Creates the page's client (not connected yet) and records what it reports. */
function create(url: string, options: StartOptions = {}): SyncClient {
  client = new SyncClient({
    url,
    backoff: options.slowBackoff === true ? { baseMs: 60_000, capMs: 60_000, random: () => 0.999 } : { baseMs: 50, capMs: 500 },
    outbox: options.persistent === false ? undefined : indexedDbOutbox(url),
    outboxLimit: options.outboxLimit,
  });
  client.onStateChange((change) => seen.states.push(change.state));
  client.on("delta", (event) =>
    seen.deltas.push({
      offset: event.delta.offset.toString(),
      epoch: event.delta.epoch,
      text: new TextDecoder().decode(event.delta.delta),
      peerId: event.delta.peerId,
    }),
  );
  client.on("recovery", (event) =>
    seen.recoveries.push({
      recovery: event.recovery,
      epoch: event.epoch,
      previousEpoch: event.previousEpoch,
      previousOffset: event.previousOffset.toString(),
      replayed: event.replayed,
    }),
  );
  client.on("peerJoined", (event) => seen.joined.push(event.join.peerId));
  client.on("peerLeft", (event) => seen.left.push(event.leave.peerId));
  client.on("error", (event) => seen.errors.push(`${event.error.reasonCode}: ${event.error.message}`));
  return client;
}

async function start(url: string, collectionId: string, options: StartOptions = {}): Promise<string> {
  const client = create(url, options);
  await client.connect();
  await client.subscribe(collectionId, { joinPresence: true, userInfo: { userId: options.userId ?? "page" } });
  return client.peerId;
}

/** Publishes each text (in order, without waiting); acknowledgements land in `seen.acks`. */
function publish(collectionId: string, texts: string[]): void {
  for (const text of texts) {
    client!.publish(collectionId, new TextEncoder().encode(text)).then(
      (ack: PublishAck) => seen.acks.push({ offset: ack.offset.toString(), duplicate: ack.duplicate }),
      (error: unknown) => seen.errors.push(error instanceof SyncError ? `${error.reasonCode}: ${error.message}` : String(error)),
    );
  }
}

/**
 * Creates the client without connecting and queues each publish (its text followed by
 * `padding` zero bytes) in the outbox; outcomes land in `seen.acks` / `seen.errors`.
 */
function queue(url: string, collectionId: string, publishes: [string, number][]): void {
  create(url);
  for (const [text, padding] of publishes) {
    const data = new Uint8Array(text.length + padding);
    data.set(new TextEncoder().encode(text));
    client!.publish(collectionId, data).then(
      (ack: PublishAck) => seen.acks.push({ offset: ack.offset.toString(), duplicate: ack.duplicate }),
      (error: unknown) => seen.errors.push(error instanceof SyncError ? `${error.reasonCode}: ${error.message}` : String(error)),
    );
  }
}

function info(): { state: string; peerId: string; stats: SyncClient["stats"] } {
  return { state: client?.state ?? "none", peerId: client?.peerId ?? "", stats: { ...client!.stats } };
}

declare global {
  interface Window {
    syncClientTest: unknown;
  }
}

window.syncClientTest = { seen, start, queue, publish, info, outboxSize: () => client!.outboxSize(), reconnect: () => client!.reconnect() };
