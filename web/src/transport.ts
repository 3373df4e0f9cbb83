/**
 * `createWebSocketTransport`: a Connect-ES `Transport` that runs every call kind (unary,
 * server streaming, client streaming, bidirectional) of any protoc-gen-es service over
 * one WebSocket speaking the `syncwire-protobuf` framing (docs/protocol.md).
 */
import {
  fromBinary,
  toBinary,
  type BinaryReadOptions,
  type BinaryWriteOptions,
  type DescMessage,
  type DescMethod,
  type DescMethodStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createMethodUrl, getAbortSignalReason, runStreamingCall, runUnaryCall } from "@connectrpc/connect/protocol";
import { WsCall } from "./call.js";
import { Connection } from "./connection.js";
import { headersToEntries, MetadataError } from "./metadata.js";
import { Status } from "./mux.js";
import { globalWebSocket, type WebSocketConstructor } from "./socket.js";

/** Options of `createWebSocketTransport`. Sizes are in bytes, times in milliseconds. */
export interface WebSocketTransportOptions {
  /**
   * The server's WebSocket URL, `ws://host:port` or `wss://host:port` (`http(s)://` is
   * read as `ws(s)://`). Every call of the transport shares one connection to it.
   */
  readonly baseUrl: string;
  /**
   * The WebSocket class: defaults to the global `WebSocket` (browsers, Node >= 22);
   * in Node 20 pass `WebSocket` from the `ws` package, or import
   * `createWebSocketTransport` from `syncwire-web/node`, which does.
   */
  readonly webSocket?: WebSocketConstructor | undefined;
  /** Connect interceptors, applied to every call as Connect's own transports do. */
  readonly interceptors?: Interceptor[] | undefined;
  /** protobuf-es binary options for requests and responses. */
  readonly binaryOptions?: Partial<BinaryReadOptions & BinaryWriteOptions> | undefined;
  /** Deadline for calls that set no `timeoutMs` (default: none). */
  readonly defaultTimeoutMs?: number | undefined;
  /** Largest response message accepted; larger ones fail the call with RESOURCE_EXHAUSTED (default 4 MiB). */
  readonly maxReceiveBytes?: number | undefined;
  /** Encoded bytes queued towards a busy socket before senders wait (default 256 KiB). */
  readonly sendBufferBytes?: number | undefined;
  /** How long opening the socket may take before calls fail with UNAVAILABLE (default 10 s). */
  readonly connectTimeoutMs?: number | undefined;
  /**
   * How long to wait for the server's ConnectionSettings frame after the socket opened
   * before sending anyway, for servers that predate it (default 1 s).
   */
  readonly settingsTimeoutMs?: number | undefined;
}

/** A Connect `Transport` over one multiplexed WebSocket. */
export interface WebSocketTransport extends Transport {
  /** Closes the current connection (open calls end with UNAVAILABLE); the next call opens a new one. */
  close(): void;
  /** The connection calls currently go to, if one is open or opening (for diagnostics and tests). */
  readonly connection: Connection | undefined;
}

/**
 * A Connect `Transport` whose calls all travel over one WebSocket using the
 * `syncwire-protobuf` subprotocol.
 *
 * - The socket opens on the first call; when it is lost every open call fails with
 *   UNAVAILABLE and the next call opens a new one.
 * - `timeoutMs` travels to the server and is enforced locally too (DEADLINE_EXCEEDED);
 *   aborting the call's `signal` sends a cancel frame (CANCELED).
 * - Request headers become call metadata (see metadata.ts for the mapping); this is how
 *   credentials travel: `headers: { authorization: "Bearer ..." }`.
 * - A non-OK end becomes a `ConnectError` with the status code, details and metadata.
 *
 * @throws Error at once when no WebSocket class is available or `baseUrl` is not a
 *   ws(s):// or http(s):// URL.
 */
