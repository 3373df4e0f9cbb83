"""The todo model's shared test vectors (examples/todo/vectors.json): the Python model
and its TypeScript port (web/examples/todo/model.ts, web/test/todo_vectors.test.ts) must
end in each vector's expected list whatever the order and repetition of the ops,
including the ties decided by replica names beyond U+FFFF (code points, not UTF-16)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from examples.todo.model import Op, TodoList, decode
from tests.conftest import REPO_ROOT

VECTORS: list[dict[str, Any]] = json.loads(
    (REPO_ROOT / "examples" / "todo" / "vectors.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    ops = [decode(raw) for raw in vector["ops"]]
    assert all(isinstance(op, Op) for op in ops)
    expected = [(text, done) for text, done in vector["expected"]]
    for order in (ops, ops[::-1], ops + ops[::-1]):
        todo = TodoList("reader")
        for op in order:
            assert isinstance(op, Op)
            todo.apply(op)
        assert todo.snapshot() == expected
