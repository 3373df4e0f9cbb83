/**
 * The TypeScript codec passes the framing's shared test vectors
 * (tests/fixtures/ws_frames/vectors.json, produced by the Python codec and checked
 * against it by tests/test_ws_frame_vectors.py): bytes encoded by one implementation
 * decode in the other, frame for frame.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { create, equals, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { decodeBatch, encodeMessageRecord, encodeRecord, concatBytes, FrameDecodeError } from "../src/codec.js";
import { CallMessageSchema, FrameSchema } from "../src/gen/syncwire/ws/v1/frame_pb.js";
import { fromHex, toHex } from "./helpers/bytes.js";

interface Vectors {
  encode: { name: string; frames: JsonValue[]; batch: string }[];
  messageRecords: { callId: number; payload: string; record: string }[];
  decode: { name: string; batch: string; items: ({ frame: JsonValue } | { error: true; callId: number | null })[] }[];
}

const vectors = JSON.parse(
  readFileSync(new URL("../../../tests/fixtures/ws_frames/vectors.json", import.meta.url), "utf8"),
) as Vectors;

for (const vector of vectors.encode) {
  test(`encode vector: ${vector.name}`, () => {
    const frames = vector.frames.map((json) => fromJson(FrameSchema, json));
    assert.equal(toHex(concatBytes(frames.map(encodeRecord))), vector.batch);
    const decoded = decodeBatch(fromHex(vector.batch));
    assert.equal(decoded.length, frames.length);
    decoded.forEach((item, index) => {
      assert.ok(!(item instanceof FrameDecodeError), String(item));
      assert.ok(equals(FrameSchema, item, frames[index]!), `frame ${index} differs`);
    });
  });
}

for (const vector of vectors.messageRecords) {
  test(`message record vector: call ${vector.callId}, ${vector.payload.length / 2} bytes`, () => {
    const payload = fromHex(vector.payload);
    const record = encodeMessageRecord(vector.callId, payload);
    assert.equal(toHex(record), vector.record);
    const frame = create(FrameSchema, {
      callId: vector.callId,
      kind: { case: "message", value: create(CallMessageSchema, { payload }) },
    });
    assert.equal(toHex(encodeRecord(frame)), vector.record);
  });
}

for (const vector of vectors.decode) {
  test(`decode vector: ${vector.name}`, () => {
    const items = decodeBatch(fromHex(vector.batch));
    assert.equal(items.length, vector.items.length);
    items.forEach((item, index) => {
      const expected = vector.items[index]!;
      if ("error" in expected) {
        assert.ok(item instanceof FrameDecodeError, `item ${index} should be an error`);
        assert.equal(item.callId ?? null, expected.callId);
      } else {
        assert.ok(!(item instanceof FrameDecodeError), `item ${index}: ${String(item)}`);
        assert.ok(equals(FrameSchema, item, fromJson(FrameSchema, expected.frame)));
      }
    });
  });
}
