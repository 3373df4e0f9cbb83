/**
 * Drives one WebSocket's ClientMultiplexer: opens the socket, waits for the server's
 * ConnectionSettings, moves batches to the socket with back-pressure, keeps the
 * connection alive with call-0 pings, and dispatches events to the calls' sinks.
 */
import type { ConnectionSettings, MetadataEntry } from "./gen/syncwire/ws/v1/frame_pb.js";
import { ClientMultiplexer, CallStateError, Status, type MuxEvent } from "./mux.js";
import type { WebSocketConstructor, WebSocketLike } from "./socket.js";

/** Sec-WebSocket-Protocol value of the typed binary framing. */
export const SUBPROTOCOL = "syncwire-protobuf";

/** What a connection tells a call; every method returns without waiting. */
export interface CallSink {
  onHeaders(headers: Headers): void;
  onMessage(payload: Uint8Array): void;
  onWindowOpened(): void;
  onEnd(code: number, details: string, trailers: Headers): void;
}

/** Connection options (all sizes in bytes, all times in milliseconds). */
export interface ConnectionOptions {
  readonly url: string;
  readonly webSocket: WebSocketConstructor;
  readonly maxReceiveBytes: number | undefined;
  readonly sendBufferBytes: number;
  readonly connectTimeoutMs: number;
  readonly settingsTimeoutMs: number;
  readonly onClosed: (connection: Connection) => void;
}

type Waiter = () => void;

/** One WebSocket carrying any number of calls. */
export class Connection {
  readonly mux: ClientMultiplexer;
  /** The server's settings frame, once it arrived. */
  settings: ConnectionSettings | undefined;
  /** Why the connection closed, once it did. */
  closedReason: string | undefined;
  /** Resolves once calls may start (socket open, settings received or waited for). */
  readonly ready: Promise<void>;
  private readonly socket: WebSocketLike;
  private readonly sinks = new Map<number, CallSink>();
  private readonly spaceWaiters: Waiter[] = [];
  private readonly slotWaiters: Waiter[] = [];
  private slots = 0; // calls holding a slot of max_concurrent_calls
  private resolveReady!: () => void;
  private rejectReady!: (reason: Error) => void;
  private gated = true; // nothing is sent before the settings (or their timeout)
  private flushScheduled = false;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private startTimer: ReturnType<typeof setTimeout> | undefined;
  private keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  private keepaliveCheck: { check: () => void; interval: number } | undefined;
  private lastSent = Date.now();
  private pongDeadline: number | undefined;
  private nonce = 0n;

