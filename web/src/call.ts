/**
 * One call on a connection, as the transport sees it: sends requests (respecting the
 * call's flow-control window), buffers responses until read (granting the window back
 * as they are read), and ends exactly once, with the server's status or a local one
 * (cancel, deadline, connection loss).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import type { CallSink, Connection } from "./connection.js";
import { MessageTooLargeError, CallStateError, Status } from "./mux.js";

/** How a call ended. */
export interface CallStatus {
  readonly code: number;
  readonly details: string;
  readonly trailers: Headers;
}

/** A deferred signal that may fire many times (flow-control window reopened). */
class Pulse {
  private waiters: (() => void)[] = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  fire(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

/** One started call and its buffered responses. */
export class WsCall implements CallSink {
  /** Response headers (empty until they arrive; filled in place). */
  readonly header = new Headers();
  /** Trailers (empty until the end; filled in place). */
  readonly trailer = new Headers();
  /** Resolves when the server answered: headers, a message or the end. */
  readonly answered: Promise<void>;
  /** Resolves with the status once the call is over. */
  readonly ended: Promise<CallStatus>;
  private status: CallStatus | undefined;
  private readonly responses: Uint8Array[] = [];
  private readonly window = new Pulse();
  private readonly arrival = new Pulse();
  private resolveAnswered!: () => void;
  private resolveEnded!: (status: CallStatus) => void;
  private callId = 0;

  constructor(private readonly connection: Connection) {
    this.answered = new Promise((resolve) => (this.resolveAnswered = resolve));
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  /** Sends the start frame (throws CallStateError once the connection is closed). */
  start(method: string, metadata: Parameters<Connection["startCall"]>[1], timeoutMs: number | undefined): void {
    this.callId = this.connection.startCall(method, metadata, timeoutMs, this);
  }

  /** Whether the call is over. */
  get done(): boolean {
    return this.status !== undefined;
  }

  onHeaders(headers: Headers): void {
    headers.forEach((value, key) => this.header.append(key, value));
    this.resolveAnswered();
  }

  onMessage(payload: Uint8Array): void {
    this.responses.push(payload); // flow control bounds how many wait here
    this.resolveAnswered();
    this.arrival.fire();
  }

  onWindowOpened(): void {
    this.window.fire();
  }

  onEnd(code: number, details: string, trailers: Headers): void {
    if (this.status !== undefined) return;
    trailers.forEach((value, key) => this.trailer.append(key, value));
    this.status = { code, details, trailers: this.trailer };
    this.resolveAnswered();
    this.resolveEnded(this.status);
    this.window.fire();
    this.arrival.fire();
  }

  /**
   * Sends one request payload; throws the call's ConnectError once it is over (a
   * request over the server's limit ends it with RESOURCE_EXHAUSTED).
   */
  async send(payload: Uint8Array): Promise<void> {
    this.throwIfDone();
    try {
      await this.connection.sendMessage(this.callId, payload, () => this.window.wait());
    } catch (error) {
      if (error instanceof MessageTooLargeError) this.fail(Status.RESOURCE_EXHAUSTED, error.message);
      else if (!(error instanceof CallStateError)) throw error;
      await this.ended; // a CallStateError means the end is here or on its way
    }
    this.throwIfDone();
  }

  /** Tells the server no more requests come. */
  halfClose(): void {
    if (!this.done) this.connection.halfClose(this.callId);
  }

  /** Ends the call locally with `code` and tells the server to stop it (a cancel frame). */
  fail(code: number, details: string): void {
    if (this.done) return;
    this.connection.cancel(this.callId);
    this.onEnd(code, details, new Headers());
  }

  /** The next response payload, or undefined after an OK end; throws the call's error. */
  async read(): Promise<Uint8Array | undefined> {
    while (this.responses.length === 0 && !this.done) await this.arrival.wait();
    const payload = this.responses.shift();
    if (payload !== undefined) {
      this.connection.consumed(this.callId, payload.length);
      return payload;
    }
    this.throwIfDone();
    return undefined;
  }

  /** Throws the call's error if it ended with one; a no-op while it runs or after OK. */
  throwIfDone(): void {
    const status = this.status;
    if (status !== undefined && status.code !== Status.OK) throw this.error(status);
  }

  /**
   * The ConnectError for a non-OK status: code and message from the end frame (or the
   * rich google.rpc.Status in `grpc-status-details-bin`, whose details become
   * `error.details`), metadata = response headers then trailers, as Connect's gRPC
   * transports report it.
   */
  error(status: CallStatus): ConnectError {
    const probe = new Headers(status.trailers);
    probe.set("grpc-status", String(status.code));
    probe.set("grpc-message", encodeURIComponent(status.details));
    const found = findTrailerError(probe);
    const error = new ConnectError(
      found?.rawMessage ?? status.details,
      (found?.code ?? status.code) as Code,
      undefined,
    );
    this.header.forEach((value, key) => error.metadata.append(key, value));
    status.trailers.forEach((value, key) => error.metadata.append(key, value));
    if (found !== undefined) error.details = found.details;
    return error;
  }
}
