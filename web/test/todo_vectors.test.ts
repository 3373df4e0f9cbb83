/**
 * The TypeScript todo model (web/examples/todo/model.ts) passes the shared vectors of
 * examples/todo/vectors.json that the Python model passes (tests/test_todo_vectors.py):
 * same list whatever the order and repetition of the ops, replica ties decided by code
 * points.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { compareCodePoints, decode, encode, TodoList, type Op } from "../examples/todo/model.js";
import { REPO_ROOT } from "./helpers/server.js";

interface Vector {
  readonly name: string;
  readonly ops: unknown[];
  readonly expected: [string, boolean][];
}

const vectors = JSON.parse(readFileSync(`${REPO_ROOT}examples/todo/vectors.json`, "utf-8")) as Vector[];

describe("todo model vectors", () => {
  for (const vector of vectors) {
    test(vector.name, () => {
      const ops = vector.ops.map((raw) => decode(raw) as Op);
      for (const order of [ops, [...ops].reverse(), [...ops, ...[...ops].reverse()]]) {
        const todo = new TodoList("reader");
        for (const op of order) todo.apply(op);
        assert.deepEqual(todo.snapshot(), vector.expected);
      }
      // The wire form round-trips.
      for (const op of ops) assert.deepEqual(decode(JSON.parse(new TextDecoder().decode(encode(op)))), op);
    });
  }

  test("a state saved by Python's to_state merges into the same list", () => {
    // TodoList.to_state of: add a (1, ann) "milk"; add b (2, ann) "bread"; done a; remove b.
    const saved =
      '{"clock":4,"items":[{"id":"a","created":[1,"ann"],"text":["milk",[1,"ann"]],"done":[true,[3,"ann"]],"removed":[false,[0,""]]},' +
      '{"id":"b","created":[2,"ann"],"text":["bread",[2,"ann"]],"done":[false,[0,""]],"removed":[true,[4,"ann"]]}]}';
    const todo = new TodoList("reader");
    todo.apply(decode({ op: "rename", id: "a", ts: [5, "zed"], text: "oat milk" }) as Op); // newer than the state
    todo.mergeState(new TextEncoder().encode(saved));
    assert.deepEqual(todo.snapshot(), [["oat milk", true]]);
    assert.equal(todo.clock, 5);
    assert.throws(() => todo.mergeState(new TextEncoder().encode('{"items": 3}')));
  });

  test("code points, not UTF-16 units, order replica names", () => {
    assert.ok("\u{1F600}" < "\uFFFF"); // what JavaScript's < says (UTF-16 units)
    assert.ok(compareCodePoints("\u{1F600}", "\uFFFF") > 0); // what Python says
    assert.equal(compareCodePoints("ab", "ab"), 0);
    assert.ok(compareCodePoints("a", "ab") < 0);
  });
});