  constructor(private readonly options: ConnectionOptions) {
    this.mux = new ClientMultiplexer({ maxReceiveBytes: options.maxReceiveBytes });
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined); // observed by the calls that wait for it
    let socket: WebSocketLike;
    try {
      socket = new options.webSocket(options.url, [SUBPROTOCOL]);
    } catch (error) {
      socket = closedSocket();
      queueMicrotask(() => this.fail(`could not open a WebSocket to ${options.url}: ${String(error)}`));
    }
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => this.onOpen();
    socket.onmessage = (event) => this.onMessage(event.data);
    socket.onclose = (event) => this.lost(`connection lost (${`${event.code} ${event.reason}`.trim()})`);
    socket.onerror = () => undefined; // the close event that always follows says more
    this.startTimer = setTimeout(
      () => this.fail(`could not connect within ${options.connectTimeoutMs} ms`),
      options.connectTimeoutMs,
    );
  }

  /** Whether new calls may start here. */
  get usable(): boolean {
    return this.closedReason === undefined && !this.mux.exhausted;
  }

  /** Calls open on this connection. */
  get callCount(): number {
    return this.sinks.size;
  }

  /**
   * Waits until the server's concurrent-call limit (if any) leaves room for a call, and
   * takes the room: `startCall` uses it, or `releaseSlot` gives it back.
   */
  async acquireSlot(): Promise<void> {
    for (;;) {
      const limit = this.settings?.maxConcurrentCalls ?? 0;
      if (limit === 0 || this.slots < limit || this.closedReason !== undefined) {
        this.slots += 1;
        return;
      }
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
  }

  /** Gives back a slot taken by `acquireSlot` (the call ended, or never started). */
  releaseSlot(): void {
    this.slots = Math.max(0, this.slots - 1);
    this.slotWaiters.shift()?.();
  }

  /** Opens a call; throws CallStateError once the connection is closed. */
  startCall(method: string, metadata: MetadataEntry[], timeoutMs: number | undefined, sink: CallSink): number {
    if (this.closedReason !== undefined) throw new CallStateError(this.closedReason);
    const callId = this.mux.start(method, metadata, timeoutMs);
    this.sinks.set(callId, sink);
    this.schedule();
    return callId;
  }

  /**
   * Queues a request message once the call's window is open (`waitWindow` resolves when
   * it reopens) and the send buffer has room; throws MessageTooLargeError, or
   * CallStateError once the call or connection is over.
   */
  async sendMessage(callId: number, payload: Uint8Array, waitWindow: () => Promise<void>): Promise<void> {
    while (!this.mux.canSend(callId) && this.closedReason === undefined) await waitWindow();
    while (this.buffered() >= this.options.sendBufferBytes && this.closedReason === undefined) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    if (this.closedReason !== undefined) throw new CallStateError(this.closedReason);
    this.mux.sendMessage(callId, payload);
    this.schedule();
  }

  /** The application read a response: widen the server's window for the call. */
  consumed(callId: number, payloadBytes: number): void {
    this.mux.consumed(callId, payloadBytes);
    this.schedule();
  }

  /** Ends the call's requests (no-op once the call is over). */
  halfClose(callId: number): void {
    if (this.mux.isOpen(callId)) {
      this.mux.halfClose(callId);
      this.schedule();
    }
  }

  /** Abandons the call: a cancel frame goes out and the server stops its handler. */
  cancel(callId: number): void {
    this.release(callId);
    this.mux.cancel(callId);
    this.schedule();
  }

  /** Closes the socket (code 1000); open calls end with UNAVAILABLE. */
  close(reason = "transport closed"): void {
    this.flushNow();
    this.lost(reason);
  }

  private buffered(): number {
    return this.mux.outbox.pendingBytes + this.socket.bufferedAmount;
  }

  private release(callId: number): void {
    if (this.sinks.delete(callId)) this.releaseSlot();
  }

  private onOpen(): void {
    if (this.socket.protocol !== SUBPROTOCOL) {
      this.fail(`server did not select the ${SUBPROTOCOL} subprotocol (got ${JSON.stringify(this.socket.protocol)})`);
      return;
    }
    clearTimeout(this.startTimer);
    this.startTimer = setTimeout(() => this.open(), this.options.settingsTimeoutMs);
  }

  /** Settings received (or waited for long enough): calls may go. */
  private open(): void {
    clearTimeout(this.startTimer);
    this.startTimer = undefined;
    if (!this.gated || this.closedReason !== undefined) return;
    this.gated = false;
    this.resolveReady();
    this.schedule();
  }

  private onMessage(data: unknown): void {
    const message =
      typeof data === "string"
        ? data
        : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : ArrayBuffer.isView(data)
            ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
            : "";
    if (this.pongDeadline !== undefined) {
      // Anything from the server answers the ping: the next one is due an interval
      // after the last frame this client sent.
      this.pongDeadline = undefined;
      this.armKeepalive();
    }
    for (const event of this.mux.receive(message)) this.dispatch(event);
    if (this.gated && this.settings === undefined && this.startTimer !== undefined) {
      // The settings frame comes first when the server sends one at all.
      this.open();
    }
    this.schedule();
  }

  private dispatch(event: MuxEvent): void {
    switch (event.kind) {
      case "settings":
        this.settings = event.settings;
        this.open();
        this.startKeepalive();
        return;
      case "pong":
        return;
      case "protocolError":
      case "discarded":
        console.warn(`syncwire framing: ${event.kind}: ${event.details}`);
        return;
      case "end": {
        const sink = this.sinks.get(event.callId);
        this.release(event.callId);
        sink?.onEnd(event.code, event.details, event.trailers);
        return;
      }
      default: {
        const sink = this.sinks.get(event.callId);
        if (sink === undefined) return;
        if (event.kind === "headers") sink.onHeaders(event.headers);
        else if (event.kind === "message") sink.onMessage(event.payload);
        else sink.onWindowOpened();
      }
    }
  }

  /** Sends queued batches in the next turn (coalescing whatever this turn queues). */
  private schedule(): void {
    if (this.flushScheduled || this.gated || this.closedReason !== undefined) return;
    this.flushScheduled = true;
    nextTurn(() => {
      this.flushScheduled = false;
      this.flushNow();
    });
  }

  private flushNow(): void {
    if (this.gated || this.closedReason !== undefined) return;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    while (this.socket.bufferedAmount < this.options.sendBufferBytes) {
      const batch = this.mux.takeBatch();
      if (batch === undefined) break;
      this.socket.send(batch);
      this.lastSent = Date.now();
    }
    if (!this.mux.outbox.empty) {
      // The socket is busy: browsers have no drain event, so look again shortly.
      this.flushTimer = setTimeout(() => this.flushNow(), 5);
    }
    while (this.spaceWaiters.length > 0 && this.buffered() < this.options.sendBufferBytes) {
      this.spaceWaiters.shift()!();
    }
  }

  private startKeepalive(): void {
    const interval = durationMs(this.settings?.pingInterval);
    if (interval <= 0 || this.keepaliveCheck !== undefined) return;
    const timeout = durationMs(this.settings?.pingTimeout) || interval;
    const check = (): void => {
      this.keepaliveTimer = undefined;
      if (this.closedReason !== undefined) return;
      const now = Date.now();
      if (this.pongDeadline !== undefined && now >= this.pongDeadline) {
        this.fail(`keepalive: no answer to a ping within ${timeout} ms`);
        return;
      }
      if (this.pongDeadline === undefined && now - this.lastSent >= interval) {
        this.nonce += 1n;
        this.mux.ping(this.nonce);
        this.pongDeadline = now + timeout;
        this.flushNow();
      }
      this.armKeepalive();
    };
    this.keepaliveCheck = { check, interval };
    this.armKeepalive();
  }

  /** (Re)schedules the keepalive check: at the pong deadline, or when a ping is due. */
  private armKeepalive(): void {
    if (this.keepaliveCheck === undefined || this.closedReason !== undefined) return;
    const { check, interval } = this.keepaliveCheck;
    clearTimeout(this.keepaliveTimer);
    const next = this.pongDeadline ?? this.lastSent + interval;
    this.keepaliveTimer = unref(setTimeout(check, Math.max(next - Date.now(), 10)));
  }

  /** Gives up on the connection: closes the socket and fails every open call. */
  private fail(reason: string): void {
    this.lost(reason);
  }

  private lost(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    clearTimeout(this.startTimer);
    clearTimeout(this.flushTimer);
    clearTimeout(this.keepaliveTimer);
    try {
      this.socket.close(1000, reason.slice(0, 120));
    } catch {
      // already closing
    }
    this.rejectReady(new Error(reason));
    const sinks = [...this.sinks.values()];
    this.sinks.clear();
    for (const waiter of this.spaceWaiters.splice(0)) waiter();
    for (const waiter of this.slotWaiters.splice(0)) waiter();
    for (const sink of sinks) sink.onEnd(Status.UNAVAILABLE, reason, new Headers());
    this.options.onClosed(this);
  }
}

