/**
 * `SyncClient`: the typed, reconnecting sync client for web pages (and Node), with the
 * semantics and vocabulary of the Python client (`client/sync_client.py`).
 *
 * One background loop owns the connection: it connects (asking the token provider
 * first), rejoins every subscription from its last offset and epoch (each rejoin is
 * reported as a `RecoveryEvent`: gaps are never hidden), flushes the publish outbox in
 * order, and on any failure reconnects with full-jitter exponential backoff. Dead
 * sockets are detected by the transport's call-0 ping. In a browser the `online` event
 * and the page becoming visible cut a backoff wait short; neither is trusted alone.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Client } from "@connectrpc/connect";
import {
  PublishAckSchema,
  SetPresenceSchema,
  SyncService,
  type SetPresence,
  type GetHistoryResponse,
  type PublishAck,
  type SnapshotStored,
  type Subscribed,
  type SyncResponse,
} from "../gen/syncwire/v1/sync_pb.js";
import {
  CrdtType,
  DeltaSchema,
  PayloadEncoding,
  PresenceAction,
  type Delta,
  type Presence,
  type ServerInfo,
  UserInfoSchema,
} from "../gen/syncwire/v1/types_pb.js";
import { createWebSocketTransport, type WebSocketTransport } from "../transport.js";
import type { WebSocketConstructor } from "../socket.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { historyPages, presencePages } from "./paging.js";
import {
  ClientClosedError,
  FATAL_CODES,
  MessageTooLargeError,
  NotConnectedError,
  NotSubscribedError,
  PUBLISH_HELD,
  RequestFailed,
  SyncError,
  TokenRefusedError,
  toSyncError,
} from "./errors.js";
import { type SyncEvent, type SyncEventOf, type SyncEventType } from "./events.js";
import { Inbox } from "./inbox.js";
import { announcedLimit, checkSize, DEFAULT_MAX_MESSAGE_BYTES, REQUEST_OVERHEAD, requestSize } from "./limits.js";
import { ServerDisconnected, SyncLink } from "./link.js";
import {
  LocalCoordinator,
  MemoryOutboxStore,
  type OutboxCoordinator,
  type OutboxEntry,
  type OutboxMessage,
  type OutboxStore,
} from "./outbox.js";
import { StateTracker, type ConnectionState, type StateChange } from "./state.js";
import { Subscription, toRecovery } from "./subscription.js";
import { TokenSource, type TokenProvider } from "./tokens.js";

/** Options of `SyncClient`; times in milliseconds. */
export interface SyncClientOptions {
  /** The server's WebSocket URL (`ws://host:port`, `wss://host:port`). */
  readonly url: string;
  /** The WebSocket class (default: the global one; in Node 20 pass the `ws` package's). */
  readonly webSocket?: WebSocketConstructor | undefined;
  /**
   * Returns a bearer token; asked at every connection attempt and ahead of the token's
   * `exp` (docs/security.md). A refused token is asked for once more at once; a second
   * refusal in a row is terminal (`TokenRefused` event, state "offline").
   */
  readonly tokenProvider?: TokenProvider | undefined;
  /** How long before `exp` to ask for the next token (default 30 000). */
  readonly tokenRefreshMarginMs?: number | undefined;
  /** Reconnect policy (default 500 ms doubling to 20 s, full jitter, never give up). */
  readonly backoff?: BackoffOptions | undefined;
  /** Opening the socket and getting the Welcome (default 10 000). */
  readonly connectTimeoutMs?: number | undefined;
  /** How long `connect()` waits for the first connection before rejecting (default 10 000; the client keeps trying). */
  readonly firstConnectTimeoutMs?: number | undefined;
  /** Bound of each request's answer (subscribe, unary calls; default 10 000). */
  readonly requestTimeoutMs?: number | undefined;
  /** This client's replica id in the deltas it publishes (default: a random UUID). */
  readonly replicaId?: string | undefined;
  /**
   * Where queued publishes are kept (default: in memory). In a browser pass
   * `openIndexedDbOutbox(name)` (indexeddb.ts) so a reload loses nothing and the tabs of
   * the origin share it.
   */
  readonly outbox?: { readonly store: OutboxStore; readonly coordinator: OutboxCoordinator } | undefined;
  /** Most publishes waiting for an acknowledgement before `publish` throws OutboxFullError (default 10 000). */
  readonly outboxLimit?: number | undefined;
  /**
   * Publishes sent ahead of their acknowledgements (default 64); at most one per
   * collection against a server without `ServerInfo.publishHolds` (order).
   */
  readonly maxInFlight?: number | undefined;
  /** Events an `events()` iterator may fall behind before it ends with EventsOverflowError (default 10 000). */
  readonly eventBuffer?: number | undefined;
  /** Listen to the browser's `online` and `visibilitychange` events as reconnect hints (default true where they exist). */
  readonly browserHints?: boolean | undefined;
}

/** Options of `SyncClient.subscribe`. */
export interface SubscribeOptions {
  /** Announce this client in the collection's presence. */
  readonly joinPresence?: boolean | undefined;
  /** What presence shows about this client. */
  readonly userInfo?: MessageInitShape<typeof UserInfoSchema> | undefined;
  /** Resume from a position the application saved (with its `epoch`). */
  readonly lastOffset?: bigint | undefined;
  readonly epoch?: string | undefined;
}

/** Options of `SyncClient.publish`. */
export interface PublishOptions {
  readonly crdtType?: CrdtType | undefined;
  readonly encoding?: PayloadEncoding | undefined;
  readonly replicaId?: string | undefined;
}

