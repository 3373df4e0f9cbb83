/** The package's entry points resolve by name, as docs/browser.md imports them. */
import assert from "node:assert/strict";
import { test } from "node:test";

test("syncwire-web, syncwire-web/node and syncwire-web/gen/* resolve", async () => {
  const browser = await import("syncwire-web");
  const node = await import("syncwire-web/node");
  const sync = await import("syncwire-web/gen/syncwire/v1/sync_pb");
  const types = await import("syncwire-web/gen/syncwire/v1/types_pb");
  assert.equal(typeof browser.createWebSocketTransport, "function");
  assert.equal(typeof node.createWebSocketTransport, "function");
  assert.equal(browser.SyncService, sync.SyncService);
  assert.equal(types.DeltaSchema.typeName, "syncwire.v1.Delta");
});
