/**
 * `SyncClient` misuse the type checker must reject (each `@ts-expect-error` line must
 * fail to compile); the unmarked lines show the correct use compiles.
 */
import { SyncClient, type SyncEvent } from "../src/index.js";

const client = new SyncClient({ url: "ws://127.0.0.1:1" });
// @ts-expect-error url is required
new SyncClient({});
// @ts-expect-error unknown option
new SyncClient({ url: "ws://x", outboxLimt: 5 });
// @ts-expect-error backoff times are numbers of milliseconds
new SyncClient({ url: "ws://x", backoff: { baseMs: "1s" } });

export async function misuse(): Promise<void> {
  const subscription = await client.subscribe("todo", { joinPresence: true, userInfo: { userId: "ada" } });
  const offset: bigint = subscription.offset;
  // @ts-expect-error offsets are bigints, not numbers
  const wrong: number = subscription.offset;
  // @ts-expect-error joinPresence is a boolean
  await client.subscribe("todo", { joinPresence: "yes" });
  // @ts-expect-error user info has no "name" field (userId, username, displayName, avatarUrl)
  await client.subscribe("todo", { userInfo: { name: "ada" } });
  // @ts-expect-error lastOffset is a bigint
  await client.subscribe("todo", { lastOffset: 3 });
  const ack = await client.publish("todo", new Uint8Array([1]));
  const duplicate: boolean = ack.duplicate;
  // @ts-expect-error payloads are bytes, not strings
  await client.publish("todo", "text");
  client.on("delta", (event) => event.delta.offset);
  // @ts-expect-error a DeltaEvent has no presence
  client.on("delta", (event) => event.presence);
  // @ts-expect-error no such event type
  client.on("message", () => undefined);
  client.on("recovery", (event) => event.recovery === "epoch_mismatch");
  // @ts-expect-error no such recovery outcome
  client.on("recovery", (event) => event.recovery === "lost");
  // @ts-expect-error no such connection state
  if (client.state === "online") return;
  for await (const event of client.events()) {
    const seen: SyncEvent = event;
    if (event.type === "peerLeft") void event.leave.peerId;
    // @ts-expect-error narrowed to PeerJoined: no `leave`
    if (event.type === "peerJoined") void event.leave;
    void seen;
  }
  // @ts-expect-error setPresence's status is a string
  client.setPresence("todo", { status: 1 });
  void [offset, wrong, duplicate];
}
