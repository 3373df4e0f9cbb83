import { indexedDbOutbox, lostDeltas, SyncClient, type TokenProvider } from "syncwire-web";

/** Joins "todo" with presence, publishes one edit and logs what happens. */
export async function main(url: string, getToken: TokenProvider | undefined, log: (line: string) => void): Promise<SyncClient> {
  const client = new SyncClient({ url, tokenProvider: getToken, outbox: indexedDbOutbox(url) });
  client.onStateChange((change) => log(`state ${change.state}`)); // connecting, connected, reconnecting, offline, closed
  client.on("delta", (event) => log(`delta ${event.delta.offset}`)); // each delta once, in offset order
  client.on("peerJoined", (event) => log(`joined ${event.join.userInfo?.userId}`));
  client.on("recovery", (event) => {
    if (lostDeltas(event.recovery)) log(`gap (${event.recovery}): re-read history()`);
  });
  await client.connect();
  const todo = await client.subscribe("todo", { joinPresence: true, userInfo: { userId: "ada" } });
  log(`joined at epoch ${todo.epoch}, offset ${todo.offset} (${todo.recovery})`);
  const ack = await client.publish("todo", new TextEncoder().encode("buy milk")); // waits in the outbox while offline
  log(`published at offset ${ack.offset}`);
  const present = await client.presence("todo");
  log(`present: ${present.map((member) => member.userInfo?.userId).join(", ")}`);
  client.setPresence("todo", { status: "typing" });
  return client; // also: for await (const event of client.events()) { ... }
}