/** Stands in for a socket the WebSocket class refused to create. */
function closedSocket(): WebSocketLike {
  return {
    binaryType: "arraybuffer",
    bufferedAmount: 0,
    protocol: "",
    onopen: null,
    onmessage: null,
    onclose: null,
    onerror: null,
    send: () => undefined,
    close: () => undefined,
  };
}

/**
 * Runs `task` in the next turn of the event loop (after every promise continuation of
 * this one), so the frames that one turn queues leave in one WebSocket message:
 * `setImmediate` in Node, a MessageChannel message in browsers (not clamped like nested
 * timers).
 */
const nextTurn: (task: () => void) => void = (() => {
  const immediate = (globalThis as { setImmediate?: (task: () => void) => unknown }).setImmediate;
  if (typeof immediate === "function") return (task) => void immediate(task);
  if (typeof MessageChannel === "function") {
    const channel = new MessageChannel();
    const tasks: (() => void)[] = [];
    channel.port1.onmessage = () => tasks.shift()?.();
    return (task) => {
      tasks.push(task);
      channel.port2.postMessage(undefined);
    };
  }
  return (task) => void setTimeout(task, 0);
})();

function durationMs(duration: { seconds: bigint; nanos: number } | undefined): number {
  return duration === undefined ? 0 : Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6);
}

function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
