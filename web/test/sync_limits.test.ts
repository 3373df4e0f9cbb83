/**
 * `SyncClient` and the server's message limit (python -m server on ephemeral loopback
 * ports): a request the client can know is too large (the server's advertised limit, else
 * the 1 MiB default) is refused at once with RESOURCE_EXHAUSTED "message_too_large" and
 * nothing is queued or sent; a publish refused for good (too large for the server it is
 * flushed to, or refused by the server) settles and leaves the outbox, so the ones after
 * it go through on the same connection, with no reconnect. The hooks server runs
 * tests/web_hooks.py.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { WebSocket } from "ws";
import { MessageTooLargeError, SyncClient, type WebSocketConstructor } from "../src/index.js";
import { startServer, type RunningServer } from "./helpers/server.js";

const webSocket = WebSocket as unknown as WebSocketConstructor;

function clientFor(url: string): { client: SyncClient; states: string[] } {
  const client = new SyncClient({ url, webSocket, backoff: { baseMs: 20, capMs: 200 }, requestTimeoutMs: 5000 });
  const states: string[] = [];
  client.onStateChange((change) => states.push(`${change.state}${change.error === undefined ? "" : ` (${change.error.message})`}`));
  return { client, states };
}

/** `promise`, or a rejection saying it was still pending after `ms` (a bound, not an ordering). */
function within<T>(promise: Promise<T>, ms = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (error: unknown) => (clearTimeout(timer), reject(error)),
    );
  });
}

const tooLarge = (limit: number) => (error: unknown) => {
  assert.ok(error instanceof MessageTooLargeError, `expected MessageTooLargeError, got ${String(error)}`);
  assert.equal(error.code, Code.ResourceExhausted);
  assert.equal(error.reasonCode, "message_too_large");
  assert.equal(error.limit, limit);
  assert.ok(error.size > limit);
  return true;
};

describe("SyncClient and the server's message limit (default 1 MiB)", { timeout: 60_000 }, () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer("server");
  });
  after(async () => {
    await server.stop();
  });

  test("an oversized publish rejects at once, queues nothing, and a later small publish succeeds", async () => {
    const { client, states } = clientFor(server.wsUrl);
    try {
      await client.connect();
      states.length = 0;
      await assert.rejects(within(client.publish("bigweb", new Uint8Array(1048586))), tooLarge(1024 * 1024));
      assert.equal(await client.outboxSize(), 0);
      assert.equal(client.stats.publishesSent, 0);
      const ack = await within(client.publish("bigweb", new Uint8Array(10)));
      assert.equal(ack.offset, 1n);
      assert.equal(await client.outboxSize(), 0);
      assert.deepEqual(states, [], "no reconnect");
      assert.equal(client.maxMessageBytes, 1024 * 1024);
    } finally {
      client.close();
    }
  });

  test("a publish refused for good settles and does not hold up the ones after it", async () => {
    const { client, states } = clientFor(server.wsUrl);
    try {
      await client.connect();
      states.length = 0;
      const refused = client.publish("", new Uint8Array(3));
      const next = client.publish("after-refusal", new Uint8Array(3));
      await assert.rejects(within(refused), { code: Code.InvalidArgument, reasonCode: "invalid_collection" });
      assert.equal((await within(next)).offset, 1n);
      assert.equal(await client.outboxSize(), 0);
      assert.deepEqual(states, [], "no reconnect");
    } finally {
      client.close();
    }
  });

  test("oversized presence and subscribe requests are refused at once; the connection carries on", async () => {
    const { client, states } = clientFor(server.wsUrl);
    try {
      await client.connect();
      await client.subscribe("presence-big", { joinPresence: true });
      states.length = 0;
      const huge = "x".repeat(1024 * 1024);
      assert.throws(() => client.setPresence("presence-big", { status: huge }), tooLarge(1024 * 1024));
      await assert.rejects(
        within(client.subscribe("subscribe-big", { joinPresence: true, userInfo: { userId: huge } })),
        tooLarge(1024 * 1024),
      );
      assert.equal(client.subscriptions.has("subscribe-big"), false);
      client.setPresence("presence-big", { status: "typing" });
      assert.equal((await within(client.publish("presence-big", new Uint8Array(3)))).offset, 1n);
      const present = await client.presence("presence-big");
      assert.deepEqual(present.map((member) => member.status), ["typing"]);
      assert.deepEqual(states, [], "no reconnect");
    } finally {
      client.close();
    }
  });
});

describe("SyncClient and a server with a smaller limit (64 KiB)", { timeout: 60_000 }, () => {
  const limit = 64 * 1024;
  let server: RunningServer;
  before(async () => {
    server = await startServer("server", ["--max-message-bytes", String(limit), "--client-snapshots"]);
  });
  after(async () => {
    await server.stop();
  });

  test("publishes queued before the first connection: the one over the server's limit is refused when flushed, the rest go through", async () => {
    const { client, states } = clientFor(server.wsUrl);
    try {
      const first = client.publish("queued", new Uint8Array(10));
      const big = client.publish("queued", new Uint8Array(100 * 1024));
      const last = client.publish("queued", new Uint8Array(10));
      big.catch(() => undefined);
      assert.equal(await client.outboxSize(), 3);
      await client.connect();
      states.length = 0;
      assert.equal((await within(first)).offset, 1n);
      await assert.rejects(within(big), tooLarge(limit));
      assert.equal((await within(last)).offset, 2n);
      assert.equal(await client.outboxSize(), 0);
      await assert.rejects(within(client.publish("queued", new Uint8Array(100 * 1024))), tooLarge(limit));
      assert.equal(await client.outboxSize(), 0);
      assert.deepEqual(states, [], "no reconnect");
      assert.equal(client.maxMessageBytes, limit); // announced by the server, no longer the 1 MiB default
    } finally {
      client.close();
    }
  });

  test("an oversized putSnapshot rejects at once and the connection carries on", async () => {
    const { client, states } = clientFor(server.wsUrl);
    try {
      await client.connect();
      await client.subscribe("snap");
      const ack = await within(client.publish("snap", new Uint8Array(3)));
      states.length = 0;
      await assert.rejects(within(client.putSnapshot("snap", ack.offset, new Uint8Array(100 * 1024))), tooLarge(limit));
      const stored = await within(client.putSnapshot("snap", ack.offset, new Uint8Array(100)));
      assert.equal(stored.offset, ack.offset);
      assert.deepEqual(states, [], "no reconnect");
    } finally {
      client.close();
    }
  });
});

describe("SyncClient and publishes an application hook refuses", { timeout: 60_000 }, () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer("server", ["--hooks", "tests.web_hooks:HOOKS"]);
  });
  after(async () => {
    await server.stop();
  });

  test("a refused publish settles with the hook's refusal and the ones after it go through", async () => {
    const { client, states } = clientFor(server.wsUrl);
    try {
      const refused = client.publish("hooked", new TextEncoder().encode("refuse me"));
      const next = client.publish("hooked", new TextEncoder().encode("keep me"));
      refused.catch(() => undefined);
      await client.connect();
      states.length = 0;
      await assert.rejects(within(refused), { code: Code.PermissionDenied, reasonCode: "refused_by_test" });
      assert.equal((await within(next)).offset, 1n);
      assert.equal(await client.outboxSize(), 0);
      assert.equal((await within(client.publish("hooked", new Uint8Array(3)))).offset, 2n);
      assert.deepEqual(states, [], "no reconnect");
    } finally {
      client.close();
    }
  });
});
