#!/usr/bin/env bash
# Sets everything up, builds dist/plugin.wasm and runs the demo (real Envoy,
# sample upstream, a few requests). Usage: scripts/demo.sh [envoy-version]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
python3 scripts/demo.py "$@"