export function createWebSocketTransport(options: WebSocketTransportOptions): WebSocketTransport {
  const webSocket = options.webSocket ?? globalWebSocket();
  if (webSocket === undefined) {
    throw new Error("no global WebSocket: pass `webSocket` (for example the `ws` package's WebSocket)");
  }
  const url = options.baseUrl.replace(/^http(s?):\/\//, "ws$1://");
  if (!/^wss?:\/\/[^/]/.test(url)) {
    throw new Error(`baseUrl must be a ws://, wss://, http:// or https:// URL, not ${JSON.stringify(options.baseUrl)}`);
  }
  const baseUrl = url.replace(/\/+$/, "");
  let current: Connection | undefined;

  function connection(): Connection {
    if (current === undefined || !current.usable) {
      current?.close("call ids exhausted");
      current = new Connection({
        url,
        webSocket: webSocket!,
        maxReceiveBytes: options.maxReceiveBytes ?? 4 * 1024 * 1024,
        sendBufferBytes: options.sendBufferBytes ?? 256 * 1024,
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        settingsTimeoutMs: options.settingsTimeoutMs ?? 1000,
        onClosed: (closed) => {
          if (current === closed) current = undefined;
        },
      });
    }
    return current;
  }

  /** Opens a call on the shared connection, wired to the call's abort signal. */
  async function open(method: DescMethod, header: Headers, timeoutMs: number | undefined, signal: AbortSignal): Promise<WsCall> {
    let metadata;
    try {
      metadata = headersToEntries(header);
    } catch (error) {
      if (error instanceof MetadataError) throw new ConnectError(`invalid metadata: ${error.message}`, Code.Internal);
      throw error;
    }
    const conn = connection();
    // Waiting for the socket (or a free call slot) ends early when the call is aborted
    // or its deadline passes.
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<"aborted">((resolve) => {
      onAbort = () => resolve("aborted");
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort);
    });
    try {
      if ((await Promise.race([conn.ready, aborted])) === "aborted") {
        throw ConnectError.from(getAbortSignalReason(signal), Code.Canceled);
      }
      const slot = conn.acquireSlot();
      if ((await Promise.race([slot, aborted])) === "aborted") {
        void slot.then(() => conn.releaseSlot());
        throw ConnectError.from(getAbortSignalReason(signal), Code.Canceled);
      }
    } catch (error) {
      if (error instanceof ConnectError) throw error;
      throw new ConnectError(error instanceof Error ? error.message : String(error), Code.Unavailable);
    } finally {
      signal.removeEventListener("abort", onAbort!);
    }
    const call = new WsCall(conn);
    try {
      call.start(`/${method.parent.typeName}/${method.name}`, metadata, timeoutMs);
    } catch (error) {
      conn.releaseSlot();
      throw new ConnectError(error instanceof Error ? error.message : String(error), Code.Unavailable);
    }
    const cancel = (): void => {
      const reason = ConnectError.from(getAbortSignalReason(signal), Code.Canceled);
      call.fail(reason.code, reason.rawMessage);
    };
    if (signal.aborted) cancel();
    signal.addEventListener("abort", cancel);
    void call.ended.then(() => signal.removeEventListener("abort", cancel));
    return call;
  }

  function effectiveTimeout(timeoutMs: number | undefined): number | undefined {
    const value = timeoutMs ?? options.defaultTimeoutMs;
    return value === undefined || value <= 0 ? undefined : value;
  }

  function request(method: DescMethod, header: HeadersInit | undefined, contextValues: ContextValues | undefined) {
    return {
      service: method.parent,
      requestMethod: "POST",
      url: createMethodUrl(baseUrl, method),
      header: new Headers(header),
      contextValues: contextValues ?? createContextValues(),
    };
  }

  return {
    get connection() {
      return current;
    },

    close(): void {
      current?.close();
    },

    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const timeout = effectiveTimeout(timeoutMs);
      return await runUnaryCall<I, O>({
        interceptors: options.interceptors,
        signal,
        timeoutMs: timeout,
        req: { ...request(method, header, contextValues), stream: false, method, message: input },
        next: async (req) => {
          const call = await open(req.method, req.header, timeout, req.signal);
          await call.send(toBinary(req.method.input, req.message, options.binaryOptions));
          call.halfClose();
          const status = await call.ended;
          call.throwIfDone();
          const payloads: Uint8Array[] = [];
          for (let payload = await call.read(); payload !== undefined; payload = await call.read()) {
            payloads.push(payload);
          }
          if (payloads.length !== 1) {
            throw new ConnectError(
              `unary call ended OK with ${payloads.length} response messages`,
              Code.Internal,
              status.trailers,
            );
          }
          return {
            stream: false,
            service: req.method.parent,
            method: req.method,
            header: call.header,
            message: decode(req.method.output, payloads[0]!, call),
            trailer: call.trailer,
          };
        },
      });
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const timeout = effectiveTimeout(timeoutMs);
      return await runStreamingCall<I, O>({
        interceptors: options.interceptors,
        signal,
        timeoutMs: timeout,
        req: { ...request(method, header, contextValues), stream: true, method, message: input },
        next: async (req) => {
          const call = await open(req.method, req.header, timeout, req.signal);
          void pump(call, req.method.input, req.message);
          await call.answered;
          return {
            stream: true,
            service: req.method.parent,
            method: req.method,
            header: call.header,
            trailer: call.trailer,
            message: responses(call, req.method.output),
          };
        },
      });
    },
  };

  /** Sends the request stream, then half-closes; a failing request iterable ends the call. */
  async function pump<I extends DescMessage>(call: WsCall, schema: I, requests: AsyncIterable<MessageShape<I>>): Promise<void> {
    try {
      for await (const message of requests) {
        if (call.done) break;
        await call.send(toBinary(schema, message, options.binaryOptions));
      }
      call.halfClose();
    } catch (error) {
      if (!call.done) {
        const reason = ConnectError.from(error, Code.Unknown);
        call.fail(reason.code, reason.rawMessage);
      }
    }
  }

  async function* responses<O extends DescMessage>(call: WsCall, schema: O): AsyncGenerator<MessageShape<O>> {
    for (let payload = await call.read(); payload !== undefined; payload = await call.read()) {
      yield decode(schema, payload, call);
    }
  }

  function decode<O extends DescMessage>(schema: O, payload: Uint8Array, call: WsCall): MessageShape<O> {
    try {
      return fromBinary(schema, payload, options.binaryOptions);
    } catch (error) {
      call.fail(Status.INTERNAL, `Exception deserializing response: ${String(error)}`);
      throw call.error({ code: Status.INTERNAL, details: `Exception deserializing response: ${String(error)}`, trailers: new Headers() });
    }
  }
}
