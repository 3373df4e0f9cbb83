/**
 * Reconnect delays: capped exponential backoff with full jitter (a uniform draw between
 * 0 and the exponential bound), as the Python client's `client/backoff.py`; defaults
 * follow Centrifugo's client: 500 ms growing to 20 s, unlimited attempts.
 */

/** Reconnect policy; times in milliseconds. */
export interface BackoffOptions {
  /** Bound of the first delay (default 500 ms). */
  readonly baseMs?: number;
  /** Largest bound; no delay ever exceeds it (default 20 000 ms). */
  readonly capMs?: number;
  /** Growth of the bound per failed attempt (default 2). */
  readonly multiplier?: number;
  /** Consecutive failed attempts before the client goes "offline" (default: never). */
  readonly maxAttempts?: number;
  /** Uniform random number in [0, 1) (default `Math.random`); tests pass their own. */
  readonly random?: () => number;
}

/** Full-jitter exponential backoff. @throws RangeError for base <= 0, cap < base, multiplier < 1 or maxAttempts < 1. */
export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly multiplier: number;
  readonly maxAttempts: number | undefined;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.capMs = options.capMs ?? 20_000;
    this.multiplier = options.multiplier ?? 2;
    this.maxAttempts = options.maxAttempts;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0 && this.baseMs <= this.capMs)) {
      throw new RangeError(`backoff needs 0 < baseMs <= capMs, got ${this.baseMs} and ${this.capMs}`);
    }
    if (!(this.multiplier >= 1)) throw new RangeError(`backoff multiplier must be >= 1, got ${this.multiplier}`);
    if (this.maxAttempts !== undefined && !(this.maxAttempts >= 1)) {
      throw new RangeError(`maxAttempts must be >= 1, got ${this.maxAttempts}`);
    }
  }

  /** Upper bound (ms) of the delay before attempt `attempt` (1-based). */
  bound(attempt: number): number {
    const exponent = Math.min(Math.max(attempt - 1, 0), 64);
    return Math.min(this.capMs, this.baseMs * this.multiplier ** exponent);
  }

  /** A full-jitter delay (ms) before attempt `attempt`: uniform in [0, bound(attempt)). */
  delay(attempt: number): number {
    return this.random() * this.bound(attempt);
  }

  /** True once `failures` consecutive attempts failed and the policy says stop. */
  exhausted(failures: number): boolean {
    return this.maxAttempts !== undefined && failures >= this.maxAttempts;
  }
}
