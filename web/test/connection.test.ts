/**
 * Connection-level behaviour against a scripted framing peer on a real loopback socket:
 * the server's ConnectionSettings honoured before anything is sent, call-0 Ping/Pong
 * keepalive both ways, concurrency limit, batching, odd increasing call ids, malformed
 * server frames, and an unreachable server.
 */
import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { after, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createWebSocketTransport, SyncService } from "../src/node.js";
import type { WebSocketTransport } from "../src/transport.js";
import { ScriptedPeer, settings } from "./helpers/peer.js";

const peers: ScriptedPeer[] = [];
const transports: WebSocketTransport[] = [];

after(async () => {
  for (const transport of transports) transport.close();
  for (const peer of peers) await peer.close();
});

async function setUp(onConnect?: (peer: ScriptedPeer) => void, options: { settingsTimeoutMs?: number } = {}) {
  const peer = await ScriptedPeer.start(onConnect);
  peers.push(peer);
  const transport = createWebSocketTransport({ baseUrl: peer.url, settingsTimeoutMs: options.settingsTimeoutMs ?? 30_000 });
  transports.push(transport);
  return { peer, transport, client: createClient(SyncService, transport) };
}

async function codeOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail("the call succeeded");
}

const OK_END = { case: "end", value: { code: 0 } } as const;

test("nothing is sent before the server's settings frame; its max_message_bytes is honoured locally", async () => {
  let settingsSent = false;
  let sentEarly = false;
  const { peer, client } = await setUp((peer) => {
    peer.socket!.on("message", () => (sentEarly ||= !settingsSent));
    setTimeout(() => {
      settingsSent = true;
      peer.send(settings({ maxMessageBytes: 100 }));
    }, 200);
  });
  const error = await codeOf(client.publish({ delta: { collectionId: "c", delta: new Uint8Array(200) } }));
  assert.equal(error.code, Code.ResourceExhausted);
  assert.match(error.rawMessage, /Sent message larger than max \(\d+ vs\. 100\)/);
  await peer.nextFrame((frame) => frame.kind.case === "cancel");
  assert.equal(sentEarly, false);
  assert.deepEqual(
    peer.frames.map((frame) => frame.kind.case),
    ["start", "cancel"],
    "the oversize message never reached the wire",
  );
});

test("without a settings frame the client sends after settingsTimeoutMs (servers that predate it)", async () => {
  const { peer, client } = await setUp(undefined, { settingsTimeoutMs: 50 });
  const call = client.getServerInfo({});
  const start = await peer.nextFrame((frame) => frame.kind.case === "start");
  peer.send({ callId: start.callId, kind: { case: "message", value: { payload: new Uint8Array(0) } } }, { callId: start.callId, kind: OK_END });
  await call;
});

test("call ids are odd and increasing; frames queued together share one WebSocket message", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({})));
  const calls = [client.getServerInfo({}), client.getServerInfo({}), client.getServerInfo({})];
  await peer.nextFrame((frame) => frame.callId === 5 && frame.kind.case === "halfClose");
  const starts = peer.frames.filter((frame) => frame.kind.case === "start").map((frame) => frame.callId);
  assert.deepEqual(starts, [1, 3, 5]);
  assert.ok(peer.messages.some((frames) => frames.length >= 3), `frames per message: ${peer.messages.map((m) => m.length)}`);
  for (const id of starts) {
    peer.send({ callId: id, kind: { case: "message", value: { payload: new Uint8Array(0) } } }, { callId: id, kind: OK_END });
  }
  await Promise.all(calls);
});

test("the server's Ping is answered with a Pong carrying its nonce, one per message for its last Ping", async () => {
  const { peer, client } = await setUp((peer) => {
    peer.send(settings({}));
    peer.send(
      { callId: 0, kind: { case: "ping", value: { nonce: 1n } } },
      { callId: 0, kind: { case: "ping", value: { nonce: 12345678901234567890n } } },
    );
  });
  const call = codeOf(client.getServerInfo({}, { timeoutMs: 30_000 }));
  const pong = await peer.nextFrame((frame) => frame.kind.case === "pong");
  assert.ok(pong.kind.case === "pong");
  assert.equal(pong.kind.value.nonce, 12345678901234567890n);
  assert.equal(pong.callId, 0);
  peer.send({ callId: 1, kind: { case: "end", value: { code: 14, details: "done" } } });
  assert.equal((await call).code, Code.Unavailable);
  assert.equal(peer.frames.filter((frame) => frame.kind.case === "pong").length, 1);
});

