/**
 * The client end of one connection as a sans-I/O state machine (the TypeScript twin of
 * the Python `wire/mux.py` ClientMultiplexer): `receive(message)` applies one WebSocket
 * message and returns events; `start`, `sendMessage`, `halfClose`, `cancel` and
 * `consumed` validate call state and queue encoded records in `outbox`; the driver
 * (connection.ts) sends `takeBatch()` results on the socket. No I/O, no timers.
 *
 * Rules (docs/protocol.md, "Calls", "Errors", "Flow control"): call ids are odd and
 * increasing; a server frame that breaks the per-call order fails only its call
 * (INTERNAL, and a cancel goes out); a frame for no known call is dropped and reported
 * with a ProtocolError on call 0; frames for finished calls are ignored silently.
 */
import { create } from "@bufbuild/protobuf";
import {
  CallCancelSchema,
  CallHalfCloseSchema,
  CallStartSchema,
  CallWindowUpdateSchema,
  FrameSchema,
  PingSchema,
  PongSchema,
  ProtocolErrorSchema,
  type ConnectionSettings,
  type Frame,
  type MetadataEntry,
} from "./gen/syncwire/ws/v1/frame_pb.js";
import { decodeBatch, encodeMessageRecord, encodeRecord, FrameDecodeError } from "./codec.js";
import { entriesToHeaders, MetadataError } from "./metadata.js";
import { Outbox } from "./outbox.js";

/** Largest call id; a connection that used it cannot start more calls. */
export const MAX_CALL_ID = 0xffffffff;
/** Flow-control window each side starts with per call, in message-cost units. */
export const INITIAL_WINDOW = 256 * 1024;
/** What a message costs beyond its payload length, in window units. */
export const MESSAGE_OVERHEAD = 32;

/** gRPC status numbers the framing itself uses (equal to Connect's `Code` values). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** What happened on the connection, in order. */
export type MuxEvent =
  | { readonly kind: "headers"; readonly callId: number; readonly headers: Headers }
  | { readonly kind: "message"; readonly callId: number; readonly payload: Uint8Array }
  | { readonly kind: "windowOpened"; readonly callId: number }
  /** The call is over: the server's end, or a local failure (`local` true). */
  | {
      readonly kind: "end";
      readonly callId: number;
      readonly code: number;
      readonly details: string;
      readonly trailers: Headers;
      readonly local: boolean;
    }
  | { readonly kind: "settings"; readonly settings: ConnectionSettings }
  | { readonly kind: "pong"; readonly nonce: bigint }
  | { readonly kind: "protocolError"; readonly code: number; readonly details: string }
  | { readonly kind: "discarded"; readonly details: string };

/** Local misuse: sending on a call that is not open, or out of order. */
export class CallStateError extends Error {
  override name = "CallStateError";
}

/** A message to send exceeds the server's announced limit. */
export class MessageTooLargeError extends Error {
  override name = "MessageTooLargeError";
}

/** The connection has used every call id; open a new connection. */
export class CallIdsExhaustedError extends Error {
  override name = "CallIdsExhaustedError";
}

interface CallState {
  sendWindow: number;
  recvWindow: number;
  ungranted: number; // consumed by the application, not yet granted back
  halfClosed: boolean;
  answered: boolean; // headers or a message came in
}

/** Encodes a relative timeout in milliseconds as CallStart.timeout's Duration fields. */
export function timeoutToDuration(timeoutMs: number): { seconds: bigint; nanos: number } {
  const ms = Number.isNaN(timeoutMs) || timeoutMs < 0 ? 0 : Math.min(timeoutMs, 100 * 365 * 24 * 3600 * 1000);
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.min(Math.round((ms - seconds * 1000) * 1e6), 999_999_999);
  return { seconds: BigInt(seconds), nanos };
}

/** The client end of one connection. */
export class ClientMultiplexer {
  /** Encoded records waiting for the socket. */
  readonly outbox = new Outbox();
  /** Largest response payload accepted, in bytes (undefined = no limit). */
  maxReceiveBytes: number | undefined;
  /** Largest request payload the server accepts (from its settings), if known. */
  maxSendBytes: number | undefined;
  /** Window new calls start with in both directions (the server's settings may change it). */
  initialWindow = INITIAL_WINDOW;
  private readonly calls = new Map<number, CallState>();
  private nextCallId = 1;
  private events: MuxEvent[] = [];
  private pingNonce: bigint | undefined; // the last Ping of the message being received

  constructor(options: { maxReceiveBytes?: number | undefined; maxSendBytes?: number | undefined } = {}) {
    this.maxReceiveBytes = options.maxReceiveBytes;
    this.maxSendBytes = options.maxSendBytes;
  }

