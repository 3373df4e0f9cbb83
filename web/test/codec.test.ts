/** Properties of the framing codec, outbox batching and metadata mapping (fast-check). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, equals } from "@bufbuild/protobuf";
import fc from "fast-check";
import { concatBytes, decodeBatch, encodeMessageRecord, encodeRecord, encodeVarint, FrameDecodeError } from "../src/codec.js";
import { FrameSchema, type Frame } from "../src/gen/syncwire/ws/v1/frame_pb.js";
import { entriesToHeaders, headersToEntries } from "../src/metadata.js";
import { BATCH_BYTES, Outbox } from "../src/outbox.js";

const callId = fc.oneof(fc.constantFrom(0, 1, 127, 128, 0xffffffff), fc.nat({ max: 0xffffffff }));
const bytes = fc.uint8Array({ maxLength: 300 });
const text = fc.string({ maxLength: 40 });
const key = fc.stringMatching(/^[0-9a-z_.-]{1,12}$/);
const entry = fc.oneof(
  fc.record({ key: key.map((k) => `${k}-bin`), value: bytes }),
  fc.record({ key, value: fc.stringMatching(/^[\x20-\x7e]{0,20}$/).map((v) => new TextEncoder().encode(v)) }),
);
const duration = fc.record({ seconds: fc.bigInt({ min: 0n, max: 10n ** 9n }), nanos: fc.integer({ min: 0, max: 999_999_999 }) });
const kind: fc.Arbitrary<Frame["kind"]> = fc.oneof(
  fc.record({
    case: fc.constant("start" as const),
    value: fc.record({ method: text, metadata: fc.array(entry, { maxLength: 4 }), timeout: fc.option(duration, { nil: undefined }) }),
  }),
  fc.record({ case: fc.constant("headers" as const), value: fc.record({ metadata: fc.array(entry, { maxLength: 4 }) }) }),
  fc.record({ case: fc.constant("message" as const), value: fc.record({ payload: bytes }) }),
  fc.record({ case: fc.constant("halfClose" as const), value: fc.constant({}) }),
  fc.record({ case: fc.constant("cancel" as const), value: fc.constant({}) }),
  fc.record({
    case: fc.constant("end" as const),
    value: fc.record({ code: fc.nat({ max: 20 }), details: text, trailers: fc.array(entry, { maxLength: 4 }) }),
  }),
  fc.record({ case: fc.constant("windowUpdate" as const), value: fc.record({ bytes: fc.nat({ max: 0xffffffff }) }) }),
  fc.record({ case: fc.constant("ping" as const), value: fc.record({ nonce: fc.bigUint(2n ** 64n - 1n) }) }),
  fc.record({ case: fc.constant("pong" as const), value: fc.record({ nonce: fc.bigUint(2n ** 64n - 1n) }) }),
  fc.record({
    case: fc.constant("settings" as const),
    value: fc.record({ maxMessageBytes: fc.nat(), serverId: text, maxConcurrentCalls: fc.nat(), initialWindowBytes: fc.nat() }),
  }),
  fc.constant({ case: undefined }),
) as fc.Arbitrary<Frame["kind"]>;
const frame = fc.record({ callId, kind }).map((init) => create(FrameSchema, init as never));

test("a batch of encoded records decodes to the same frames", () => {
  fc.assert(
    fc.property(fc.array(frame, { maxLength: 6 }), (frames) => {
      const items = decodeBatch(concatBytes(frames.map(encodeRecord)));
      assert.equal(items.length, frames.length);
      items.forEach((item, index) => {
        assert.ok(!(item instanceof FrameDecodeError));
        assert.ok(equals(FrameSchema, item, frames[index]!));
      });
    }),
  );
});

test("a message record built from the payload equals the encoded Frame", () => {
  fc.assert(
    fc.property(callId, fc.uint8Array({ maxLength: 2000 }), (id, payload) => {
      const frame = create(FrameSchema, { callId: id, kind: { case: "message", value: { payload } } });
      assert.deepEqual(encodeMessageRecord(id, payload), encodeRecord(frame));
    }),
  );
});

test("decoding never throws, and a cut batch keeps every whole record before the cut", () => {
  fc.assert(
    fc.property(fc.array(frame, { minLength: 1, maxLength: 5 }), fc.nat(), (frames, cutAt) => {
      const records = frames.map(encodeRecord);
      const batch = concatBytes(records);
      const cut = cutAt % (batch.length + 1);
      const items = decodeBatch(batch.subarray(0, cut));
      let whole = 0;
      for (let size = 0; whole < records.length && size + records[whole]!.length <= cut; whole++) size += records[whole]!.length;
      for (let index = 0; index < whole; index++) assert.ok(equals(FrameSchema, items[index] as Frame, frames[index]!));
      assert.ok(items.length <= whole + 1);
      if (items.length === whole + 1) assert.ok(items[whole] instanceof FrameDecodeError);
    }),
  );
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => void decodeBatch(garbage)));
});

test("varints match protobuf's encoding", () => {
  assert.deepEqual(encodeVarint(0), Uint8Array.of(0));
  assert.deepEqual(encodeVarint(300), Uint8Array.of(0xac, 0x02));
  assert.deepEqual(encodeVarint(0xffffffff), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f));
  assert.throws(() => encodeVarint(-1), RangeError);
});

test("the outbox batches records in order, each batch within 64 KiB unless one record is larger", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 90_000 }), { maxLength: 12 }), (sizes) => {
      const outbox = new Outbox();
      const records = sizes.map((size, index) => new Uint8Array(size).fill(index % 256));
      records.forEach((record) => outbox.push(record));
      const batches: Uint8Array[] = [];
      for (let batch = outbox.takeBatch(); batch !== undefined; batch = outbox.takeBatch()) batches.push(batch);
      assert.deepEqual(concatBytes(batches), concatBytes(records));
      assert.equal(outbox.pendingBytes, 0);
      for (const batch of batches) assert.ok(batch.length <= BATCH_BYTES || sizes.includes(batch.length));
    }),
  );
});

test("metadata survives Headers and back: -bin values as raw bytes, text values as text", () => {
  const binaryValues = fc.array(fc.tuple(key, fc.array(bytes, { minLength: 1, maxLength: 3 })), { maxLength: 4 });
  const textValues = fc.array(fc.tuple(key, fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,18}[\x21-\x7e])?$/)), { maxLength: 4 });
  fc.assert(
    fc.property(binaryValues, textValues, (binary, textual) => {
      const rawByKey = new Map<string, Uint8Array[]>();
      const textByKey = new Map<string, string>();
      for (const [k, values] of binary) rawByKey.set(`${k}-bin`, [...(rawByKey.get(`${k}-bin`) ?? []), ...values]);
      for (const [k, value] of textual) textByKey.set(`${k}-t`, value);
      const headers = new Headers();
      for (const [k, values] of rawByKey) for (const value of values) headers.append(k, Buffer.from(value).toString("base64"));
      for (const [k, value] of textByKey) headers.set(k, value);
      const entries = headersToEntries(headers);
      for (const [k, values] of rawByKey) {
        assert.deepEqual(entries.filter((e) => e.key === k).map((e) => Buffer.from(e.value)), values.map((v) => Buffer.from(v)));
      }
      for (const [k, value] of textByKey) {
        assert.deepEqual(entries.filter((e) => e.key === k).map((e) => new TextDecoder().decode(e.value)), [value]);
      }
      const back = entriesToHeaders(entries);
      assert.deepEqual(headersToEntries(back), entries);
    }),
  );
});

test("metadata the rule forbids is refused", () => {
  assert.throws(() => headersToEntries(new Headers({ "x-text": "caf\u00e9" })), /printable ASCII/);
  assert.throws(() => headersToEntries(new Headers({ "x#y": "1" })), /invalid metadata key/);
  assert.throws(() => entriesToHeaders([{ $typeName: "syncwire.ws.v1.MetadataEntry", key: "x", value: Uint8Array.of(7) }]), /printable ASCII/);
  const repeated = entriesToHeaders([
    { $typeName: "syncwire.ws.v1.MetadataEntry", key: "x-dup", value: new TextEncoder().encode("one") },
    { $typeName: "syncwire.ws.v1.MetadataEntry", key: "x-dup", value: new TextEncoder().encode("two") },
  ]);
  assert.equal(repeated.get("x-dup"), "one, two");
});
