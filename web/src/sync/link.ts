/**
 * One open Sync stream (as the Python client's `client/link.py`): request ids and their
 * replies, the Welcome, the server's Disconnect notice. Every server message goes to the
 * client's handler, in order, before the reply of the request it answers settles, so
 * state derived from a reply is in place before the next message is handled. The link
 * ends exactly once, with the `SyncError` that says why; everything waiting on it then
 * fails with that error. Dead sockets are detected below it, by the transport's call-0
 * ping (the server's ConnectionSettings), which fails the stream with UNAVAILABLE.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type Client } from "@connectrpc/connect";
import { SyncRequestSchema, type Disconnect, type SyncRequest, type SyncResponse, type SyncService } from "../gen/syncwire/v1/sync_pb.js";
import type { Welcome } from "../gen/syncwire/v1/types_pb.js";
import { SyncError, toSyncError } from "./errors.js";
import { checkSize, requestSize } from "./limits.js";

/** The `kind` of a SyncRequest, as protobuf-es init shapes spell it. */
export type RequestKind = MessageInitShape<typeof SyncRequestSchema>["kind"];

/** The server ended the stream after a Disconnect notice; `reconnect` says whether retrying is expected to work. */
export class ServerDisconnected extends SyncError {
  override name = "ServerDisconnected";
  constructor(readonly disconnect: Disconnect) {
    super(disconnect.code as Code, `server disconnected: ${disconnect.reason}`, "disconnect");
  }

  get reconnect(): boolean {
    return this.disconnect.reconnect;
  }
}

/** The client's side of one Sync stream. */
export class SyncLink {
  welcome: Welcome | undefined;
  /** Resolves with why the link ended. */
  readonly ended: Promise<SyncError>;
  private endError: SyncError | undefined;
  private resolveEnded!: (error: SyncError) => void;
  private readonly abort = new AbortController();
  private readonly queue: SyncRequest[] = [];
  private wakeWriter: (() => void) | undefined;
  private readonly pending = new Map<bigint, { resolve: (r: SyncResponse) => void; reject: (e: SyncError) => void }>();
  private nextRequestId = 0n;
  private disconnect: Disconnect | undefined;
  private responses: AsyncIterator<SyncResponse> | undefined;

  constructor(
    private readonly rpc: Client<typeof SyncService>,
    private readonly headers: HeadersInit,
    private readonly handler: (link: SyncLink, response: SyncResponse) => void,
    /** The server's message limit in bytes on this link, once announced (undefined before). */
    private readonly limit: (link: SyncLink) => number | undefined = () => undefined,
  ) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  get alive(): boolean {
    return this.endError === undefined;
  }

  /** Starts the stream and waits for the Welcome. @throws SyncError (the link's end) when it fails or `timeoutMs` passes first. */
  async open(timeoutMs: number): Promise<Welcome> {
    const stream = this.rpc.sync(this.requests(), { signal: this.abort.signal, headers: this.headers });
    this.responses = stream[Symbol.asyncIterator]();
    const timer = setTimeout(
      () => this.fail(new SyncError(Code.DeadlineExceeded, `no Welcome within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      const first = await Promise.race([this.responses.next(), this.ended.then((error) => Promise.reject(error))]);
      if (first.done === true || first.value.kind.case !== "welcome") {
        throw new SyncError(Code.Unavailable, "the server did not start the stream with a Welcome");
      }
      this.welcome = first.value.kind.value;
    } catch (error) {
      this.fail(toSyncError(error));
      throw this.endError!;
    } finally {
      clearTimeout(timer);
    }
    void this.read();
    return this.welcome;
  }

  /**
   * Sends a request and resolves with its reply (an answer or an Error message).
   * @throws SyncError: the link's end; MessageTooLargeError (synchronously, nothing sent) as `send`.
   */
  request(kind: RequestKind, size?: number): Promise<SyncResponse> {
    const id = this.send(kind, size);
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /**
   * Sends a request that expects no answer; returns its request id. `size` is the
   * request's encoded size in bytes when the caller knows it (computed otherwise).
   * @throws SyncError once the link ended; MessageTooLargeError when the request exceeds
   *   the server's announced message limit (nothing is sent: sending it would end the stream).
   */
  send(kind: RequestKind, size?: number): bigint {
    if (this.endError !== undefined) throw this.endError;
    const limit = this.limit(this);
    if (limit !== undefined) {
      const value = kind?.value as { collectionId?: string; delta?: { collectionId?: string } } | undefined;
      checkSize(size ?? requestSize(kind), limit, value?.collectionId ?? value?.delta?.collectionId ?? "", kind?.case ?? "request");
    }
    this.nextRequestId += 1n;
    this.queue.push(create(SyncRequestSchema, { requestId: this.nextRequestId, kind }));
    this.wakeWriter?.();
    return this.nextRequestId;
  }

  /** Whether a reply to `requestId` is awaited. */
  isPending(requestId: bigint): boolean {
    return this.pending.has(requestId);
  }

  /** Ends the link with `error` (no-op once ended) and cancels the stream. */
  fail(error: SyncError): void {
    if (this.endError !== undefined) return;
    this.endError = error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
    this.wakeWriter?.();
    this.abort.abort(error);
    this.resolveEnded(error);
  }

  private async *requests(): AsyncGenerator<SyncRequest> {
    for (;;) {
      while (this.queue.length > 0 && this.endError === undefined) yield this.queue.shift()!;
      if (this.endError !== undefined) return;
      await new Promise<void>((resolve) => (this.wakeWriter = resolve));
      this.wakeWriter = undefined;
    }
  }

  private async read(): Promise<void> {
    const responses = this.responses!;
    try {
      for (;;) {
        const next = await responses.next();
        if (next.done === true) {
          this.fail(this.closedError(new SyncError(Code.Unavailable, "the server closed the stream")));
          return;
        }
        const response = next.value;
        if (response.kind.case === "disconnect") this.disconnect = response.kind.value;
        this.handler(this, response);
        const waiter = this.pending.get(response.requestId);
        if (waiter !== undefined) {
          this.pending.delete(response.requestId);
          waiter.resolve(response);
        }
      }
    } catch (error) {
      this.fail(this.closedError(toSyncError(error)));
    }
  }

  private closedError(error: SyncError): SyncError {
    return this.disconnect !== undefined ? new ServerDisconnected(this.disconnect) : error;
  }
}
