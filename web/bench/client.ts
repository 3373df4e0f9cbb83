/**
 * The Node side of `python -m bench --scenario web`: one WebSocket transport, measured
 * the same way as its Python twin (bench/clients/web_reference.py) against the same server.
 *
 *   node dist/bench/client.js unary  URL SECONDS CONCURRENCY COLLECTION deflate|plain
 *   node dist/bench/client.js fanout URL SECONDS SUBSCRIBERS COLLECTION deflate|plain
 *
 * Prints one JSON line: {"rate": per second, "count": calls or deliveries, "errors": n}.
 * unary: CONCURRENCY callers loop on Publish (256-byte deltas) for SECONDS.
 * fanout: SUBSCRIBERS Sync streams subscribe to COLLECTION; 4 callers publish for SECONDS;
 * rate = deliveries / (last delivery - first publish), once every subscriber has them all.
 */
import { setMaxListeners } from "node:events";
import { createClient } from "@connectrpc/connect";
import { createWebSocketTransport, SyncService } from "../src/node.js";

const [mode, url, secondsText, widthText, collectionId, compression] = process.argv.slice(2);
const seconds = Number(secondsText);
const width = Number(widthText);
const transport = createWebSocketTransport({ baseUrl: url!, perMessageDeflate: compression === "deflate" });
const client = createClient(SyncService, transport);
const payload = new Uint8Array(256).fill(7);

async function callers(count: number, until: number): Promise<{ calls: number; errors: number; first: number }> {
  let calls = 0;
  let errors = 0;
  const first = performance.now();
  await Promise.all(
    Array.from({ length: count }, async () => {
      while (performance.now() < until) {
        try {
          await client.publish({ delta: { collectionId, delta: payload } });
          calls++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { calls, errors, first };
}

async function unary(): Promise<void> {
  await client.getServerInfo({}); // connect first
  const started = performance.now();
  const { calls, errors } = await callers(width, started + seconds * 1000);
  const elapsed = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ rate: calls / elapsed, count: calls, errors }));
}

async function fanout(): Promise<void> {
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per subscriber stream
  const received = new Array<number>(width).fill(0);
  let lastDelivery = 0;
  let subscribed = 0;
  let allSubscribed!: () => void;
  const ready = new Promise<void>((resolve) => (allSubscribed = resolve));
  let expected = Infinity;
  let allReceived!: () => void;
  const finished = new Promise<void>((resolve) => (allReceived = resolve));
  const streams = Array.from({ length: width }, async (_, index) => {
    async function* requests() {
      yield { requestId: 1n, kind: { case: "subscribe", value: { collectionId } } } as const;
      await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
    }
    for await (const response of client.sync(requests(), { signal: stop.signal })) {
      if (response.kind.case === "subscribed" && ++subscribed === width) allSubscribed();
      if (response.kind.case === "delta") {
        received[index]!++;
        lastDelivery = performance.now();
        if (received.every((count) => count >= expected)) allReceived();
      }
    }
  });
  await ready;
  const started = performance.now();
  const { calls, errors } = await callers(4, started + seconds * 1000);
  expected = calls;
  if (received.every((count) => count >= expected)) allReceived();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([finished, new Promise((resolve) => (timer = setTimeout(resolve, 60_000)))]);
  clearTimeout(timer);
  const deliveries = received.reduce((sum, count) => sum + count, 0);
  stop.abort();
  await Promise.allSettled(streams);
  const missing = width * calls - deliveries;
  console.log(JSON.stringify({ rate: deliveries / ((lastDelivery - started) / 1000), count: deliveries, errors: errors + missing }));
}

await (mode === "unary" ? unary() : fanout());
transport.close();
