/**
 * Call metadata (request headers, response headers, trailers) between Connect `Headers`
 * and the framing's `MetadataEntry` lists, validated as gRPC does (docs/protocol.md,
 * "Metadata").
 *
 * The rule, both ways:
 * - keys are lower-case `[0-9a-z_.-]+` (`Headers` lower-cases them);
 * - a key ending in `-bin` carries raw bytes on the wire and base64 text in `Headers`,
 *   as Connect's own transports do (`encodeBinaryHeader` / `decodeBinaryHeader`);
 *   several values of one `-bin` key are comma-separated in `Headers`, each its own
 *   wire entry;
 * - every other value is printable ASCII (0x20-0x7E); a repeated text key becomes one
 *   `Headers` value joined with ", " in wire order (the Fetch `Headers` rule), and one
 *   `Headers` value goes on the wire as one entry;
 * - entries keep their order per key (`Headers` iterates keys alphabetically).
 */
import { create } from "@bufbuild/protobuf";
import { decodeBinaryHeader, encodeBinaryHeader } from "@connectrpc/connect";
import { MetadataEntrySchema, type MetadataEntry } from "./gen/syncwire/ws/v1/frame_pb.js";

const KEY = /^[0-9a-z_.-]+$/;
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** A metadata key or value that gRPC would not carry. */
export class MetadataError extends Error {
  override name = "MetadataError";
}

/** Whether a key carries raw bytes (the `-bin` suffix). */
export function isBinaryKey(key: string): boolean {
  return key.endsWith("-bin");
}

function checkKey(key: string): void {
  if (!KEY.test(key)) {
    throw new MetadataError(`invalid metadata key ${JSON.stringify(key)}: use lower-case [0-9a-z_.-]`);
  }
}

function isPrintableAscii(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte < 0x20 || byte > 0x7e) return false;
  return true;
}

/**
 * Wire entries for request headers, in order; throws MetadataError for a key or value
 * the rule above does not allow.
 */
export function headersToEntries(headers: Headers): MetadataEntry[] {
  const entries: MetadataEntry[] = [];
  headers.forEach((value, key) => {
    checkKey(key);
    if (isBinaryKey(key)) {
      for (const part of value.split(",")) {
        let bytes: Uint8Array;
        try {
          bytes = decodeBinaryHeader(part.trim());
        } catch (error) {
          throw new MetadataError(`metadata value of ${JSON.stringify(key)} is not base64: ${String(error)}`);
        }
        entries.push(create(MetadataEntrySchema, { key, value: bytes }));
      }
    } else {
      if (!PRINTABLE_ASCII.test(value)) {
        throw new MetadataError(`metadata value of ${JSON.stringify(key)} is not printable ASCII`);
      }
      entries.push(create(MetadataEntrySchema, { key, value: ENCODER.encode(value) }));
    }
  });
  return entries;
}

/** Received entries as `Headers`; throws MetadataError for entries breaking the rule. */
export function entriesToHeaders(entries: readonly MetadataEntry[], into: Headers = new Headers()): Headers {
  for (const entry of entries) {
    checkKey(entry.key);
    if (isBinaryKey(entry.key)) {
      into.append(entry.key, encodeBinaryHeader(entry.value));
    } else {
      if (!isPrintableAscii(entry.value)) {
        throw new MetadataError(`metadata value of ${JSON.stringify(entry.key)} is not printable ASCII`);
      }
      into.append(entry.key, DECODER.decode(entry.value));
    }
  }
  return into;
}
