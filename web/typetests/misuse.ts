/**
 * Misuse the type checker must reject: `tsc --noEmit -p typetests` fails if any line
 * marked `@ts-expect-error` compiles (TS2578 "Unused '@ts-expect-error' directive").
 * Each case is one mistake a caller could make with the generated client over this
 * transport; the unmarked lines show the correct use compiles.
 */
import { createClient } from "@connectrpc/connect";
import { createWebSocketTransport, SyncService } from "../src/index.js";
import { createWebSocketTransport as createNodeTransport } from "../src/node.js";
import { CollectionIdType } from "./fixtures.js";

const transport = createWebSocketTransport({ baseUrl: "ws://127.0.0.1:1" });
const client = createClient(SyncService, transport);
createNodeTransport({ baseUrl: "ws://127.0.0.1:1" });

// @ts-expect-error baseUrl is required
createWebSocketTransport({});
// @ts-expect-error baseUrl is a string
createWebSocketTransport({ baseUrl: 8080 });
// @ts-expect-error unknown option
createWebSocketTransport({ baseUrl: "ws://x", maxRecieveBytes: 1 });
// @ts-expect-error a WebSocket class, not a URL
createWebSocketTransport({ baseUrl: "ws://x", webSocket: "ws://x" });

export async function misuse(): Promise<void> {
  await client.publish({ delta: { collectionId: "c", delta: new Uint8Array(1) } });
  // @ts-expect-error unknown method
  await client.publsh({});
  // @ts-expect-error a field of the wrong type (collection ids are strings)
  await client.publish({ delta: { collectionId: CollectionIdType } });
  // @ts-expect-error delta bytes are a Uint8Array, not a string
  await client.publish({ delta: { collectionId: "c", delta: "hello" } });
  // @ts-expect-error a field that does not exist
  await client.getPresence({ collection: "c" });

  const presence = await client.getPresence({ collectionId: "c" });
  // @ts-expect-error the response has no such field
  presence.peerz;

  // A bidirectional stream takes an async iterable of requests.
  async function* requests() {
    yield { requestId: 1n, kind: { case: "subscribe" as const, value: { collectionId: "c" } } };
  }
  for await (const response of client.sync(requests())) {
    if (response.kind.case === "delta") {
      const bytes: Uint8Array = response.kind.value.delta;
      void bytes;
      // @ts-expect-error a delta has no peer list
      response.kind.value.peers;
    }
  }
  // @ts-expect-error a bidirectional stream needs an iterable, not one message
  client.sync({ requestId: 1n });
  // @ts-expect-error request ids are uint64: bigint, not string
  client.sync([{ requestId: "1" }]);
  // @ts-expect-error unknown oneof case
  client.sync([{ requestId: 1n, kind: { case: "subscrbe", value: {} } }]);
  // @ts-expect-error call options: timeoutMs is a number
  await client.getServerInfo({}, { timeoutMs: "5s" });
  // @ts-expect-error call options: headers are HeadersInit, not a number
  await client.getServerInfo({}, { headers: 5 });
  await client.getServerInfo({}, { timeoutMs: 5000, headers: { authorization: "Bearer t" }, signal: AbortSignal.timeout(1) });
}