/** Options of `SyncClient.setPresence`. */
export interface PresenceOptions {
  /** Free-form state, for example "typing". */
  readonly status?: string | undefined;
  /** UPDATE (default), JOIN or LEAVE. */
  readonly action?: PresenceAction | undefined;
  readonly userInfo?: MessageInitShape<typeof UserInfoSchema> | undefined;
}

interface Waiter {
  resolve(ack: PublishAck): void;
  reject(error: SyncError): void;
}

/** The entries before the second one of any collection (`entries` in seq order). */
function onePerCollection(entries: OutboxEntry[]): OutboxEntry[] {
  const seen = new Set<string>();
  for (const [index, entry] of entries.entries()) {
    if (seen.has(entry.collectionId)) return entries.slice(0, index);
    seen.add(entry.collectionId);
  }
  return entries;
}

/** Whether a publish's settled reply is a `publish_held` refusal. */
function isHeld(settled: PromiseSettledResult<SyncResponse | MessageTooLargeError>): boolean {
  if (settled.status !== "fulfilled" || settled.value instanceof MessageTooLargeError) return false;
  const kind = settled.value.kind;
  return kind.case === "error" && kind.value.reasonCode === PUBLISH_HELD;
}

/** Milliseconds to wait, cut short by `wake`. */
function pause(ms: number, signal: { wake?: (() => void) | undefined }): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.wake = undefined;
      resolve();
    }
    signal.wake = done;
  });
}

/**
 * A connection to a syncwire server over the WebSocket transport.
 *
 * @example
 * const client = new SyncClient({ url: "ws://127.0.0.1:8080" });
 * await client.connect();
 * const todo = await client.subscribe("todo", { joinPresence: true });
 * client.on("delta", (event) => apply(event.delta));
 * const ack = await client.publish("todo", bytes);
 */
export class SyncClient {
  readonly replicaId: string;
  /** Counters for diagnostics and tests: publish requests sent (resends included), acknowledgements received, and of these the server's de-duplications; rejoins refused for now and sent again; publishes the server held behind an earlier refused one of their collection (`publish_held`, only when publishes of a collection are pipelined). */
  readonly stats = { publishesSent: 0, acknowledged: 0, duplicates: 0, rejoinsRetried: 0, publishesHeld: 0 };
  private readonly transport: WebSocketTransport;
  private readonly rpc: Client<typeof SyncService>;
  private readonly backoff: Backoff;
  private readonly tracker = new StateTracker("offline");
  private readonly inbox: Inbox;
  private readonly subs = new Map<string, Subscription>();
  private readonly tokens: TokenSource | undefined;
  private readonly store: OutboxStore;
  private readonly coordinator: OutboxCoordinator;
  private readonly waiters = new Map<string, Waiter>();
  private readonly connectTimeoutMs: number;
  private readonly firstConnectTimeoutMs: number;
  private readonly url: string;
  private readonly requestTimeoutMs: number;
  private readonly outboxLimit: number;
  private readonly maxInFlight: number;
  private link: SyncLink | undefined;
  private connectedLink: SyncLink | undefined;
  private lastLimit: number | undefined;
  private running = false;
  private closed = false;
  private everConnected = false;
  private reconnectNow = false;
  private tokenRetried = false;
  private readonly backoffWait: { wake?: (() => void) | undefined } = {};
  private readonly offlineWait: { wake?: (() => void) | undefined } = {};
  private outboxDirty: (() => void) | undefined;
  private dirty = true;
  private readonly removeHints: (() => void) | undefined;

  /** @throws Error for a URL that is not ws(s):// or http(s)://, or when no WebSocket class is available. */
  constructor(options: SyncClientOptions) {
    this.transport = createWebSocketTransport({
      baseUrl: options.url,
      webSocket: options.webSocket,
      connectTimeoutMs: options.connectTimeoutMs,
    });
    this.rpc = createClient(SyncService, this.transport);
    this.backoff = new Backoff(options.backoff);
    this.inbox = new Inbox(options.eventBuffer ?? 10_000);
    this.replicaId = options.replicaId ?? crypto.randomUUID();
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.firstConnectTimeoutMs = options.firstConnectTimeoutMs ?? 10_000;
    this.url = options.url;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.outboxLimit = options.outboxLimit ?? 10_000;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 64);
    this.tokens =
      options.tokenProvider === undefined ? undefined : new TokenSource(options.tokenProvider, options.tokenRefreshMarginMs ?? 30_000);
    this.store = options.outbox?.store ?? new MemoryOutboxStore();
    this.coordinator = options.outbox?.coordinator ?? new LocalCoordinator();
    this.coordinator.listen((message) => this.onOutboxMessage(message));
    this.removeHints = options.browserHints === false ? undefined : this.listenToBrowserHints();
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Starts connecting (again, from "offline") and resolves once "connected".
   *
   * Until the client's first connection succeeds the wait is bounded by `timeoutMs`
   * (default `firstConnectTimeoutMs`, 10 000; `Infinity` waits as long as it takes): past
   * it, rejects with SyncError UNAVAILABLE (reason "server_unreachable") and the client
   * keeps trying in the background. After a first success it waits without a bound.
   * @throws SyncError: that timeout, or the error that made the client go "offline" first
   *   (for example TokenRefusedError); ClientClosedError when closed first.
   */
  async connect(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    this.checkOpen();
    if (!this.running) {
      this.running = true;
      this.tracker.set("connecting");
      void this.run();
    } else if (this.state === "offline") {
      this.reconnect();
    }
    const limit = options.timeoutMs ?? this.firstConnectTimeoutMs;
    const waiting = this.tracker.waitFor("connected", "offline");
    let state: ConnectionState;
    if (this.everConnected || !Number.isFinite(limit)) {
      state = await waiting;
    } else {
      const unreachable = new SyncError(Code.Unavailable, `no connection to ${this.url} within ${limit} ms`, "server_unreachable");
      state = await this.withTimeout(waiting, limit, () => {
        const last = this.tracker.lastChange?.error;
        return last === undefined ? unreachable : new SyncError(Code.Unavailable, `${unreachable.message}: ${last.message}`, "server_unreachable");
      });
    }
    if (state === "connected") return;
    if (state === "offline") throw this.tracker.lastChange?.error ?? new SyncError(Code.Unavailable, "offline");
    throw new ClientClosedError();
  }

