/**
 * The todo example's web page: the list of examples/todo edited in the browser with the
 * web `SyncClient`, beside the Python typed client and the legacy JSON client (all in one
 * collection, JSON deltas). Shows the connection state and who is present. Query:
 * `?ws=ws://host:port&collection=todo&name=ada`. Bundled by `npm run build:todo` (in
 * web/) into examples/todo/web/todo.js, served by `python -m examples.todo --web`.
 */
import { indexedDbOutbox, lostDeltas, PayloadEncoding, SyncClient, type Delta } from "../../src/index.js";
import { decode, encode, TodoList, type Op } from "./model.js";

const params = new URLSearchParams(location.search);
const wsUrl = params.get("ws") ?? `ws://${location.hostname}:8080`;
const collectionId = params.get("collection") ?? "todo";
const name = params.get("name") ?? `web-${crypto.randomUUID().slice(0, 6)}`;

const todo = new TodoList(name);
const present = new Map<string, string>(); // peer id -> user id
const client = new SyncClient({ url: wsUrl, replicaId: name, outbox: indexedDbOutbox(`${wsUrl}#${collectionId}`) });

function element<K extends keyof HTMLElementTagNameMap>(tag: K, text = ""): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

function render(): void {
  document.querySelector("#state")!.textContent = client.state;
  document.querySelector("#state")!.className = client.state;
  document.querySelector("#present")!.textContent = [...new Set(present.values())].sort().join(", ") || "nobody";
  const list = document.querySelector("#items")!;
  list.replaceChildren(
    ...todo.visible().map((item) => {
      const row = element("li");
      const box = element("input");
      box.type = "checkbox";
      box.checked = item.done.value;
      box.onchange = () => send(todo.setDone(item.itemId, box.checked));
      const remove = element("button", "×");
      remove.title = "remove";
      remove.onclick = () => send(todo.remove(item.itemId));
      row.append(box, element("span", item.text.value), remove);
      return row;
    }),
  );
}

/** Ops made while the tests hold sends (applied here, published on release). */
let held: Op[] | undefined;

function send(op: Op): void {
  render();
  if (held !== undefined) {
    held.push(op);
    return;
  }
  publish(op);
}

function publish(op: Op): void {
  client.publish(collectionId, encode(op), { encoding: PayloadEncoding.JSON }).catch((error: unknown) => {
    document.querySelector("#error")!.textContent = String(error);
  });
}

function receive(delta: Delta): void {
  try {
    const message = decode(JSON.parse(new TextDecoder().decode(delta.delta)));
    if (message.kind !== "mark") todo.apply(message);
  } catch {
    return; // not a todo message
  }
}

async function refreshPresence(): Promise<void> {
  const members = await client.presence(collectionId);
  present.clear();
  for (const member of members) present.set(member.peerId, member.userInfo?.userId ?? member.peerId);
  render();
}

client.onStateChange(() => render());
client.on("delta", (event) => {
  receive(event.delta);
  render();
});
client.on("peerJoined", (event) => {
  present.set(event.join.peerId, event.join.userInfo?.userId ?? event.join.peerId);
  render();
});
client.on("peerLeft", (event) => {
  present.delete(event.leave.peerId);
  render();
});
client.on("snapshot", (event) => {
  // The collection's state at an offset (history no longer reached back): merge it; the
  // deltas after it follow.
  try {
    todo.mergeState(event.snapshot.data);
  } catch (error) {
    document.querySelector("#error")!.textContent = `unreadable snapshot: ${String(error)}`;
  }
  render();
});
client.on("recovery", (event) => {
  // Reconnected: the presence may have changed; after a gap, re-read the history (the
  // model is a CRDT: applying an op twice is harmless).
  void refreshPresence().catch(() => undefined);
  if (lostDeltas(event.recovery)) {
    void client.history(collectionId).then((history) => {
      for (const delta of history.deltas) receive(delta);
      render();
    });
  }
});

document.querySelector("#add")!.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.querySelector<HTMLInputElement>("#text")!;
  if (input.value.trim() === "") return;
  send(todo.add(crypto.randomUUID(), input.value.trim()));
  input.value = "";
});

const ready = (async () => {
  await client.connect({ timeoutMs: Infinity });
  // From offset 0 of any epoch: the server replays the list's history (or its snapshot
  // and the deltas after it, when history no longer reaches back).
  await client.subscribe(collectionId, { joinPresence: true, userInfo: { userId: name }, lastOffset: 0n });
  await refreshPresence();
})();

/** What the tests drive (tests/test_web_todo.py); an item is named by its text (a removed one too). */
function findId(text: string): string {
  const item = [...todo.items.values()].find((candidate) => candidate.text.value === text);
  if (item === undefined) throw new Error(`no item ${JSON.stringify(text)}`);
  return item.itemId;
}

declare global {
  interface Window {
    todoPage: unknown;
  }
}

window.todoPage = {
  ready,
  add: (text: string) => send(todo.add(`${name}-${todo.clock + 1}`, text)),
  setDone: (text: string, done: boolean) => send(todo.setDone(findId(text), done)),
  rename: (text: string, to: string) => send(todo.rename(findId(text), to)),
  remove: (text: string) => send(todo.remove(findId(text))),
  /** Edits made from now on are applied here but not published until `releaseSends`:
   * lets a test make truly concurrent edits (made before anyone sees the others'). */
  holdSends: () => {
    held ??= [];
  },
  releaseSends: () => {
    const ops = held ?? [];
    held = undefined;
    ops.forEach(publish);
  },
  snapshot: () => todo.snapshot(),
  state: () => client.state,
  shownState: () => document.querySelector("#state")!.textContent,
  shownPresent: () => document.querySelector("#present")!.textContent,
};
render();
