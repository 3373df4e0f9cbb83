"""gRPC's own interop test cases over every transport: native grpc.aio is the
reference; the WebSocket framing (WebSocketServer + WebSocketChannel) and the
in-process channel must match it call for call — status codes, details, initial and
trailing metadata, message counts, the exception types raised to the caller and to the
handlers, and how much the server logs."""

from __future__ import annotations

import pytest

from tests.interop.cases import CASES
from tests.interop.harness import REFERENCE, TRANSPORTS, run_case


@pytest.mark.parametrize("case", list(CASES))
async def test_interop_case_matches_grpc_aio_on_every_transport(case: str) -> None:
    reference = await run_case(case, REFERENCE)
    for transport in TRANSPORTS:
        if transport == REFERENCE:
            continue
        run = await run_case(case, transport)
        assert run.outcome == reference.outcome, f"{case}: callers differ over {transport}"
        assert run.handlers == reference.handlers, f"{case}: handlers differ over {transport}"
        assert run.server_logs == reference.server_logs, f"{case}: logs differ over {transport}"
