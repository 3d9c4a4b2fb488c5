#!/usr/bin/env bash
# The benchmark in one command: set-up (which installs the load generator,
# Debian's wrk), matplotlib for the chart, the plugin and the reference plugins
# built, then scripts/bench.py (arguments pass through).
# Writes docs/benchmark.md and docs/benchmark.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib
scripts/build.sh
# The reference plugins, stripped like dist/plugin.wasm.
mkdir -p dist/bench
(cd bench/minimal && cargo build --quiet --release --target wasm32-wasip1)
(cd bench/lua-floor && cargo build --quiet --release --target wasm32-wasip1)
wasm-strip -o dist/bench/minimal.wasm bench/minimal/target/wasm32-wasip1/release/minimal_plugin.wasm
wasm-strip -o dist/bench/lua-floor.wasm bench/lua-floor/target/wasm32-wasip1/release/lua_floor_plugin.wasm
exec python3 scripts/bench.py "$@"