test("an unknown call-0 frame kind is ignored; a call frame kind on call 0 is answered with a ProtocolError", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({})));
  const call = codeOf(client.getServerInfo({}, { timeoutMs: 30_000 }));
  await peer.nextFrame((frame) => frame.kind.case === "start");
  // FrameBatch { frames: [Frame { call_id: 0, <field 15, empty> }] }: a kind from a later version.
  peer.sendRaw(new Uint8Array([0x0a, 0x02, 0x7a, 0x00]));
  peer.send({ callId: 0, kind: { case: "ping", value: { nonce: 7n } } });
  await peer.nextFrame((frame) => frame.kind.case === "pong");
  assert.deepEqual(peer.frames.filter((frame) => frame.kind.case === "protocolError"), []);
  peer.send({ callId: 0, kind: { case: "halfClose", value: {} } });
  const answer = await peer.nextFrame((frame) => frame.kind.case === "protocolError");
  assert.ok(answer.kind.case === "protocolError");
  assert.equal(answer.callId, 0);
  assert.match(answer.kind.value.details, /^call 0 carries no "halfClose" frames$/);
  assert.doesNotMatch(answer.kind.value.details, /is not valid on call 0/);
  peer.send({ callId: 1, kind: { case: "end", value: { code: 14, details: "done" } } });
  assert.equal((await call).code, Code.Unavailable);
});

test("keepalive: an idle client pings; a server that never answers fails open calls with UNAVAILABLE", async () => {
  const interval = { seconds: 0n, nanos: 100_000_000 };
  const { peer, transport, client } = await setUp((peer) => peer.send(settings({ pingInterval: interval, pingTimeout: interval })));
  const call = codeOf(client.getServerInfo({}));
  const ping = await peer.nextFrame((frame) => frame.kind.case === "ping");
  assert.equal(ping.callId, 0);
  const error = await call;
  assert.equal(error.code, Code.Unavailable);
  assert.match(error.rawMessage, /keepalive/);
  assert.equal(transport.connection, undefined);
});

test("keepalive: a server that answers keeps the connection", async () => {
  const interval = { seconds: 0n, nanos: 50_000_000 };
  const { peer, transport, client } = await setUp((peer) => {
    peer.send(settings({ pingInterval: interval, pingTimeout: { seconds: 5n } }));
    peer.socket!.on("message", () => {
      for (const frame of peer.messages.at(-1) ?? []) {
        if (frame.kind.case === "ping") peer.send({ callId: 0, kind: { case: "pong", value: { nonce: frame.kind.value.nonce } } });
      }
    });
  });
  const call = client.getServerInfo({});
  await peer.nextFrame((frame) => frame.kind.case === "ping" && frame.kind.value.nonce === 3n);
  assert.notEqual(transport.connection, undefined);
  peer.send({ callId: 1, kind: { case: "message", value: { payload: new Uint8Array(0) } } }, { callId: 1, kind: OK_END });
  await call;
});

test("max_concurrent_calls: a call beyond the limit waits until one ends", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({ maxConcurrentCalls: 2 })));
  const calls = [client.getServerInfo({}), client.getServerInfo({}), client.getServerInfo({})];
  await peer.nextFrame((frame) => frame.callId === 3 && frame.kind.case === "halfClose");
  assert.equal(peer.frames.filter((frame) => frame.kind.case === "start").length, 2);
  peer.send({ callId: 1, kind: { case: "message", value: { payload: new Uint8Array(0) } } }, { callId: 1, kind: OK_END });
  await peer.nextFrame((frame) => frame.callId === 5 && frame.kind.case === "start");
  for (const id of [3, 5]) {
    peer.send({ callId: id, kind: { case: "message", value: { payload: new Uint8Array(0) } } }, { callId: id, kind: OK_END });
  }
  await Promise.all(calls);
});

