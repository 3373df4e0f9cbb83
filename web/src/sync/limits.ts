/**
 * The server's message limit as the client sees it, and the size check every request of
 * the Sync stream passes before it is queued or sent (as the Python client's
 * `client/publishing.py` `check_size`). A request over the limit would make the
 * transport end the whole stream (docs/browser.md, Errors), and a queued one would do so
 * again after every reconnect; refusing it locally loses nothing else.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { SyncRequestSchema } from "../gen/syncwire/v1/sync_pb.js";
import { MessageTooLargeError } from "./errors.js";
import type { RequestKind } from "./link.js";

/** The server's default `max_message_bytes` (1 MiB): the limit assumed before any server announced its own. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/** Upper bound of what a SyncRequest adds around a publish's encoded delta (request id, tags, lengths), in bytes. */
export const REQUEST_OVERHEAD = 32;

/** The largest request id a link can use, so the size computed below is an upper bound. */
const LARGEST_REQUEST_ID = 0xffff_ffff_ffff_ffffn;

/** The encoded size in bytes of a SyncRequest carrying `kind` (an upper bound: the largest request id). */
export function requestSize(kind: RequestKind): number {
  return toBinary(SyncRequestSchema, create(SyncRequestSchema, { requestId: LARGEST_REQUEST_ID, kind })).length;
}

/**
 * Throws MessageTooLargeError (RESOURCE_EXHAUSTED, reason "message_too_large") when a
 * request of `size` bytes exceeds `limit` bytes. `what` names the request in the message.
 */
export function checkSize(size: number, limit: number, collectionId: string, what = "publish"): void {
  if (size > limit) throw new MessageTooLargeError(size, limit, collectionId, what);
}

/** The smallest of the limits a server announced (0 = not announced), or undefined when none is known. */
export function announcedLimit(...limits: (number | bigint | undefined)[]): number | undefined {
  let smallest: number | undefined;
  for (const limit of limits) {
    const value = limit === undefined ? 0 : Number(limit);
    if (value > 0 && (smallest === undefined || value < smallest)) smallest = value;
  }
  return smallest;
}
