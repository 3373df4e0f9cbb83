/**
 * Paging through answers the server bounds by bytes (`truncated`), as the Python
 * client's `client/paging.py` does: `historyPages` for GetHistory, `presencePages` for
 * GetPresence; each asks on until the caller has everything it asked for.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  RecoveryStatus,
  type GetHistoryRequestSchema,
  type GetHistoryResponse,
  type GetPresenceRequestSchema,
  type GetPresenceResponse,
} from "../gen/syncwire/v1/sync_pb.js";

/** One GetHistory call. */
export type GetHistory = (request: MessageInitShape<typeof GetHistoryRequestSchema>) => Promise<GetHistoryResponse>;

/** One GetPresence call. */
export type GetPresence = (request: MessageInitShape<typeof GetPresenceRequestSchema>) => Promise<GetPresenceResponse>;

/** What a caller asks for: deltas after `sinceOffset` in `epoch` ("" accepts any), at most `limit` (0: the server's `history_size`). */
export interface HistoryRequest {
  readonly collectionId: string;
  readonly sinceOffset: bigint;
  readonly epoch: string;
  readonly limit: number;
}

/**
 * Times history may move under the paging (trimmed past the last delta read, or a new
 * epoch) before the answer so far is returned as it is, `truncated` still set.
 */
export const MAX_RESTARTS = 3;

/**
 * One `GetHistoryResponse` holding every delta `request` asks for, read in as many
 * GetHistory calls (`getHistory`) as the server's byte bound needs: each next call asks
 * from the last delta's offset, in the first answer's epoch, for what is left of
 * `request.limit` (0 stays 0: the server's `history_size`), until an answer is not
 * `truncated`, the limit is reached, or the deltas reach the latest offset the first
 * answer named (later deltas are live traffic; the stream delivers them).
 *
 * The result is the first answer with the later answers' deltas appended and their
 * `offset` and `oldestOffset`; `truncated` is false unless history kept moving. When
 * history moves under the paging (a later answer is not RECOVERED), the deltas read so
 * far no longer join up with the rest: the result restarts from that answer, as a fresh
 * call would classify it. @throws what `getHistory` throws.
 */
export async function historyPages(getHistory: GetHistory, request: HistoryRequest): Promise<GetHistoryResponse> {
  let result = await getHistory({ ...request });
  let target = result.offset;
  let page = result;
  let restarts = 0;
  for (;;) {
    const last = page.deltas.at(-1);
    if (!page.truncated || last === undefined || last.offset >= target) break;
    let remaining = 0;
    if (request.limit > 0) {
      remaining = request.limit - result.deltas.length;
      if (remaining <= 0) break;
    }
    page = await getHistory({ collectionId: request.collectionId, sinceOffset: last.offset, epoch: result.epoch, limit: remaining });
    if (page.recovery !== RecoveryStatus.RECOVERED) {
      if (restarts === MAX_RESTARTS) {
        result.truncated = true;
        return result;
      }
      restarts += 1;
      result = page;
      target = page.offset;
      continue;
    }
    result.deltas.push(...page.deltas);
    result.offset = page.offset;
    result.oldestOffset = page.oldestOffset;
  }
  result.truncated = false; // everything asked for (up to the target offset or `limit`) is here
  return result;
}

/**
 * One `GetPresenceResponse` holding every presence entry of `collectionId`, read in as
 * many GetPresence calls (`getPresence`) as the server's byte bound needs, each from the
 * last member's peer id (peer ids only grow, so this ends). Peers that come or go between
 * the calls may be missing or included: presence events carry such changes.
 * @throws what `getPresence` throws.
 */
export async function presencePages(getPresence: GetPresence, collectionId: string): Promise<GetPresenceResponse> {
  const result = await getPresence({ collectionId });
  let page = result;
  for (;;) {
    const last = page.members.at(-1);
    if (!page.truncated || last === undefined) break;
    page = await getPresence({ collectionId, afterPeerId: last.peerId });
    result.members.push(...page.members);
  }
  result.truncated = false;
  return result;
}
