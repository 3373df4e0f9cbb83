/**
 * The client's connection state, as the Python client's `client/state.py`:
 *
 * - "connecting": first connection attempt(s), never connected yet;
 * - "connected": the Sync stream is open and every subscription has been (re)joined (or
 *   its rejoin was refused for now and is sent again after the server's `retryAfterMs`);
 * - "reconnecting": the connection was lost; the client retries with backoff;
 * - "offline": the client is not trying (not started, attempts exhausted, or refused for
 *   good); publishes still queue; `reconnect()` starts again;
 * - "closed": `close()` was called; terminal.
 */
import type { SyncError } from "./errors.js";

/** Where the client's connection stands. */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline" | "closed";

/** One transition, with why and (while retrying) when the next attempt is. */
export interface StateChange {
  readonly state: ConnectionState;
  readonly previous: ConnectionState;
  /** What ended the connection or failed the attempt, if anything. */
  readonly error?: SyncError | undefined;
  /** Retrying: milliseconds until the next attempt. */
  readonly delayMs?: number | undefined;
}

/** Holds the state; tells listeners and waiters about each change. */
export class StateTracker {
  private current: ConnectionState;
  private readonly listeners = new Set<(change: StateChange) => void>();
  private last: StateChange | undefined;

  constructor(initial: ConnectionState) {
    this.current = initial;
  }

  get state(): ConnectionState {
    return this.current;
  }

  get lastChange(): StateChange | undefined {
    return this.last;
  }

  /** Records a transition; repeating the same state is reported only with a new error or delay. */
  set(state: ConnectionState, error?: SyncError, delayMs?: number): void {
    if (this.current === "closed") return;
    if (state === this.current && this.last !== undefined && this.last.error === error && this.last.delayMs === delayMs) return;
    const change: StateChange = { state, previous: this.current, error, delayMs };
    this.current = state;
    this.last = change;
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (failure) {
        console.error("syncwire: state listener failed", failure);
      }
    }
  }

  /** Calls `listener` on every change; returns a function that removes it. */
  listen(listener: (change: StateChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the state as soon as it is one of `states` (or "closed"). */
  waitFor(...states: ConnectionState[]): Promise<ConnectionState> {
    if (states.includes(this.current) || this.current === "closed") return Promise.resolve(this.current);
    return new Promise((resolve) => {
      const stop = this.listen((change) => {
        if (states.includes(change.state) || change.state === "closed") {
          stop();
          resolve(change.state);
        }
      });
    });
  }
}
