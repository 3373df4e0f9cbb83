import { createClient } from "@connectrpc/connect";
import { createWebSocketTransport, SyncService } from "syncwire-web";

/** Joins "doc-1", publishes "hello" and reads it back; `log` gets one line per step. */
export async function main(baseUrl: string, log: (line: string) => void = console.log): Promise<void> {
  // One transport = one WebSocket, shared by every call of every client made with it.
  const transport = createWebSocketTransport({ baseUrl });
  const client = createClient(SyncService, transport);

  // Unary call.
  const { serverInfo } = await client.getServerInfo({});
  log(`server ${serverInfo?.version}`);

  // Bidirectional stream: requests are an async iterable, responses one you read.
  let readBack!: () => void;
  const done = new Promise<void>((resolve) => (readBack = resolve));
  async function* requests() {
    yield { requestId: 1n, kind: { case: "subscribe", value: { collectionId: "doc-1" } } } as const;
    const delta = { collectionId: "doc-1", delta: new TextEncoder().encode("hello") };
    yield { requestId: 2n, kind: { case: "publish", value: { delta } } } as const;
    await done; // keep the request side open until our delta came back
  }
  let acknowledged = false;
  let received = false;
  for await (const response of client.sync(requests())) {
    const { kind } = response;
    if (kind.case === "welcome") log(`joined as ${kind.value.peerId}`);
    if (kind.case === "publishAck") {
      log(`published at offset ${kind.value.offset}`);
      acknowledged = true;
    }
    if (kind.case === "delta") {
      log(`received ${new TextDecoder().decode(kind.value.delta)} at offset ${kind.value.offset}`);
      received = true;
    }
    if (acknowledged && received) {
      readBack();
      break; // leaving the loop cancels the stream
    }
  }
  transport.close();
}
