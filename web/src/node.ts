/**
 * Node entry point: `createWebSocketTransport` with the `ws` package's WebSocket as the
 * default (Node 20 has no global WebSocket without a flag).
 */
import { WebSocket } from "ws";
import { createWebSocketTransport as createTransport, type WebSocketTransport, type WebSocketTransportOptions } from "./transport.js";
import type { WebSocketConstructor } from "./socket.js";

export * from "./index.js";

/** Options of the Node `createWebSocketTransport`: the browser entry's, plus `ws`'s compression switch. */
export interface NodeWebSocketTransportOptions extends WebSocketTransportOptions {
  /** Offer permessage-deflate (default true, as `ws` and browsers do); ignored with `webSocket`. */
  readonly perMessageDeflate?: boolean | undefined;
}

/** As the browser entry's `createWebSocketTransport`, with `ws`'s WebSocket by default. */
export function createWebSocketTransport(options: NodeWebSocketTransportOptions): WebSocketTransport {
  const { perMessageDeflate = true, ...rest } = options;
  class NodeWebSocket extends WebSocket {
    constructor(url: string, protocols: string | string[]) {
      super(url, protocols, { perMessageDeflate });
    }
  }
  return createTransport({ webSocket: NodeWebSocket as unknown as WebSocketConstructor, ...rest });
}

import { SyncClient as BaseSyncClient, type SyncClientOptions } from "./sync/client.js";

/** As the browser entry's `SyncClient`, with `ws`'s WebSocket by default. */
export class SyncClient extends BaseSyncClient {
  constructor(options: SyncClientOptions) {
    super({ webSocket: WebSocket as unknown as WebSocketConstructor, ...options });
  }
}
