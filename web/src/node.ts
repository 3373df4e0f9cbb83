/**
 * Node entry point: `createWebSocketTransport` with the `ws` package's WebSocket as the
 * default (Node 20 has no global WebSocket without a flag).
 */
import { WebSocket } from "ws";
import { createWebSocketTransport as createTransport, type WebSocketTransport, type WebSocketTransportOptions } from "./transport.js";
import type { WebSocketConstructor } from "./socket.js";

export * from "./index.js";

/** As the browser entry's `createWebSocketTransport`, with `ws`'s WebSocket by default. */
export function createWebSocketTransport(options: WebSocketTransportOptions): WebSocketTransport {
  return createTransport({ webSocket: WebSocket as unknown as WebSocketConstructor, ...options });
}
