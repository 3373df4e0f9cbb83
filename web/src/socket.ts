/**
 * The part of the WebSocket API the transport uses: the browser's native `WebSocket`
 * and the `ws` package's class both provide it.
 */

/** A WebSocket as the browser (and `ws`) define it, reduced to what the transport uses. */
export interface WebSocketLike {
  /** Set to "arraybuffer" by the transport. */
  binaryType: string;
  /** Bytes queued by `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /** The subprotocol the server selected ("" = none). */
  readonly protocol: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { readonly data: unknown }) => void) | null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** `new WebSocket(url, protocols)`: the browser's global, or `ws`'s default export. */
export type WebSocketConstructor = new (url: string, protocols: string | string[]) => WebSocketLike;

/** The browser's (or the runtime's) global WebSocket, if there is one. */
export function globalWebSocket(): WebSocketConstructor | undefined {
  const candidate = (globalThis as { WebSocket?: unknown }).WebSocket;
  return typeof candidate === "function" ? (candidate as WebSocketConstructor) : undefined;
}