  /** Whether every call id of this connection has been used. */
  get exhausted(): boolean {
    return this.nextCallId > MAX_CALL_ID;
  }

  /** How many calls are open. */
  get openCalls(): number {
    return this.calls.size;
  }

  /** Whether the call is still running (not ended, cancelled or failed). */
  isOpen(callId: number): boolean {
    return this.calls.has(callId);
  }

  /** Whether the call's send window lets a message go now (true for calls not open). */
  canSend(callId: number): boolean {
    const call = this.calls.get(callId);
    return call === undefined || call.sendWindow > 0;
  }

  /**
   * Queues a call's start and returns its id (odd, increasing); throws
   * CallIdsExhaustedError when this connection has no id left.
   */
  start(method: string, metadata: MetadataEntry[], timeoutMs: number | undefined): number {
    if (this.exhausted) throw new CallIdsExhaustedError("no call id left on this connection");
    const callId = this.nextCallId;
    this.nextCallId += 2;
    const start = create(CallStartSchema, { method, metadata });
    if (timeoutMs !== undefined) start.timeout = { $typeName: "google.protobuf.Duration", ...timeoutToDuration(timeoutMs) };
    this.push({ callId, kind: { case: "start", value: start } });
    this.calls.set(callId, {
      sendWindow: this.initialWindow,
      recvWindow: this.initialWindow,
      ungranted: 0,
      halfClosed: false,
      answered: false,
    });
    return callId;
  }

  /**
   * Queues one request message; throws MessageTooLargeError over the server's limit and
   * CallStateError when the call is not open, half-closed or its window is closed.
   */
  sendMessage(callId: number, payload: Uint8Array): void {
    const call = this.sending(callId);
    if (call.sendWindow <= 0) throw new CallStateError(`call ${callId}: flow-control window closed`);
    const limit = this.maxSendBytes;
    if (limit !== undefined && payload.length > limit) {
      throw new MessageTooLargeError(`Sent message larger than max (${payload.length} vs. ${limit})`);
    }
    call.sendWindow -= payload.length + MESSAGE_OVERHEAD;
    this.outbox.push(encodeMessageRecord(callId, payload));
  }

  /** Queues the end of the call's requests. */
  halfClose(callId: number): void {
    this.sending(callId).halfClosed = true;
    this.push({ callId, kind: { case: "halfClose", value: create(CallHalfCloseSchema) } });
  }

  /** Abandons the call (the server sends no end); no-op once the call is over. */
  cancel(callId: number): void {
    if (this.calls.delete(callId)) {
      this.push({ callId, kind: { case: "cancel", value: create(CallCancelSchema) } });
    }
  }

  /** The application took one response of `payloadBytes`: grant its cost back in batches. */
  consumed(callId: number, payloadBytes: number): void {
    const call = this.calls.get(callId);
    if (call === undefined) return;
    call.ungranted += payloadBytes + MESSAGE_OVERHEAD;
    if (call.ungranted >= Math.floor(this.initialWindow / 2)) {
      const update = create(CallWindowUpdateSchema, { bytes: call.ungranted });
      this.push({ callId, kind: { case: "windowUpdate", value: update } });
      call.recvWindow += call.ungranted;
      call.ungranted = 0;
    }
  }

  /** Queues a keepalive Ping on call 0. */
  ping(nonce: bigint): void {
    this.push({ callId: 0, kind: { case: "ping", value: create(PingSchema, { nonce }) } });
  }

  /** The next WebSocket message to send (a batch of queued records), if any. */
  takeBatch(): Uint8Array | undefined {
    return this.outbox.takeBatch();
  }

  /** Applies one received WebSocket message; returns what happened, in order. */
  receive(message: Uint8Array | string): MuxEvent[] {
    if (typeof message === "string") {
      this.discard("text WebSocket message ignored: frames travel in binary messages");
    } else {
      this.pingNonce = undefined;
      for (const item of decodeBatch(message)) {
        if (item instanceof FrameDecodeError) this.onUndecodable(item);
        else if (item.callId === 0) this.onConnectionFrame(item);
        else this.onCallFrame(item);
      }
      if (this.pingNonce !== undefined) {
        // One Pong per received message, for the last Ping in it (docs/protocol.md).
        this.push({ callId: 0, kind: { case: "pong", value: create(PongSchema, { nonce: this.pingNonce }) } });
      }
    }
    const events = this.events;
    this.events = [];
    return events;
  }

  private push(frame: { callId: number; kind: Frame["kind"] }): void {
    this.outbox.push(encodeRecord(create(FrameSchema, frame)));
  }