  /** Reconnects now: from "offline", during a backoff wait, or dropping the current connection. */
  reconnect(): void {
    this.checkOpen();
    if (!this.running) {
      void this.connect({ timeoutMs: Infinity }).catch(() => undefined);
      return;
    }
    this.reconnectNow = true;
    if (this.link !== undefined) {
      this.link.fail(new SyncError(Code.Canceled, "reconnect requested"));
      this.transport.close();
    } else if (this.state === "offline") {
      this.tracker.set(this.retryingState());
    }
    this.backoffWait.wake?.();
    this.offlineWait.wake?.();
  }

  /** Closes the stream and the socket; pending publishes fail with ClientClosedError (and stay in a persistent outbox). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.link?.fail(new ClientClosedError());
    this.transport.close();
    this.backoffWait.wake?.();
    this.offlineWait.wake?.();
    this.outboxDirty?.();
    for (const waiter of this.waiters.values()) waiter.reject(new ClientClosedError());
    this.waiters.clear();
    for (const subscription of this.subs.values()) {
      subscription.detach();
      subscription.resolveActivated(new ClientClosedError());
    }
    this.removeHints?.();
    this.coordinator.close();
    this.store.close();
    this.tracker.set("closed");
    this.inbox.close();
  }

  // ---------------------------------------------------------------- observation

  /** The connection state now. */
  get state(): ConnectionState {
    return this.tracker.state;
  }

  /** Calls `callback` on every state change; returns a function that stops it. */
  onStateChange(callback: (change: StateChange) => void): () => void {
    return this.tracker.listen(callback);
  }

  /** Resolves once the state is one of `states` (or "closed"). */
  waitForState(...states: ConnectionState[]): Promise<ConnectionState> {
    return this.tracker.waitFor(...states);
  }

  /** This connection's peer id as the server assigned it ("" when not connected). */
  get peerId(): string {
    return this.connectedLink?.welcome?.peerId ?? "";
  }

  /** What the connected server said about itself. */
  get serverInfo(): ServerInfo | undefined {
    return this.connectedLink?.welcome?.serverInfo;
  }

