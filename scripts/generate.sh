#!/usr/bin/env bash
# Regenerates generated/ from proto/ (messages, gRPC stubs and mypy .pyi stubs) and the
# TypeScript descriptors in web/src/gen (protobuf-es).
# The one command that produces generated/; never edit its output by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf generated/syncwire
mkdir -p generated
"${PYTHON:-python}" -m grpc_tools.protoc \
  --proto_path=proto \
  --python_out=generated \
  --grpc_python_out=generated \
  --mypy_out=generated \
  --mypy_grpc_out=generated \
  $(find proto -name '*.proto' | sort)
# Mark every generated directory as a regular package (protoc writes none).
find generated/syncwire -type d -exec touch {}/__init__.py \;

# TypeScript descriptors for the browser package (web/src/gen), with the protoc-gen-es
# pinned in web/package-lock.json (installed by `npm ci` when missing).
if [[ ! -x web/node_modules/.bin/protoc-gen-es ]]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
rm -rf web/src/gen
buf generate --template web/buf.gen.yaml proto
