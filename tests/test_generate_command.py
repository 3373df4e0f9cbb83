"""`syncwire generate PROTO_DIR OUT_DIR` makes typed stubs for a new proto: the code runs
over the WebSocket framing, and mypy --strict accepts ``Stub(WebSocketChannel(url))``
used right and rejects it used wrong."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

from client.ws_channel import WebSocketChannel
from server.ws.server import WebSocketServer
from tests.process_harness import run_python

PROTO = """
syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";

message OrderRequest { string item = 1; int32 quantity = 2; }
message OrderReply { string order_id = 1; google.protobuf.Timestamp placed_at = 2; }

service Orders {
  rpc Place(OrderRequest) returns (OrderReply);
  rpc Track(OrderRequest) returns (stream OrderReply);
}
"""

GOOD = """
from typing import assert_type

from client.ws_channel import WebSocketChannel
from shop.v1 import orders_pb2, orders_pb2_grpc


async def order(url: str) -> str:
    stub = orders_pb2_grpc.OrdersStub(WebSocketChannel(url))
    assert_type(stub, orders_pb2_grpc.OrdersAsyncStub)
    reply = await stub.Place(orders_pb2.OrderRequest(item="tea", quantity=2), timeout=5.0)
    assert_type(reply, orders_pb2.OrderReply)
    async for update in stub.Track(orders_pb2.OrderRequest(item="tea")):
        assert_type(update, orders_pb2.OrderReply)
    return reply.order_id
"""

BAD = """
from client.ws_channel import WebSocketChannel
from shop.v1 import orders_pb2, orders_pb2_grpc


async def misuse(url: str) -> None:
    stub = orders_pb2_grpc.OrdersStub(WebSocketChannel(url))
    await stub.Place(orders_pb2.OrderReply())
    orders_pb2.OrderRequest(quantity="two")
"""


async def _generate(proto_dir: Path, out_dir: Path) -> str:
    finished = await run_python("-m", "client.cli", "generate", str(proto_dir), str(out_dir))
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == "", finished.stderr  # the generators' chatter stays hidden
    return finished.stdout


@pytest.mark.timeout(180)
async def test_generated_stubs_run_and_type_check_over_websocket(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proto_dir, out_dir = tmp_path / "protos", tmp_path / "out"
    (proto_dir / "shop" / "v1").mkdir(parents=True)
    (proto_dir / "shop" / "v1" / "orders.proto").write_text(PROTO)
    assert await _generate(proto_dir, out_dir) == f"generated 1 proto file(s) into {out_dir}\n"
    for name in ("orders_pb2.py", "orders_pb2.pyi", "orders_pb2_grpc.py", "orders_pb2_grpc.pyi"):
        assert (out_dir / "shop" / "v1" / name).is_file(), name

    # The generated code serves and calls over the WebSocket framing.
    monkeypatch.syspath_prepend(str(out_dir))
    orders_pb2: Any = importlib.import_module("shop.v1.orders_pb2")
    orders_pb2_grpc: Any = importlib.import_module("shop.v1.orders_pb2_grpc")

    class Orders(orders_pb2_grpc.OrdersServicer):  # type: ignore[misc]
        async def Place(self, request: Any, context: Any) -> Any:
            return orders_pb2.OrderReply(order_id=f"{request.item}x{request.quantity}")

    server = WebSocketServer()
    orders_pb2_grpc.add_OrdersServicer_to_server(Orders(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with WebSocketChannel(f"ws://127.0.0.1:{port}") as channel:
            stub = orders_pb2_grpc.OrdersStub(channel)
            reply = await stub.Place(orders_pb2.OrderRequest(item="tea", quantity=2), timeout=10)
            assert reply.order_id == "teax2"
    finally:
        await server.stop(None)

    # mypy --strict: the right use passes, the misuse is rejected.
    good, bad = tmp_path / "good_orders.py", tmp_path / "bad_orders.py"
    good.write_text(GOOD)
    bad.write_text(BAD)
    monkeypatch.setenv("MYPYPATH", str(out_dir))
    with contextlib.chdir(repo_root):
        stdout, stderr, status = mypy_api.run(
            ["--config-file", str(repo_root / "pyproject.toml"), "--no-pretty", str(good), str(bad)]
        )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1, stderr + stdout
    assert not [line for line in errors if "good_orders.py" in line], stdout
    assert len(errors) == 2, stdout
    assert 'incompatible type "OrderReply"; expected "OrderRequest"' in errors[0]
    assert 'Argument "quantity" to "OrderRequest" has incompatible type "str"' in errors[1]


async def test_generate_without_protos_is_a_usage_error(tmp_path: Path) -> None:
    finished = await run_python(
        "-m", "client.cli", "generate", str(tmp_path), str(tmp_path / "o")
    )
    assert finished.returncode == 2
    assert finished.stderr == f"syncwire: no .proto files under {tmp_path}\n"