  private sending(callId: number): CallState {
    const call = this.calls.get(callId);
    if (call === undefined) throw new CallStateError(`call ${callId} is not open`);
    if (call.halfClosed) throw new CallStateError(`call ${callId} is half-closed`);
    return call;
  }

  private fail(callId: number, code: number, details: string): void {
    this.cancel(callId);
    this.events.push({ kind: "end", callId, code, details, trailers: new Headers(), local: true });
  }

  private discard(details: string): void {
    const error = create(ProtocolErrorSchema, { code: Status.INVALID_ARGUMENT, details });
    this.push({ callId: 0, kind: { case: "protocolError", value: error } });
    this.events.push({ kind: "discarded", details });
  }

  private onUndecodable(error: FrameDecodeError): void {
    const callId = error.callId;
    if (callId !== undefined && this.calls.has(callId)) {
      this.fail(callId, Status.INTERNAL, `call ${callId}: ${error.reason}`);
    } else {
      this.discard(callId === undefined ? error.reason : `call ${callId}: ${error.reason}`);
    }
  }

  private onConnectionFrame(frame: Frame): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "protocolError":
        this.events.push({ kind: "protocolError", code: kind.value.code, details: kind.value.details });
        return;
      case "settings": {
        const settings = kind.value;
        if (settings.maxMessageBytes > 0) this.maxSendBytes = settings.maxMessageBytes;
        if (settings.initialWindowBytes > 0) this.initialWindow = settings.initialWindowBytes;
        this.events.push({ kind: "settings", settings });
        return;
      }
      case "ping":
        this.pingNonce = kind.value.nonce;
        return;
      case "pong":
        this.events.push({ kind: "pong", nonce: kind.value.nonce });
        return;
      case undefined:
        // A connection-level kind this version does not know (or none): ignored, so later
        // versions can add call-0 frames (docs/protocol.md, "Calls"). Answering it would
        // also make the server take this client for one that predates call-0 keepalive.
        return;
      default:
        this.discard(`call 0 carries no ${JSON.stringify(kind.case)} frames`);
    }
  }

  private onCallFrame(frame: Frame): void {
    const callId = frame.callId;
    const kind = frame.kind;
    const call = this.calls.get(callId);
    if (call === undefined) {
      if (callId % 2 === 1 && callId < this.nextCallId) return; // late frame for a finished call
      this.discard(`${kind.case ?? "empty"} frame for call ${callId}, which was never started`);
      return;
    }
    switch (kind.case) {
      case "headers": {
        if (call.answered) {
          this.fail(callId, Status.INTERNAL, `call ${callId}: headers after headers or messages`);
          return;
        }
        let headers: Headers;
        try {
          headers = entriesToHeaders(kind.value.metadata);
        } catch (error) {
          this.fail(callId, Status.INTERNAL, `call ${callId}: ${describe(error)}`);
          return;
        }
        call.answered = true;
        this.events.push({ kind: "headers", callId, headers });
        return;
      }
      case "message": {
        const payload = kind.value.payload;
        if (call.recvWindow <= 0) {
          this.fail(callId, Status.INTERNAL, `call ${callId}: message beyond the flow-control window`);
          return;
        }
        call.recvWindow -= payload.length + MESSAGE_OVERHEAD;
        const limit = this.maxReceiveBytes;
        if (limit !== undefined && payload.length > limit) {
          this.fail(
            callId,
            Status.RESOURCE_EXHAUSTED,
            `Received message larger than max (${payload.length} vs. ${limit})`,
          );
          return;
        }
        call.answered = true;
        this.events.push({ kind: "message", callId, payload });
        return;
      }
      case "windowUpdate": {
        const wasClosed = call.sendWindow <= 0;
        call.sendWindow += kind.value.bytes;
        if (wasClosed && call.sendWindow > 0) this.events.push({ kind: "windowOpened", callId });
        return;
      }
      case "end": {
        this.calls.delete(callId);
        const end = kind.value;
        let code = end.code <= 16 ? end.code : Status.UNKNOWN;
        let details = end.details;
        let trailers: Headers;
        try {
          trailers = entriesToHeaders(end.trailers);
        } catch (error) {
          code = Status.INTERNAL;
          details = `invalid trailers: ${describe(error)}`;
          trailers = new Headers();
        }
        this.events.push({ kind: "end", callId, code, details, trailers, local: false });
        return;
      }
      default: {
        const what = kind.case ? `frame kind ${JSON.stringify(kind.case)} is not sent by servers` : "frame has no kind";
        this.fail(callId, Status.INTERNAL, `call ${callId}: ${what}`);
      }
    }
  }
}

function describe(error: unknown): string {
  return error instanceof MetadataError ? error.message : String(error);
}