test("a malformed server frame fails only its call with INTERNAL and a cancel goes out", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({})));
  const broken = codeOf(client.getServerInfo({}));
  const healthy = client.getServerInfo({});
  await peer.nextFrame((frame) => frame.callId === 3 && frame.kind.case === "halfClose");
  peer.sendRaw(Uint8Array.of(0x0a, 0x04, 0x08, 0x01, 0x12, 0xff)); // call 1, then a broken field
  const error = await broken;
  assert.equal(error.code, Code.Internal);
  await peer.nextFrame((frame) => frame.callId === 1 && frame.kind.case === "cancel");
  peer.send({ callId: 3, kind: { case: "message", value: { payload: new Uint8Array(0) } } }, { callId: 3, kind: OK_END });
  await healthy;
});

test("trailers-only end: status, details and trailers without headers or messages", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({})));
  const call = codeOf(client.getServerInfo({}));
  await peer.nextFrame((frame) => frame.kind.case === "halfClose");
  const trailers = [
    { key: "x-reason", value: new TextEncoder().encode("because") },
    { key: "x-raw-bin", value: Uint8Array.of(0, 1, 254, 255) },
  ];
  peer.send({ callId: 1, kind: { case: "end", value: { code: 9, details: "not now", trailers } } });
  const error = await call;
  assert.equal(error.code, Code.FailedPrecondition);
  assert.equal(error.rawMessage, "not now");
  assert.equal(error.metadata.get("x-reason"), "because");
  assert.deepEqual([...Buffer.from(error.metadata.get("x-raw-bin")!, "base64")], [0, 1, 254, 255]);
});

test("an unreachable server fails the call with UNAVAILABLE", async () => {
  const peer = await ScriptedPeer.start();
  const url = peer.url;
  await peer.close();
  const transport = createWebSocketTransport({ baseUrl: url });
  const error = await codeOf(createClient(SyncService, transport).getServerInfo({}));
  assert.equal(error.code, Code.Unavailable);
});

test("aborting the signal sends a cancel frame; timeoutMs travels as CallStart.timeout", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({})));
  const controller = new AbortController();
  const call = codeOf(client.getServerInfo({}, { signal: controller.signal, timeoutMs: 90_500 }));
  const start = await peer.nextFrame((frame) => frame.kind.case === "start");
  assert.ok(start.kind.case === "start");
  const timeout = start.kind.value.timeout!;
  assert.ok(timeout.seconds === 90n || timeout.seconds === 89n, `timeout ${timeout.seconds}s ${timeout.nanos}ns`);
  controller.abort();
  assert.equal((await call).code, Code.Canceled);
  const cancel = await peer.nextFrame((frame) => frame.kind.case === "cancel");
  assert.equal(cancel.callId, start.callId);
});

test("rich status: google.rpc.Status in grpc-status-details-bin becomes the error's details", async () => {
  const { peer, client } = await setUp((peer) => peer.send(settings({})));
  const call = codeOf(client.getServerInfo({}));
  await peer.nextFrame((frame) => frame.kind.case === "halfClose");
  const detail = toBinary(StringValueSchema, create(StringValueSchema, { value: "why" }));
  const any = new BinaryWriter()
    .tag(1, WireType.LengthDelimited)
    .string("type.googleapis.com/google.protobuf.StringValue")
    .tag(2, WireType.LengthDelimited)
    .bytes(detail)
    .finish();
  const status = new BinaryWriter()
    .tag(1, WireType.Varint)
    .int32(7)
    .tag(2, WireType.LengthDelimited)
    .string("rich denial")
    .tag(3, WireType.LengthDelimited)
    .bytes(any)
    .finish();
  peer.send({
    callId: 1,
    kind: { case: "end", value: { code: 7, details: "rich denial", trailers: [{ key: "grpc-status-details-bin", value: status }] } },
  });
  const error = await call;
  assert.equal(error.code, Code.PermissionDenied);
  assert.equal(error.rawMessage, "rich denial");
  assert.deepEqual(
    error.findDetails(StringValueSchema).map((value) => value.value),
    ["why"],
  );
});

test("a deadline passing while the socket is still opening ends the call at the deadline", async () => {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => sockets.push(socket)); // accepts TCP, never answers the handshake
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as AddressInfo;
  const transport = createWebSocketTransport({ baseUrl: `ws://127.0.0.1:${port}`, connectTimeoutMs: 60_000 });
  try {
    const error = await codeOf(createClient(SyncService, transport).getServerInfo({}, { timeoutMs: 200 }));
    assert.equal(error.code, Code.DeadlineExceeded);
  } finally {
    transport.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});
