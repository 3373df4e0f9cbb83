"""The gRPC interop test service and client cases, run over every syncwire transport.

The generated code lives in ``tests/interop/generated`` as the package
``src.proto.grpc.testing`` (gRPC's own layout, see tests/protos/README.md); pytest and
mypy find it through their configured paths, and this module puts it on ``sys.path``
for processes started outside pytest (``python -m tests.interop.server``).
"""

from __future__ import annotations

import sys
from pathlib import Path

GENERATED = str(Path(__file__).resolve().parent / "generated")
if GENERATED not in sys.path:
    sys.path.append(GENERATED)
