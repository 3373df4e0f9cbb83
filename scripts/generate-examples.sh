#!/usr/bin/env bash
# Regenerates the examples' generated code with the `syncwire generate` command, as the
# examples' READMEs tell users to. Never edit its output by hand; scripts/test reruns
# this and fails on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf examples/greeter/generated
"${PYTHON:-python}" -m client.cli generate examples/greeter/protos examples/greeter/generated
