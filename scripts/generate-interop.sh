#!/usr/bin/env bash
# Regenerates tests/interop/generated/ from the gRPC interop test protos in tests/protos/
# (messages, gRPC stubs and mypy .pyi stubs). Never edit its output by hand; scripts/test
# reruns this and fails on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/interop/generated
rm -rf "$out"
mkdir -p "$out"
"${PYTHON:-python}" -m grpc_tools.protoc \
  --proto_path=tests/protos \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --mypy_out="$out" \
  --mypy_grpc_out="$out" \
  $(find tests/protos -name '*.proto' | sort)
# Mark every generated directory as a regular package (protoc writes none).
find "$out" -mindepth 1 -type d -exec touch {}/__init__.py \;

# TypeScript descriptors for the web package's interop tests (web/test/gen), with the
# protoc-gen-es pinned in web/package-lock.json (installed by `npm ci` when missing).
if [[ ! -x web/node_modules/.bin/protoc-gen-es ]]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
rm -rf web/test/gen
buf generate --template web/buf.gen.interop.yaml tests/protos