  /**
   * The message limit in bytes every request is checked against before it is queued or
   * sent: the connected server's (its ConnectionSettings and ServerInfo
   * `max_message_bytes`, the smaller), else the last server's, else the server default
   * `DEFAULT_MAX_MESSAGE_BYTES` (1 MiB). Larger requests fail with MessageTooLargeError.
   */
  get maxMessageBytes(): number {
    const link = this.connectedLink ?? this.link;
    return (link === undefined ? undefined : this.limitOn(link)) ?? this.lastLimit ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** The limit the server announced on `link` (undefined until it did); remembered for later. */
  private limitOn(link: SyncLink): number | undefined {
    const limit = announcedLimit(this.transport.connection?.settings?.maxMessageBytes, link.welcome?.serverInfo?.maxMessageBytes);
    if (limit !== undefined) this.lastLimit = limit;
    return limit;
  }

  /** The subscriptions, by collection id. */
  get subscriptions(): ReadonlyMap<string, Subscription> {
    return new Map(this.subs);
  }

  /** Publishes not yet acknowledged (queued or in flight, by any tab sharing the outbox). */
  outboxSize(): Promise<number> {
    return this.store.count();
  }

  /**
   * Deltas, presence, recovery notices and unclaimed errors, in arrival order, from now
   * on; ends after `close()`. An iterator more than `eventBuffer` events behind ends with
   * EventsOverflowError.
   */
  events(): AsyncGenerator<SyncEvent, void, undefined> {
    return this.inbox.iterate();
  }

  [Symbol.asyncIterator](): AsyncGenerator<SyncEvent, void, undefined> {
    return this.events();
  }

  /** Calls `callback` with every event of `type`; returns a function that stops it. */
  on<T extends SyncEventType>(type: T, callback: (event: SyncEventOf<T>) => void): () => void {
    return this.inbox.on(type, callback);
  }

  // -------------------------------------------------------------- subscriptions

  /**
   * Joins a collection; resolves with its handle (`epoch`, `offset`, `recovery`) once the
   * server confirmed it. Offline, waits for the connection. After reconnects the client
   * rejoins by itself from the handle's position and reports a `RecoveryEvent`; a rejoin
   * refused for now (retryable, e.g. `broker_unavailable`) is sent again after the
   * server's `retryAfterMs`, one refused for good ends the subscription with an `error` event.
   * @throws SyncError ALREADY_EXISTS when subscribed already; RequestFailed when the server refuses.
   */
  async subscribe(collectionId: string, options: SubscribeOptions = {}): Promise<Subscription> {
    this.checkOpen();
    if (this.subs.has(collectionId)) {
      throw new SyncError(Code.AlreadyExists, `already subscribed to ${JSON.stringify(collectionId)}`, "already_subscribed", collectionId);
    }
    const subscription = new Subscription(
      collectionId,
      options.joinPresence ?? false,
      options.userInfo === undefined ? undefined : create(UserInfoSchema, options.userInfo),
      options.lastOffset,
      options.epoch ?? "",
    );
    checkSize(requestSize({ case: "subscribe", value: subscription.subscribeMessage() }), this.maxMessageBytes, collectionId, "subscribe");
    this.subs.set(collectionId, subscription);
    const link = this.link;
    if (link !== undefined && link.alive) void this.sendSubscribe(link, subscription);
    await subscription.activated;
    return subscription;
  }

  /** Leaves a collection; no event of it is delivered afterwards. @throws NotSubscribedError. */
  async unsubscribe(collectionId: string): Promise<void> {
    const subscription = this.subs.get(collectionId);
    if (subscription === undefined) throw new NotSubscribedError(collectionId);
    this.subs.delete(collectionId);
    subscription.resolveActivated(new SyncError(Code.Canceled, `unsubscribed from ${JSON.stringify(collectionId)}`, "unsubscribed"));
    const link = this.link;
    if (link !== undefined && link.alive && subscription.sentOn === link) {
      await this.withTimeout(link.request({ case: "unsubscribe", value: { collectionId } })).catch(() => undefined);
    }
    subscription.detach();
  }

  private sendSubscribe(link: SyncLink, subscription: Subscription): Promise<void> | undefined {
    if (subscription.sentOn === link) return undefined;
    subscription.markSent(link);
    let reply: Promise<SyncResponse>;
    try {
      reply = link.request({ case: "subscribe", value: subscription.subscribeMessage() });
    } catch (error) {
      // Over this server's message limit (smaller than when it was subscribed): refused for good.
      if (error instanceof MessageTooLargeError) this.subscribeRefused(subscription, error);
      return undefined; // otherwise the link ended; the next one rejoins
    }
    return reply.then(
      (response) => this.subscribeAnswered(link, subscription, response),
      () => undefined, // the link ended; the next one rejoins
    );
  }

  private subscribeAnswered(link: SyncLink, subscription: Subscription, response: SyncResponse): void {
    if (this.subs.get(subscription.collectionId) !== subscription) return;
    if (response.kind.case === "error") {
      const error = RequestFailed.fromProto(response.kind.value);
      if (subscription.activatedSettled && error.retryable) {
        this.retryRejoin(link, subscription, error);
        return;
      }
      this.subscribeRefused(subscription, error);
      return;
    }
    subscription.resolveActivated();
    if (subscription.presence !== undefined && link.alive) this.sendPresence(link, subscription, subscription.presence);
  }

  /** Drops a subscription the server refused (or that cannot be sent): its `subscribe()` rejects, or an ErrorEvent says so. */
  private subscribeRefused(subscription: Subscription, error: RequestFailed): void {
    this.subs.delete(subscription.collectionId);
    subscription.detach();
    if (subscription.activatedSettled) this.inbox.put({ type: "error", error, request: "subscribe" });
    else subscription.resolveActivated(error);
  }

  /** Sends a presence update; one over this server's message limit is dropped and reported as an ErrorEvent. */
  private sendPresence(link: SyncLink, subscription: Subscription, message: SetPresence): void {
    try {
      link.send({ case: "presence", value: message });
    } catch (error) {
      if (!(error instanceof MessageTooLargeError)) throw error;
      if (subscription.presence === message) subscription.presence = undefined;
      this.inbox.put({ type: "error", error, request: "presence" });
    }
  }

  /**
   * A rejoin refused for now (retryable, e.g. `broker_unavailable` while the node's
   * Redis fails over): the subscription stays and is sent again on the same link after
   * the server's `retryAfterMs` (1 s without one); if the link ends first, the next one
   * rejoins it. Dropping it would leave the collection silent.
   */
  private retryRejoin(link: SyncLink, subscription: Subscription, error: RequestFailed): void {
    this.stats.rejoinsRetried += 1;
    setTimeout(() => {
      if (!link.alive || subscription.sentOn !== link || this.subs.get(subscription.collectionId) !== subscription) return;
      subscription.detach();
      void this.sendSubscribe(link, subscription);
    }, error.retryAfterMs || 1000);
  }

  // ----------------------------------------------------------------- publishing

  /**
   * Publishes a delta: it is queued in the outbox under a new client message id and
   * sent in order once connected; resolves with the server's `PublishAck` (offset,
   * epoch, `duplicate` when a resend was de-duplicated). Offline it waits for the
   * reconnect; a retryable refusal (`retryAfterMs`) is retried.
   * @throws OutboxFullError at once when the outbox is at its limit; MessageTooLargeError
   *   (RESOURCE_EXHAUSTED, reason "message_too_large") at once, nothing queued, when the
   *   request exceeds `maxMessageBytes`, or later when it exceeds the limit of the server
   *   it is flushed to; RequestFailed when the server refuses the delta for good (either
   *   way it leaves the outbox); ClientClosedError when closed first.
   */
  async publish(collectionId: string, data: Uint8Array, options: PublishOptions = {}): Promise<PublishAck> {
    this.checkOpen();
    const delta = create(DeltaSchema, {
      collectionId,
      crdtType: options.crdtType ?? CrdtType.UNSPECIFIED,
      delta: data,
      timestamp: timestampNow(),
      replicaId: options.replicaId ?? this.replicaId,
      encoding: options.encoding ?? PayloadEncoding.UNSPECIFIED,
      clientMessageId: crypto.randomUUID(),
    });
    const encoded = toBinary(DeltaSchema, delta);
    checkSize(encoded.length + REQUEST_OVERHEAD, this.maxMessageBytes, collectionId);
    const acknowledged = new Promise<PublishAck>((resolve, reject) => this.waiters.set(delta.clientMessageId, { resolve, reject }));
    try {
      await this.store.add({ clientMessageId: delta.clientMessageId, collectionId, delta: encoded }, this.outboxLimit);
    } catch (error) {
      this.waiters.delete(delta.clientMessageId);
      throw error;
    }
    this.coordinator.post({ kind: "added" });
    this.markDirty();
    return await acknowledged;
  }

  private markDirty(): void {
    this.dirty = true;
    this.outboxDirty?.();
  }

  private onOutboxMessage(message: OutboxMessage): void {
    if (message.kind === "added") {
      this.markDirty();
    } else if (message.kind === "acknowledged") {
      this.settle(message.clientMessageId, fromBinary(PublishAckSchema, message.ack), undefined);
    } else {
      this.settle(message.clientMessageId, undefined, new RequestFailed(message.code as Code, message.message, message.reasonCode));
    }
  }

  /** Resolves (or rejects) the local waiter of a publish; returns whether there was one. */
  private settle(clientMessageId: string, ack: PublishAck | undefined, error: SyncError | undefined): boolean {
    const waiter = this.waiters.get(clientMessageId);
    if (waiter === undefined) return false;
    this.waiters.delete(clientMessageId);
    if (error !== undefined) waiter.reject(error);
    else waiter.resolve(ack!);
    return true;
  }

  /** Runs for one connected link: flushes the outbox, holding the flush lock, whenever it has entries. */
  private async pumpOutbox(link: SyncLink): Promise<void> {
    while (link.alive && !this.closed) {
      if (!this.dirty) {
        await new Promise<void>((resolve) => {
          this.outboxDirty = resolve;
          void link.ended.then(() => resolve());
        });
        this.outboxDirty = undefined;
        continue;
      }
      this.dirty = false;
      await this.coordinator.withFlushLock(() => this.flush(link));
    }
  }

  /**
   * Sends the stored entries in order, a window at a time, until the outbox is empty or
   * the link ends; on the first refusal for now in a window, waits `retryAfterMs` and
   * sends again from that entry. A server with `ServerInfo.publishHolds` refuses every
   * later publish of the refused one's collection (`publish_held`) until it comes back,
   * so a window may hold several entries of a collection. Against another server the
   * next one it reads may be accepted, so a window holds at most one entry per
   * collection.
   */
  private async flush(link: SyncLink): Promise<void> {
    while (link.alive) {
      const listed = await this.store.list(this.maxInFlight);
      const entries = link.welcome?.serverInfo?.publishHolds === true ? listed : onePerCollection(listed);
      if (entries.length === 0 || !link.alive) return;
      const replies = entries.map((entry): Promise<SyncResponse> | MessageTooLargeError => {
        const delta = fromBinary(DeltaSchema, entry.delta);
        let reply: Promise<SyncResponse>;
        try {
          reply = link.request({ case: "publish", value: { delta } }, entry.delta.length + REQUEST_OVERHEAD);
        } catch (error) {
          // Over this server's limit (queued offline, or by an earlier page): refused for good below.
          if (error instanceof MessageTooLargeError) return error;
          return Promise.reject(error); // the link ended
        }
        this.stats.publishesSent += 1;
        reply.catch(() => undefined); // read below, unless the link ends first
        return reply;
      });
      for (const [index, reply] of replies.entries()) {
        const entry = entries[index]!;
        let error: RequestFailed;
        if (reply instanceof MessageTooLargeError) {
          error = reply;
        } else {
          let response: SyncResponse;
          try {
            response = await reply;
          } catch {
            return; // the link ended: the entries stay and the next connection resends them
          }
          if (response.kind.case === "publishAck") {
            await this.store.remove(entry.seq);
            const ack = response.kind.value;
            this.stats.acknowledged += 1;
            if (ack.duplicate) this.stats.duplicates += 1;
            if (!this.settle(entry.clientMessageId, ack, undefined)) {
              this.coordinator.post({ kind: "acknowledged", clientMessageId: entry.clientMessageId, ack: toBinary(PublishAckSchema, ack) });
            }
            continue;
          }
          error =
            response.kind.case === "error"
              ? RequestFailed.fromProto(response.kind.value)
              : new RequestFailed(Code.Internal, `unexpected answer to a publish: ${String(response.kind.case)}`);
        }
        if (error.retryable) {
          // Wait, then send this entry and everything after it again (the server
          // de-duplicates whatever it already accepted).
          const rest = await Promise.allSettled(replies.slice(index + 1));
          this.stats.publishesHeld += rest.filter((settled) => isHeld(settled)).length;
          const waited: { wake?: (() => void) | undefined } = {};
          void link.ended.then(() => waited.wake?.());
          await pause(error.retryAfterMs || 1000, waited);
          break;
        }
        // Refused for good: the entry leaves the outbox, so it cannot hold up the ones after it.
        await this.store.remove(entry.seq);
        if (!this.settle(entry.clientMessageId, undefined, error)) {
          this.coordinator.post({
            kind: "refused",
            clientMessageId: entry.clientMessageId,
            code: error.code,
            message: error.message,
            reasonCode: error.reasonCode,
          });
          this.inbox.put({ type: "error", error, request: "publish" });
        }
      }
    }
  }

  /**
   * Stores the application's state of a collection at `offset` (every delta up to and
   * including it) as its snapshot, for subscribers whose position history no longer
   * covers (they get recovery "snapshot" and a SnapshotEvent). Only on servers that let
   * clients put snapshots (`--client-snapshots`).
   * @throws NotConnectedError; RequestFailed when the server refuses (PERMISSION_DENIED
   *   when clients may not put snapshots, INVALID_ARGUMENT beyond `max_snapshot_bytes` or
   *   past the latest offset); MessageTooLargeError (RESOURCE_EXHAUSTED, reason
   *   "message_too_large") at once, nothing sent, when the request exceeds
   *   `maxMessageBytes`; SyncError DEADLINE_EXCEEDED after `requestTimeoutMs`.
   */
  async putSnapshot(collectionId: string, offset: bigint, data: Uint8Array, epoch = ""): Promise<SnapshotStored> {
    const kind = { case: "putSnapshot" as const, value: { collectionId, offset, data, epoch } };
    const size = requestSize(kind);
    checkSize(size, this.maxMessageBytes, collectionId, "putSnapshot");
    const link = await this.readyLink("putSnapshot");
    const reply = await this.withTimeout(link.request(kind, size));
    if (reply.kind.case === "snapshotStored") return reply.kind.value;
    if (reply.kind.case === "error") throw RequestFailed.fromProto(reply.kind.value);
    throw new RequestFailed(Code.Internal, `unexpected answer to PutSnapshot: ${String(reply.kind.case)}`);
  }

  // ------------------------------------------------------------------- presence

  /**
   * Sets this client's presence in a subscribed collection; offline it is sent after the
   * reconnect (and restored after every reconnect); refusals arrive as ErrorEvent.
   * @throws NotSubscribedError; MessageTooLargeError (RESOURCE_EXHAUSTED, reason
   *   "message_too_large") when the update exceeds `maxMessageBytes` (nothing changes).
   */
  setPresence(collectionId: string, options: PresenceOptions = {}): void {
    const subscription = this.subs.get(collectionId);
    if (subscription === undefined) throw new NotSubscribedError(collectionId);
    const message = create(SetPresenceSchema, {
      collectionId,
      action: options.action ?? PresenceAction.UPDATE,
      status: options.status ?? "",
      userInfo: options.userInfo,
    });
    checkSize(requestSize({ case: "presence", value: message }), this.maxMessageBytes, collectionId, "presence");
    subscription.presence = message.action === PresenceAction.LEAVE ? undefined : message;
    const link = this.link;
    if (link !== undefined && link.alive && subscription.active && subscription.sentOn === link) {
      this.sendPresence(link, subscription, message);
    }
  }

  /**
   * Who is present in a collection (GetPresence on the current connection), by peer id;
   * pages through the server's byte-bounded answers (`presencePages`).
   * @throws NotConnectedError, SyncError.
   */
  async presence(collectionId: string): Promise<Presence[]> {
    await this.readyLink("presence");
    try {
      const response = await presencePages(
        (request) => this.rpc.getPresence(request, { headers: this.callHeaders(), timeoutMs: this.requestTimeoutMs }),
        collectionId,
      );
      return response.members;
    } catch (error) {
      throw toSyncError(error);
    }
  }

  /**
   * A slice of a collection's history (to resynchronise after a gap): deltas with offset
   * > `sinceOffset` in `epoch` ("" accepts any), at most `limit` (0: the server's
   * `history_size`), with the epoch, the latest and oldest offsets and the recovery
   * classification (docs/protocol.md, "The sync service"). The server bounds each
   * GetHistory answer by bytes (`truncated`); this pages on from the last delta until
   * nothing more is due up to the first answer's latest offset (`historyPages`).
   * @throws NotConnectedError, SyncError.
   */
  async history(
    collectionId: string,
    options: { readonly sinceOffset?: bigint; readonly epoch?: string; readonly limit?: number } = {},
  ): Promise<GetHistoryResponse> {
    await this.readyLink("history");
    try {
      return await historyPages(
        (request) => this.rpc.getHistory(request, { headers: this.callHeaders(), timeoutMs: this.requestTimeoutMs }),
        { collectionId, sinceOffset: options.sinceOffset ?? 0n, epoch: options.epoch ?? "", limit: options.limit ?? 0 },
      );
    } catch (error) {
      throw toSyncError(error);
    }
  }

  private async readyLink(what: string): Promise<SyncLink> {
    this.checkOpen();
    const deadline = Date.now() + this.requestTimeoutMs;
    for (;;) {
      const link = this.connectedLink;
      if (link !== undefined && link.alive) return link;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new NotConnectedError(what, this.requestTimeoutMs);
      const waited: { wake?: (() => void) | undefined } = {};
      const stop = this.tracker.listen((change) => {
        if (change.state === "connected" || change.state === "closed") waited.wake?.();
      });
      await pause(remaining, waited);
      stop();
      this.checkOpen();
    }
  }

  private callHeaders(): Record<string, string> {
    const token = this.tokens?.token;
    return token === undefined ? {} : { authorization: `Bearer ${token}` };
  }

  private checkOpen(): void {
    if (this.closed) throw new ClientClosedError();
  }

  /** `promise`, or a rejection (DEADLINE_EXCEEDED "timeout" by default) once `ms` (default `requestTimeoutMs`) passed. */
  private withTimeout<T>(promise: Promise<T>, ms = this.requestTimeoutMs, error?: () => SyncError): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(error?.() ?? new SyncError(Code.DeadlineExceeded, `no answer within ${ms} ms`, "timeout")),
        ms,
      );
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (failure: unknown) => {
          clearTimeout(timer);
          reject(failure);
        },
      );
    });
  }

  // ------------------------------------------------------------ incoming messages

  private handle(link: SyncLink, response: SyncResponse): void {
    const kind = response.kind;
    switch (kind.case) {
      case "delta":
        this.onDelta(kind.value);
        break;
      case "subscribed":
        this.onSubscribed(kind.value, response.requestId !== 0n);
        break;
      case "snapshot": {
        const subscription = this.subs.get(kind.value.collectionId);
        if (subscription === undefined || !subscription.active) break;
        this.inbox.put({ type: "snapshot", collectionId: kind.value.collectionId, snapshot: kind.value });
        subscription.restore(kind.value);
        break;
      }
      case "peerJoin":
        if (this.subs.has(kind.value.collectionId)) this.inbox.put({ type: "peerJoined", collectionId: kind.value.collectionId, join: kind.value });
        break;
      case "peerLeave":
        if (this.subs.has(kind.value.collectionId)) this.inbox.put({ type: "peerLeft", collectionId: kind.value.collectionId, leave: kind.value });
        break;
      case "presence":
        if (this.subs.has(kind.value.collectionId)) {
          this.inbox.put({ type: "presenceChanged", collectionId: kind.value.collectionId, presence: kind.value });
        }
        break;
      case "error": {
        if (link.isPending(response.requestId)) break; // the requester handles it
        const error = RequestFailed.fromProto(kind.value);
        if (response.requestId === 0n && error.code === Code.PermissionDenied && this.subs.has(error.collectionId)) {
          const subscription = this.subs.get(error.collectionId)!;
          this.subs.delete(error.collectionId);
          subscription.detach();
          subscription.resolveActivated(error);
          this.inbox.put({ type: "error", error, request: "subscribe" });
        } else {
          this.inbox.put({ type: "error", error, request: "" });
        }
        break;
      }
      default:
        break;
    }
  }

  private onDelta(delta: Delta): void {
    const subscription = this.subs.get(delta.collectionId);
    if (subscription === undefined || !subscription.active) return;
    if (delta.epoch !== subscription.epoch) {
      // A new epoch without a notice: history moved on under us. Say so.
      this.inbox.put({
        type: "recovery",
        collectionId: delta.collectionId,
        recovery: "epoch_mismatch",
        epoch: delta.epoch,
        offset: delta.offset,
        previousEpoch: subscription.epoch,
        previousOffset: subscription.offset,
        replayed: 0,
        oldestOffset: 0n,
        unsolicited: true,
        snapshotOffset: 0n,
      });
    } else if (!subscription.accept(delta)) {
      return; // a duplicate (replayed and live overlap)
    }
    subscription.advance(delta);
    this.inbox.put({ type: "delta", collectionId: delta.collectionId, delta });
  }

  private onSubscribed(subscribed: Subscribed, solicited: boolean): void {
    const subscription = this.subs.get(subscribed.collectionId);
    if (subscription === undefined) return;
    const first = solicited && !subscription.activatedSettled;
    if (!first) {
      this.inbox.put({
        type: "recovery",
        collectionId: subscribed.collectionId,
        recovery: toRecovery(subscribed.recovery),
        epoch: subscribed.epoch,
        offset: subscribed.offset,
        previousEpoch: subscription.epoch,
        previousOffset: subscription.offset,
        replayed: subscribed.replayed,
        oldestOffset: subscribed.oldestOffset,
        unsolicited: !solicited,
        snapshotOffset: subscribed.snapshotOffset,
      });
    }
    subscription.applyJoined(subscribed, solicited);
    if (first) subscription.resolveActivated();
  }

  // ------------------------------------------------------------ connection loop

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      let link: SyncLink;
      try {
        link = await this.connectOnce();
      } catch (caught) {
        if (this.closed) return;
        const [retry, error] = this.tokenRefusal(toSyncError(caught));
        if (retry) continue;
        failures += 1;
        if (await this.afterFailure(error, failures)) failures = 0;
        continue;
      }
      const [ended, reached] = await this.serve(link);
      if (this.closed) return;
      const [retry, end] = this.tokenRefusal(ended);
      if (retry) continue;
      // A connection that never got its subscriptions back counts as a failure.
      failures = reached ? 1 : failures + 1;
      if (await this.afterFailure(end, failures)) failures = 0;
    }
  }

  /**
   * With a token provider, an UNAUTHENTICATED failure asks the provider once more at once
   * (returns [true, error]); a second refusal in a row becomes TokenRefusedError, reported
   * as a TokenRefused event, and the client goes "offline".
   */
  private tokenRefusal(error: SyncError): [boolean, SyncError] {
    if (this.tokens === undefined || error.code !== Code.Unauthenticated) return [false, error];
    if (!(error instanceof TokenRefusedError)) {
      if (!this.tokenRetried) {
        this.tokenRetried = true;
        this.tracker.set(this.retryingState(), error, 0);
        return [true, error];
      }
      error = new TokenRefusedError(error);
    }
    this.inbox.put({ type: "tokenRefused", error: error as TokenRefusedError });
    return [false, error];
  }

  /** Goes "offline" (and waits for `reconnect()`) or waits out a backoff delay; true when `reconnect()` asked for a fresh start. */
  private async afterFailure(error: SyncError, failures: number): Promise<boolean> {
    const giveUp =
      FATAL_CODES.has(error.code) ||
      (error instanceof ServerDisconnected && !error.reconnect) ||
      this.backoff.exhausted(failures);
    if (this.reconnectNow) {
      this.reconnectNow = false;
      return true;
    }
    if (giveUp) {
      this.tracker.set("offline", error);
      await new Promise<void>((resolve) => (this.offlineWait.wake = resolve));
      this.offlineWait.wake = undefined;
      this.reconnectNow = false;
      this.tokenRetried = false;
      return true;
    }
    const delay = this.backoff.delay(failures);
    this.tracker.set(this.retryingState(), error, delay);
    await pause(delay, this.backoffWait);
    const restart = this.reconnectNow;
    this.reconnectNow = false;
    return restart;
  }

  private retryingState(): ConnectionState {
    return this.everConnected ? "reconnecting" : "connecting";
  }

  private async connectOnce(): Promise<SyncLink> {
    if (this.tokens !== undefined) await this.tokens.fetch();
    const link = new SyncLink(
      this.rpc,
      this.callHeaders(),
      (l, response) => this.handle(l, response),
      (l) => this.limitOn(l),
    );
    this.link = link;
    try {
      await link.open(this.connectTimeoutMs);
    } catch (error) {
      this.link = undefined;
      throw error;
    }
    return link;
  }

  /** Runs one connection until it ends; returns why, and whether it got as far as "connected". */
  private async serve(link: SyncLink): Promise<[SyncError, boolean]> {
    let reached = false;
    const background: Promise<void>[] = [];
    try {
      const replies = [...this.subs.values()].map((subscription) => this.sendSubscribe(link, subscription)).filter((r) => r !== undefined);
      if (replies.length > 0) {
        await this.withTimeout(Promise.all(replies)).catch((error: unknown) => {
          link.fail(new SyncError(Code.DeadlineExceeded, `subscriptions not confirmed: ${toSyncError(error).message}`));
        });
      }
      if (link.alive && !this.closed) {
        reached = true;
        this.tokenRetried = false;
        this.connectedLink = link;
        this.everConnected = true;
        this.tracker.set("connected");
        background.push(this.supervise(link, this.pumpOutbox(link), "outbox flush"));
        if (this.tokens !== undefined) background.push(this.supervise(link, this.keepTokenFresh(link, this.tokens), "token refresh"));
      }
      return [await link.ended, reached];
    } finally {
      link.fail(new SyncError(Code.Canceled, "link closed"));
      await Promise.allSettled(background);
      this.link = undefined;
      this.connectedLink = undefined;
      for (const subscription of this.subs.values()) subscription.detach();
    }
  }

  private supervise(link: SyncLink, work: Promise<void>, what: string): Promise<void> {
    return work.catch((error: unknown) => {
      if (link.alive) link.fail(new SyncError(Code.Internal, `${what} failed: ${String(error)}`));
    });
  }

  /**
   * Runs for one connected link: ahead of each token's expiry asks the provider for the
   * next one and sends it in band (RefreshToken). A refusal asks once more; a second one
   * ends the link with TokenRefusedError. Any other refusal gets the new token to the
   * server by a reconnect instead.
   */
  private async keepTokenFresh(link: SyncLink, tokens: TokenSource): Promise<void> {
    let retried = false;
    const waited: { wake?: (() => void) | undefined } = {};
    void link.ended.then(() => waited.wake?.());
    while (link.alive) {
      if (!retried) {
        const when = tokens.refreshAtMs();
        if (when === undefined) return;
        await pause(Math.max(when - Date.now(), 0), waited);
      }
      if (!link.alive) return;
      let reply: SyncResponse;
      try {
        const token = await tokens.fetch();
        reply = await this.withTimeout(link.request({ case: "refreshToken", value: { token } }));
      } catch (error) {
        link.fail(toSyncError(error));
        return;
      }
      if (reply.kind.case === "tokenRefreshed") {
        retried = false;
        continue;
      }
      const refusal =
        reply.kind.case === "error" ? RequestFailed.fromProto(reply.kind.value) : new RequestFailed(Code.Internal, "unexpected answer to RefreshToken");
      if (refusal.code !== Code.Unauthenticated) {
        link.fail(new SyncError(Code.Unavailable, `in-band token refresh refused (${refusal.message}); reconnecting with the new token`, "token_refresh"));
        return;
      }
      if (retried) {
        link.fail(new TokenRefusedError(refusal));
        return;
      }
      retried = true;
    }
  }

  /** The browser's `online` event and the page becoming visible cut a backoff wait short (hints only). */
  private listenToBrowserHints(): (() => void) | undefined {
    const target = globalThis as { addEventListener?: (type: string, listener: () => void) => void; removeEventListener?: (type: string, listener: () => void) => void };
    const doc = (globalThis as { document?: { visibilityState?: string; addEventListener(t: string, l: () => void): void; removeEventListener(t: string, l: () => void): void } }).document;
    if (typeof target.addEventListener !== "function" || doc === undefined) return undefined;
    const hint = (): void => {
      if (this.state === "reconnecting" || this.state === "connecting") this.backoffWait.wake?.();
    };
    const visible = (): void => {
      if (doc.visibilityState === "visible") hint();
    };
    target.addEventListener("online", hint);
    doc.addEventListener("visibilitychange", visible);
    return () => {
      target.removeEventListener?.("online", hint);
      doc.removeEventListener("visibilitychange", visible);
    };
  }
}

