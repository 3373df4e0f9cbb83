/** The gRPC interop client cases over the WebSocket transport, in Node, against the
 * interop service (`python -m tests.interop.server`) in a real subprocess. */
import { after, before, test } from "node:test";
import { createWebSocketTransport } from "../src/node.js";
import type { WebSocketTransport } from "../src/transport.js";
import { interopCases } from "./interop/cases.js";
import { startServer, type RunningServer } from "./helpers/server.js";

let server: RunningServer;
let transport: WebSocketTransport;

before(async () => {
  server = await startServer("tests.interop.server");
  transport = createWebSocketTransport({ baseUrl: server.wsUrl });
});

after(async () => {
  transport.close();
  await server.stop();
});

for (const [name, run] of Object.entries(interopCases)) {
  test(`interop: ${name}`, { timeout: 30_000 }, () => run(transport));
}
