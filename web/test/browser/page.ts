/**
 * The browser test page's script (bundled with esbuild by tests/test_web_browser.py):
 * the transport over the browser's native WebSocket, driven by the Python test through
 * `window.syncwireTest`.
 */
import { createClient } from "@connectrpc/connect";
import { createWebSocketTransport, SyncService } from "../../src/index.js";
import type { SyncRequest, SyncResponse } from "../../src/gen/syncwire/v1/sync_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SyncRequestSchema } from "../../src/gen/syncwire/v1/sync_pb.js";
import { interopCases } from "../interop/cases.js";
import { RequestQueue } from "../helpers/sync.js";
import "./sync_page.js";

type RequestInit = MessageInitShape<typeof SyncRequestSchema>;

/** A delta as the page saw it: offset, peer and the bytes as hex. */
interface SeenDelta {
  offset: string;
  peerId: string;
  hex: string;
}

const toHex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));

const state = {
  peerId: "",
  deltas: [] as SeenDelta[],
  acks: [] as string[],
  errors: [] as string[],
};

let push: ((request: RequestInit) => void) | undefined;

async function startSync(wsUrl: string, collectionId: string): Promise<string> {
  const queue = new RequestQueue<RequestInit>();
  push = (request) => queue.push(request);
  const client = createClient(SyncService, createWebSocketTransport({ baseUrl: wsUrl }));
  const responses = client.sync(queue)[Symbol.asyncIterator]();
  const subscribed = new Promise<void>((resolve, reject) => {
    void (async () => {
      try {
        for (;;) {
          const next = await responses.next();
          if (next.done === true) return;
          const response: SyncResponse = next.value;
          const kind = response.kind;
          if (kind.case === "welcome") {
            state.peerId = kind.value.peerId;
            push!({ requestId: 1n, kind: { case: "subscribe", value: { collectionId } } });
          } else if (kind.case === "subscribed") resolve();
          else if (kind.case === "delta") {
            state.deltas.push({ offset: kind.value.offset.toString(), peerId: kind.value.peerId, hex: toHex(kind.value.delta) });
          } else if (kind.case === "publishAck") state.acks.push(kind.value.offset.toString());
          else if (kind.case === "error") state.errors.push(kind.value.message);
        }
      } catch (error) {
        state.errors.push(String(error));
        reject(error);
      }
    })();
  });
  await subscribed;
  return state.peerId;
}

function publish(collectionId: string, hexDeltas: string[]): void {
  hexDeltas.forEach((hex, index) => {
    const request: RequestInit = {
      requestId: BigInt(100 + index),
      kind: { case: "publish", value: { delta: { collectionId, delta: fromHex(hex) } } },
    };
    push!(request);
  });
}

/** Runs every interop case in order; returns case name -> "ok" or the failure. */
async function runInterop(wsUrl: string): Promise<Record<string, string>> {
  const transport = createWebSocketTransport({ baseUrl: wsUrl });
  const results: Record<string, string> = {};
  for (const [name, run] of Object.entries(interopCases)) {
    try {
      await run(transport);
      results[name] = "ok";
    } catch (error) {
      results[name] = String(error);
    }
  }
  transport.close();
  return results;
}

/** Opens one call and reports how it ended (for the refused-connection tests). */
async function tryCall(wsUrl: string): Promise<string> {
  const transport = createWebSocketTransport({ baseUrl: wsUrl });
  try {
    await createClient(SyncService, transport).getServerInfo({});
    return "ok";
  } catch (error) {
    return String(error);
  } finally {
    transport.close();
  }
}

declare global {
  interface Window {
    syncwireTest: unknown;
  }
}

window.syncwireTest = { state, startSync, publish, runInterop, tryCall };
export type { SyncRequest };
