/**
 * The todo list as a CRDT: pure data, no I/O. A TypeScript port of examples/todo/model.py
 * that passes the same test vectors (examples/todo/vectors.json).
 *
 * Each item is three last-writer-wins registers (text, done, removed). Every operation
 * carries a Lamport stamp `[counter, replica]`; a register keeps the value with the
 * highest stamp, so replicas that apply the same operations, in any order and any number
 * of times, end in the same state. Stamps order replicas by Unicode code points, as
 * Python compares strings (JavaScript's `<` compares UTF-16 code units, which disagrees
 * for characters beyond U+FFFF).
 */

/** [Lamport counter, replica name]: a total order of operations. */
export type Stamp = readonly [number, string];

export type OpKind = "add" | "rename" | "done" | "remove";

const ORIGIN: Stamp = [0, ""];

/** Compares two strings by Unicode code points (negative, 0 or positive). */
export function compareCodePoints(a: string, b: string): number {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const x = left.next();
    const y = right.next();
    if (x.done === true) return y.done === true ? 0 : -1;
    if (y.done === true) return 1;
    const difference = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (difference !== 0) return difference;
  }
}

/** Orders stamps: by counter, then by replica (code points). */
export function compareStamps(a: Stamp, b: Stamp): number {
  return a[0] !== b[0] ? a[0] - b[0] : compareCodePoints(a[1], b[1]);
}

/** A last-writer-wins value. */
export class Register<T> {
  constructor(
    public value: T,
    public stamp: Stamp = ORIGIN,
  ) {}

  merge(value: T, stamp: Stamp): void {
    if (compareStamps(stamp, this.stamp) > 0) {
      this.value = value;
      this.stamp = stamp;
    }
  }
}

export interface Item {
  readonly itemId: string;
  created: Stamp;
  readonly text: Register<string>;
  readonly done: Register<boolean>;
  readonly removed: Register<boolean>;
}

/** One edit of one item. */
export interface Op {
  readonly kind: OpKind;
  readonly itemId: string;
  readonly stamp: Stamp;
  readonly text?: string;
  readonly done?: boolean;
}

/** Not an edit: `by` has sent everything it does in `phase` (the Python demo's barrier). */
export interface Mark {
  readonly kind: "mark";
  readonly by: string;
  readonly phase: number;
}

export type Message = Op | Mark;

/** The JSON wire form, as examples/todo/model.py writes it. */
export function toJson(message: Message): Record<string, unknown> {
  if (message.kind === "mark") return { op: "mark", by: message.by, phase: message.phase };
  const body: Record<string, unknown> = { op: message.kind, id: message.itemId, ts: [message.stamp[0], message.stamp[1]] };
  if (message.kind === "add" || message.kind === "rename") body.text = message.text ?? "";
  if (message.kind === "done") body.done = message.done ?? false;
  return body;
}

export function encode(message: Message): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(toJson(message)));
}

/** A message from its JSON form. @throws Error when it is not one of ours. */
export function decode(value: unknown): Message {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`not a todo message: ${JSON.stringify(value)}`);
  const body = value as Record<string, unknown>;
  if (body.op === "mark") return { kind: "mark", by: String(body.by), phase: Number(body.phase) };
  const ts = body.ts;
  const kinds: readonly unknown[] = ["add", "rename", "done", "remove"];
  if (!kinds.includes(body.op) || !Array.isArray(ts) || ts.length !== 2 || !Number.isInteger(ts[0])) {
    throw new Error(`not a todo message: ${JSON.stringify(value)}`);
  }
  return {
    kind: body.op as OpKind,
    itemId: String(body.id),
    stamp: [ts[0] as number, String(ts[1])],
    text: body.text === undefined ? "" : String(body.text),
    done: Boolean(body.done ?? false),
  };
}

/** One replica's list. Local edits return the Op to broadcast (already applied). */
export class TodoList {
  clock = 0;
  readonly items = new Map<string, Item>();

  constructor(readonly replica: string) {}

  private local(kind: OpKind, itemId: string, text = "", done = false): Op {
    this.clock += 1;
    const op: Op = { kind, itemId, stamp: [this.clock, this.replica], text, done };
    this.apply(op);
    return op;
  }

  add(itemId: string, text: string): Op {
    return this.local("add", itemId, text);
  }

  rename(itemId: string, text: string): Op {
    return this.local("rename", itemId, text);
  }

  setDone(itemId: string, done = true): Op {
    return this.local("done", itemId, "", done);
  }

  remove(itemId: string): Op {
    return this.local("remove", itemId);
  }

  /** Merges an operation (local or remote; repeats are harmless). */
  apply(op: Op): void {
    this.clock = Math.max(this.clock, op.stamp[0]);
    let item = this.items.get(op.itemId);
    if (item === undefined) {
      item = { itemId: op.itemId, created: op.stamp, text: new Register(""), done: new Register(false), removed: new Register(false) };
      this.items.set(op.itemId, item);
    }
    if (op.kind === "add") {
      if (compareStamps(op.stamp, item.created) < 0) item.created = op.stamp;
      item.text.merge(op.text ?? "", op.stamp);
    } else if (op.kind === "rename") {
      item.text.merge(op.text ?? "", op.stamp);
    } else if (op.kind === "done") {
      item.done.merge(op.done ?? false, op.stamp);
    } else {
      item.removed.merge(true, op.stamp);
    }
  }

  /** Items not removed, oldest first. */
  visible(): Item[] {
    return [...this.items.values()].filter((item) => !item.removed.value).sort((a, b) => compareStamps(a.created, b.created));
  }

  /**
   * Merges a whole replica saved by Python's `TodoList.to_state` (what the todo example
   * stores as the collection's snapshot): every register keeps the higher stamp, so
   * merging is as order-free as applying ops. @throws Error when `data` is not one.
   */
  mergeState(data: Uint8Array): void {
    const state = JSON.parse(new TextDecoder().decode(data)) as { clock?: unknown; items?: unknown };
    if (typeof state.clock !== "number" || !Array.isArray(state.items)) throw new Error("not a todo list state");
    const stamp = (value: unknown): Stamp => {
      if (!Array.isArray(value) || value.length !== 2 || !Number.isInteger(value[0])) throw new Error(`not a stamp: ${JSON.stringify(value)}`);
      return [value[0] as number, String(value[1])];
    };
    for (const raw of state.items as Record<string, unknown>[]) {
      const [text, textStamp] = raw.text as [unknown, unknown];
      const [done, doneStamp] = raw.done as [unknown, unknown];
      const [removed, removedStamp] = raw.removed as [unknown, unknown];
      const itemId = String(raw.id);
      const created = stamp(raw.created);
      let item = this.items.get(itemId);
      if (item === undefined) {
        item = { itemId, created, text: new Register(""), done: new Register(false), removed: new Register(false) };
        this.items.set(itemId, item);
      } else if (compareStamps(created, item.created) < 0) {
        item.created = created;
      }
      item.text.merge(String(text), stamp(textStamp));
      item.done.merge(Boolean(done), stamp(doneStamp));
      item.removed.merge(Boolean(removed), stamp(removedStamp));
    }
    this.clock = Math.max(this.clock, state.clock);
  }

  /** What a user sees: [text, done] per visible item, in order. */
  snapshot(): [string, boolean][] {
    return this.visible().map((item) => [item.text.value, item.done.value]);
  }
}
