/**
 * What `SyncClient` throws and reports: one `SyncError` class carrying a gRPC status
 * code and a stable machine-readable reason, as the Python client's `client/errors.py`.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Error as ErrorMessage } from "../gen/syncwire/v1/sync_pb.js";

/**
 * Everything the client throws or reports is a `SyncError` (or a subclass).
 *
 * - `code`: the gRPC status code (Connect's `Code`, same numbers).
 * - `reasonCode`: a stable reason ("rate_limited", "outbox_full", "token_refused", ...;
 *   "" when the server gave none).
 * - `collectionId`: the collection concerned, if any.
 * - `retryAfterMs`: when the server says retrying makes sense, milliseconds to wait; 0 otherwise.
 */
export class SyncError extends Error {
  override name = "SyncError";
  constructor(
    readonly code: Code,
    message: string,
    readonly reasonCode: string = "",
    readonly collectionId: string = "",
    readonly retryAfterMs: number = 0,
  ) {
    super(message);
  }

  /** True when the same request may succeed later (UNAVAILABLE, ABORTED, or a server-given delay). */
  get retryable(): boolean {
    return this.retryAfterMs > 0 || this.code === Code.Unavailable || this.code === Code.Aborted;
  }
}

/** The server answered a request (subscribe, publish, presence, token refresh) with an `Error` message. */
export class RequestFailed extends SyncError {
  override name = "RequestFailed";

  /** The `RequestFailed` for a `syncwire.v1.Error` message. */
  static fromProto(error: ErrorMessage): RequestFailed {
    return new RequestFailed(
      error.code as Code,
      error.message,
      error.reasonCode,
      error.collectionId,
      error.retryAfterMs,
    );
  }
}

/**
 * A request is larger than the server's message limit (reason "message_too_large", code
 * RESOURCE_EXHAUSTED), as the Python client's `MessageTooLargeError`: refused before it is
 * sent or queued, since an oversized message would end the whole Sync stream, again on
 * every resend. `size` and `limit` are in bytes (`size` is an upper bound of the encoded
 * request); `limit` is the connected server's advertised limit (ConnectionSettings /
 * ServerInfo), the last one seen, or else the server default of 1 MiB.
 */
export class MessageTooLargeError extends RequestFailed {
  override name = "MessageTooLargeError";
  constructor(
    readonly size: number,
    readonly limit: number,
    collectionId: string,
    what = "publish",
  ) {
    super(Code.ResourceExhausted, `${what} of about ${size} bytes exceeds the server's ${limit}-byte message limit`, "message_too_large", collectionId);
  }
}

/** The publish outbox holds `limit` entries already (reason "outbox_full"): nothing was queued. */
export class OutboxFullError extends SyncError {
  override name = "OutboxFullError";
  constructor(readonly limit: number) {
    super(Code.ResourceExhausted, `the outbox holds ${limit} unacknowledged publishes (its limit); nothing was queued`, "outbox_full");
  }
}

/** The client was closed (reason "client_closed"). */
export class ClientClosedError extends SyncError {
  override name = "ClientClosedError";
  constructor() {
    super(Code.Canceled, "the client is closed", "client_closed");
  }
}

/** The collection is not subscribed (reason "not_subscribed"). */
export class NotSubscribedError extends SyncError {
  override name = "NotSubscribedError";
  constructor(collectionId: string) {
    super(Code.FailedPrecondition, `not subscribed to ${JSON.stringify(collectionId)}`, "not_subscribed", collectionId);
  }
}

/** No connection came up within `requestTimeoutMs` for a unary call (reason "not_connected"). */
export class NotConnectedError extends SyncError {
  override name = "NotConnectedError";
  constructor(what: string, timeoutMs: number) {
    super(Code.Unavailable, `${what}: not connected within ${timeoutMs} ms`, "not_connected");
  }
}

/**
 * Terminal: the server refused the token provider's token twice in a row (`reasonCode`
 * the server's, e.g. "token_expired" or "invalid_token"; "token_refused" when it gave none). The client stopped reconnecting (state "offline");
 * `SyncClient.reconnect()` starts again, asking the provider for a new token.
 */
export class TokenRefusedError extends SyncError {
  override name = "TokenRefusedError";
  constructor(readonly refusal: SyncError) {
    super(
      Code.Unauthenticated,
      `the server refused the token provider's token twice: ${refusal.message}`,
      refusal.reasonCode || "token_refused",
    );
  }
}

/** The token provider threw or returned no token (reason "token_provider_failed"); retried with backoff. */
export class TokenProviderError extends SyncError {
  override name = "TokenProviderError";
  constructor(message: string) {
    super(Code.Unavailable, message, "token_provider_failed");
  }
}

/** The trailer that carries the server's machine-readable reason code. */
/**
 * Reason code of a publish the server refused for now (ABORTED) because an earlier
 * publish of its collection on the stream was refused for now and has not been sent
 * again yet (servers with `ServerInfo.publishHolds`).
 */
export const PUBLISH_HELD = "publish_held";

export const REASON_TRAILER = "syncwire-reason";

/** A `SyncError` for anything a call or the stream threw (ConnectError keeps its code). */
export function toSyncError(error: unknown): SyncError {
  if (error instanceof SyncError) return error;
  const connectError = ConnectError.from(error);
  // The server's reason code travels in the `syncwire-reason` trailer (wire/status.py).
  return new SyncError(connectError.code, connectError.rawMessage, connectError.metadata.get(REASON_TRAILER) ?? "");
}

/** Codes after which reconnecting cannot help: the client goes "offline" instead. */
export const FATAL_CODES: ReadonlySet<Code> = new Set([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
  Code.Unimplemented,
]);
