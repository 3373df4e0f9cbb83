/**
 * FrameBatch encoding: one WebSocket message is a run of length-delimited records,
 * `0x0A varint(len) Frame-bytes` (FrameBatch field 1), so batching is byte concatenation
 * and decoding goes record by record: one malformed frame fails only its own call.
 *
 * The same rules as the Python codec (`wire/codec.py`); both pass the shared vectors in
 * `tests/fixtures/ws_frame_vectors.json`. See docs/protocol.md, "Messages and batching".
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { FrameSchema, type Frame } from "./gen/syncwire/ws/v1/frame_pb.js";

const RECORD_TAG = 0x0a; // FrameBatch.frames: field 1, length-delimited
const CALL_ID_TAG = 0x08; // Frame.call_id: field 1, varint
const MESSAGE_TAG = 0x22; // Frame.message: field 4, length-delimited
const PAYLOAD_TAG = 0x0a; // CallMessage.payload: field 1, length-delimited
const MAX_UINT32 = 0xffffffff;

/** A record that could not be decoded; `callId` is set when it could be recovered. */
export class FrameDecodeError {
  constructor(
    /** What was wrong, for logs and the call's status details. */
    readonly reason: string,
    /** The call id read from the fields before the damage, if any. */
    readonly callId?: number,
  ) {}
}

/** Protobuf base-128 varint of a non-negative safe integer. */
export function encodeVarint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`varint value out of range: ${value}`);
  }
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return Uint8Array.from(out);
}

/** [value, next position]; throws RangeError on truncated or overlong input. */
function readVarint(data: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let scale = 1;
  for (let shift = 0; shift < 64; shift += 7) {
    if (pos >= data.length) throw new RangeError("truncated varint");
    const byte = data[pos++]!;
    result += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [result, pos];
    scale *= 0x80;
  }
  throw new RangeError("varint too long");
}

/** Position after a field's value; throws RangeError when it is broken. */
function skipField(data: Uint8Array, pos: number, wireType: number): number {
  let end: number;
  if (wireType === 0) return readVarint(data, pos)[1];
  if (wireType === 1) end = pos + 8;
  else if (wireType === 2) {
    const [length, next] = readVarint(data, pos);
    end = next + length;
  } else if (wireType === 5) end = pos + 4;
  else throw new RangeError(`unsupported wire type ${wireType}`);
  if (end > data.length) throw new RangeError("field runs past the end of the message");
  return end;
}

/** Joins byte arrays into one (a batch of records is their concatenation). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let size = 0;
  for (const part of parts) size += part.length;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** One frame as a FrameBatch record, ready to be concatenated with others. */
export function encodeRecord(frame: Frame): Uint8Array {
  const body = toBinary(FrameSchema, frame);
  return concatBytes([Uint8Array.of(RECORD_TAG), encodeVarint(body.length), body]);
}

/** Bytes of a varint (1 to 10). */
function varintSize(value: number): number {
  let size = 1;
  while (value > 0x7f) {
    value = Math.floor(value / 0x80);
    size++;
  }
  return size;
}

/** Writes a varint at `pos`; returns the position after it. */
function writeVarint(out: Uint8Array, pos: number, value: number): number {
  while (value > 0x7f) {
    out[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[pos++] = value;
  return pos;
}

/**
 * A CallMessage record built straight from the payload into one buffer (the hot path:
 * no Frame object, no intermediate copies); byte-identical to `encodeRecord` of the
 * same frame.
 */
export function encodeMessageRecord(callId: number, payload: Uint8Array): Uint8Array {
  const inner = payload.length > 0 ? 1 + varintSize(payload.length) + payload.length : 0;
  const head = (callId !== 0 ? 1 + varintSize(callId) : 0) + 1 + varintSize(inner);
  const body = head + inner;
  const out = new Uint8Array(1 + varintSize(body) + body);
  out[0] = RECORD_TAG;
  let pos = writeVarint(out, 1, body);
  if (callId !== 0) {
    out[pos++] = CALL_ID_TAG;
    pos = writeVarint(out, pos, callId);
  }
  out[pos++] = MESSAGE_TAG;
  pos = writeVarint(out, pos, inner);
  if (payload.length > 0) {
    out[pos++] = PAYLOAD_TAG;
    pos = writeVarint(out, pos, payload.length);
    out.set(payload, pos);
  }
  return out;
}

/** The call id of a Frame that does not decode, read from the fields before the damage. */
export function recoverCallId(body: Uint8Array): number | undefined {
  let callId: number | undefined;
  let pos = 0;
  try {
    while (pos < body.length) {
      const [key, next] = readVarint(body, pos);
      pos = next;
      const field = Math.floor(key / 8);
      const wireType = key % 8;
      if (field === 1 && wireType === 0) {
        const [value, after] = readVarint(body, pos);
        pos = after;
        callId = value <= MAX_UINT32 ? value : undefined;
      } else {
        pos = skipField(body, pos, wireType);
      }
    }
  } catch {
    // the damage: keep what was read before it
  }
  return callId;
}

/**
 * Frames of one WebSocket message, in order. Never throws: each record that does not
 * decode becomes a FrameDecodeError in its place; a broken record structure ends the
 * list with one error, since nothing after it can be delimited. Unknown FrameBatch
 * fields are skipped.
 */
export function decodeBatch(data: Uint8Array): (Frame | FrameDecodeError)[] {
  const items: (Frame | FrameDecodeError)[] = [];
  let pos = 0;
  while (pos < data.length) {
    let length: number;
    try {
      const [key, next] = readVarint(data, pos);
      pos = next;
      const wireType = key % 8;
      if (Math.floor(key / 8) !== 1 || wireType !== 2) {
        pos = skipField(data, pos, wireType); // unknown FrameBatch field
        continue;
      }
      [length, pos] = readVarint(data, pos);
    } catch (error) {
      items.push(new FrameDecodeError(`undecodable batch record at byte ${pos}: ${String(error)}`));
      return items;
    }
    if (pos + length > data.length) {
      items.push(new FrameDecodeError(`record at byte ${pos} is truncated`));
      return items;
    }
    const body = data.subarray(pos, pos + length);
    pos += length;
    try {
      items.push(fromBinary(FrameSchema, body));
    } catch (error) {
      items.push(new FrameDecodeError(`malformed frame: ${String(error)}`, recoverCallId(body)));
    }
  }
  return items;
}
