#!/usr/bin/env bash
# Builds the plugin for wasm32-wasip1 and copies it to dist/plugin.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip1 --locked
mkdir -p dist
cp target/wasm32-wasip1/release/proxy_wasm_lua.wasm dist/plugin.wasm
echo "built dist/plugin.wasm ($(stat -c %s dist/plugin.wasm) bytes, sha256 $(sha256sum dist/plugin.wasm | cut -d' ' -f1))"
