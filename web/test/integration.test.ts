/**
 * The transport against a real syncwire server (`python -m server` in a subprocess, on
 * ephemeral loopback ports): every call kind of the sync service, cancel, deadline,
 * UNIMPLEMENTED, an abort with details and trailers, flow control both ways, 100
 * concurrent calls on one connection (the server's own count), oversize messages,
 * credentials as metadata, and a server restart.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createWebSocketTransport, SyncService } from "../src/node.js";
import type { WebSocketTransport } from "../src/transport.js";
import { TestService } from "./gen/src/proto/grpc/testing/test_pb.js";
import { signToken } from "./helpers/token.js";
import { scrapeMetric, startServer, waitFor, type RunningServer } from "./helpers/server.js";
import { readUntil, RequestQueue, type SyncRequestInit } from "./helpers/sync.js";

async function rejectsWith(code: Code, promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    const connectError = ConnectError.from(error);
    assert.equal(Code[connectError.code], Code[code], connectError.message);
    return connectError;
  }
  assert.fail(`expected ${Code[code]}`);
}

function subscribe(requestId: bigint, collectionId: string): SyncRequestInit {
  return { requestId, kind: { case: "subscribe", value: { collectionId } } };
}

function publish(requestId: bigint, collectionId: string, delta: Uint8Array): SyncRequestInit {
  return { requestId, kind: { case: "publish", value: { delta: { collectionId, delta } } } };
}

describe("against python -m server", { timeout: 120_000 }, () => {
  let server: RunningServer;
  let transport: WebSocketTransport;

  before(async () => {
    server = await startServer("server", ["--metrics-port", "0", "--max-message-bytes", "65536"]);
    transport = createWebSocketTransport({ baseUrl: server.wsUrl });
  });

  after(async () => {
    transport.close();
    await server.stop();
  });

  const websocketSessions = () => scrapeMetric(server.metricsUrl!, 'syncwire_connections{transport="websocket"}');

  test("unary calls: server info, publish with its acknowledgement", async () => {
    const client = createClient(SyncService, transport);
    const info = await client.getServerInfo({});
    assert.ok(info.serverInfo !== undefined && info.serverInfo.version !== "");
    const ack = await client.publish({ delta: { collectionId: "unary-doc", delta: Uint8Array.of(1, 2, 3) } });
    assert.equal(ack.ack?.offset, 1n);
    const history = await client.getHistory({ collectionId: "unary-doc" });
    assert.deepEqual(history.deltas.map((delta) => [...delta.delta]), [[1, 2, 3]]);
  });

  test("bidirectional stream: welcome, subscribe, publish, receive byte-exact", async () => {
    const requests = new RequestQueue<SyncRequestInit>();
    const responses = createClient(SyncService, transport).sync(requests)[Symbol.asyncIterator]();
    const welcome = await readUntil(responses, (r) => r.kind.case === "welcome");
    assert.ok(welcome.kind.case === "welcome" && welcome.kind.value.peerId.length > 0);
    requests.push(subscribe(1n, "bidi-doc"));
    await readUntil(responses, (r) => r.kind.case === "subscribed" && r.requestId === 1n);
    const payload = Uint8Array.from({ length: 256 }, (_, index) => index);
    requests.push(publish(2n, "bidi-doc", payload));
    const delta = await readUntil(responses, (r) => r.kind.case === "delta");
    assert.ok(delta.kind.case === "delta");
    assert.deepEqual(delta.kind.value.delta, payload);
    await waitFor("the session on the server", async () => (await websocketSessions()) === 1);
    await responses.return?.(); // leaving the response loop early cancels the call
    await waitFor("the server to end the abandoned session", async () => (await websocketSessions() ?? 0) === 0);
  });

  test("flow control both ways: 1.5 MiB each way on one stream, beyond the 256 KiB windows", async () => {
    const requests = new RequestQueue<SyncRequestInit>();
    const responses = createClient(SyncService, transport).sync(requests)[Symbol.asyncIterator]();
    requests.push(subscribe(1n, "flow-doc"));
    await readUntil(responses, (r) => r.kind.case === "subscribed");
    const count = 48;
    for (let index = 0; index < count; index++) {
      requests.push(publish(BigInt(index + 2), "flow-doc", new Uint8Array(32 * 1024).fill(index)));
    }
    for (let index = 0; index < count; index++) {
      const delta = await readUntil(responses, (r) => r.kind.case === "delta");
      assert.ok(delta.kind.case === "delta");
      assert.equal(delta.kind.value.offset, BigInt(index + 1));
      assert.equal(delta.kind.value.delta.length, 32 * 1024);
      assert.equal(delta.kind.value.delta[0], index);
    }
    requests.close();
    await responses.return?.();
  });

  test("cancel: aborting the signal sends a cancel frame; the server ends the session", async () => {
    const controller = new AbortController();
    const requests = new RequestQueue<SyncRequestInit>();
    const responses = createClient(SyncService, transport).sync(requests, { signal: controller.signal })[Symbol.asyncIterator]();
    await readUntil(responses, (r) => r.kind.case === "welcome");
    await waitFor("the session on the server", async () => (await websocketSessions()) === 1);
    controller.abort();
    await rejectsWith(Code.Canceled, responses.next());
    await waitFor("the server to end the cancelled session", async () => (await websocketSessions() ?? 0) === 0);
    await createClient(SyncService, transport).getServerInfo({}); // the connection carries on
  });

  test("deadline: timeoutMs ends the call with DEADLINE_EXCEEDED", async () => {
    const requests = new RequestQueue<SyncRequestInit>();
    const responses = createClient(SyncService, transport).sync(requests, { timeoutMs: 300 })[Symbol.asyncIterator]();
    await readUntil(responses, (r) => r.kind.case === "welcome");
    await rejectsWith(Code.DeadlineExceeded, readUntil(responses, () => false));
    await waitFor("the server to end the expired session", async () => (await websocketSessions() ?? 0) === 0);
  });

  test("UNIMPLEMENTED: a method the server does not serve", async () => {
    const error = await rejectsWith(Code.Unimplemented, createClient(TestService, transport).emptyCall({}));
    assert.equal(error.rawMessage, "Method not found!");
  });

  test("server abort: code, details and trailers reach the ConnectError", async () => {
    const error = await rejectsWith(
      Code.InvalidArgument,
      createClient(SyncService, transport).publish({ delta: { collectionId: "" } }),
    );
    assert.match(error.rawMessage, /collection/);
    assert.equal(error.metadata.get("syncwire-reason"), "invalid_collection");
  });

  test("100 concurrent calls share one connection (the server counts one)", async () => {
    const client = createClient(SyncService, transport);
    const streams = Array.from({ length: 50 }, () => {
      const requests = new RequestQueue<SyncRequestInit>();
      return { requests, responses: client.sync(requests)[Symbol.asyncIterator]() };
    });
    const unaries = Array.from({ length: 50 }, (_, index) =>
      client.publish({ delta: { collectionId: "many", delta: Uint8Array.of(index) } }),
    );
    await Promise.all(streams.map(({ responses }) => readUntil(responses, (r) => r.kind.case === "welcome")));
    const acks = await Promise.all(unaries);
    assert.deepEqual(acks.map((ack) => Number(ack.ack?.offset)).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
    assert.equal(await websocketSessions(), 50);
    assert.equal(await scrapeMetric(server.metricsUrl!, "syncwire_framing_connections"), 1);
    for (const { requests, responses } of streams) {
      requests.close();
      await responses.return?.();
    }
  });

  test("oversize: a request over the server's limit fails with RESOURCE_EXHAUSTED, others carry on", async () => {
    const client = createClient(SyncService, transport);
    await rejectsWith(
      Code.ResourceExhausted,
      client.publish({ delta: { collectionId: "big", delta: new Uint8Array(70_000) } }),
    );
    const ack = await client.publish({ delta: { collectionId: "big", delta: new Uint8Array(1000) } });
    assert.equal(ack.ack?.offset, 1n);
  });

  test("oversize: a response over the client's limit fails that call only", async () => {
    const small = createWebSocketTransport({ baseUrl: server.wsUrl, maxReceiveBytes: 10 });
    try {
      const error = await rejectsWith(Code.ResourceExhausted, createClient(SyncService, small).getServerInfo({}));
      assert.match(error.rawMessage, /Received message larger than max/);
      await rejectsWith(Code.InvalidArgument, createClient(SyncService, small).publish({ delta: { collectionId: "" } }));
    } finally {
      small.close();
    }
  });
});

describe("credentials", { timeout: 60_000 }, () => {
  const secret = "web-test-secret-of-at-least-32-bytes";
  let server: RunningServer;

  before(async () => {
    server = await startServer("server", ["--auth-secret", secret]);
  });

  after(() => server.stop());

  const token = (claims: Record<string, unknown>) => signToken(secret, claims);

  test("a bearer token in the call's headers authenticates; none is refused", async () => {
    const transport = createWebSocketTransport({ baseUrl: server.wsUrl });
    try {
      const client = createClient(SyncService, transport);
      const exp = Math.floor(Date.now() / 1000) + 600;
      const headers = { authorization: `Bearer ${token({ sub: "web", exp, sub_collections: ["*"], pub_collections: ["*"] })}` };
      const ack = await client.publish({ delta: { collectionId: "auth-doc", delta: Uint8Array.of(7) } }, { headers });
      assert.equal(ack.ack?.offset, 1n);
      await rejectsWith(Code.Unauthenticated, client.publish({ delta: { collectionId: "auth-doc", delta: Uint8Array.of(8) } }));
    } finally {
      transport.close();
    }
  });
});

describe("server restart", { timeout: 90_000 }, () => {
  test("a lost connection fails every open call with UNAVAILABLE; the next call opens a new socket", async () => {
    let server = await startServer("server");
    const transport = createWebSocketTransport({ baseUrl: server.wsUrl });
    try {
      const client = createClient(SyncService, transport);
      const open = Array.from({ length: 3 }, () => {
        const requests = new RequestQueue<SyncRequestInit>();
        return client.sync(requests)[Symbol.asyncIterator]();
      });
      await Promise.all(open.map((responses) => readUntil(responses, (r) => r.kind.case === "welcome")));
      const first = transport.connection;
      const port = new URL(server.wsUrl).port;
      await server.stop();
      for (const responses of open) await rejectsWith(Code.Unavailable, readUntil(responses, () => false));
      await rejectsWith(Code.Unavailable, client.getServerInfo({}));
      server = await startServer("server", ["--ws-port", port]);
      const info = await client.getServerInfo({});
      assert.ok(info.serverInfo !== undefined);
      assert.notEqual(transport.connection, first);
    } finally {
      transport.close();
      await server.stop();
    }
  });
});
