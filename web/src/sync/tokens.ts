/**
 * Where the client's token comes from and when it asks for the next one (the contract
 * of docs/security.md, as the Python client's `client/tokens.py`): the provider is asked
 * at every connection attempt and ahead of the token's expiry, at `exp` (read from the
 * JWT's claims without verifying them; the server verifies) minus `tokenRefreshMarginMs`,
 * but never before half the token's lifetime (at least 1 s) has passed. A token without a
 * readable `exp` is only replaced at the next reconnect.
 */
import { TokenProviderError } from "./errors.js";

/** Returns a fresh bearer token (without the "Bearer " prefix), synchronously or not. */
export type TokenProvider = () => string | Promise<string>;

/** Milliseconds at least between two refreshes, however short-lived the tokens are. */
export const MIN_REFRESH_INTERVAL_MS = 1000;

/** The `exp` claim of a JWT in milliseconds since the epoch, read without checking the signature; undefined otherwise. */
export function tokenExpiryMs(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const exp: unknown = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** Asks the provider for tokens and says when the current one needs replacing. */
export class TokenSource {
  /** The latest token the provider returned. */
  token: string | undefined;
  /** Its `exp` in ms since the epoch, when it has one. */
  expiresAtMs: number | undefined;
  /** How many times the provider was asked. */
  requests = 0;
  private fetchedAtMs = 0;

  constructor(
    private readonly provider: TokenProvider,
    private readonly marginMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Asks the provider and makes its token current. @throws TokenProviderError when it throws or returns no token. */
  async fetch(): Promise<string> {
    this.requests += 1;
    let result: unknown;
    try {
      result = await this.provider();
    } catch (error) {
      throw new TokenProviderError(`token provider failed: ${String(error)}`);
    }
    if (typeof result !== "string" || result === "") {
      throw new TokenProviderError(`token provider returned ${JSON.stringify(result)}, not a token`);
    }
    this.token = result;
    this.expiresAtMs = tokenExpiryMs(result);
    this.fetchedAtMs = this.now();
    return result;
  }

  /** When (ms since the epoch) to ask for the next token; undefined without `exp`. */
  refreshAtMs(): number | undefined {
    if (this.expiresAtMs === undefined) return undefined;
    const earliest = this.fetchedAtMs + Math.max((this.expiresAtMs - this.fetchedAtMs) / 2, MIN_REFRESH_INTERVAL_MS);
    return Math.max(this.expiresAtMs - this.marginMs, earliest);
  }
}
