/** HS256 JWTs for the tests' `--auth-secret` servers. */
import { createHmac } from "node:crypto";

/** A JWT with `claims`, signed with `secret` (HS256). */
export function signToken(secret: string, claims: Record<string, unknown>): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}
