#!/usr/bin/env bash
# Builds the plugin for wasm32-wasip1 and copies it to dist/plugin.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip1 --locked
mkdir -p dist
# The shipped module has no name section (about a fifth of its size, which V8
# would otherwise load into every Envoy); dist/plugin.debug.wasm keeps it, so a
# trap's wasm offsets can be turned back into function names.
cp target/wasm32-wasip1/release/proxy_wasm_lua.wasm dist/plugin.debug.wasm
wasm-strip -o dist/plugin.wasm dist/plugin.debug.wasm
echo "built dist/plugin.wasm ($(stat -c %s dist/plugin.wasm) bytes, sha256 $(sha256sum dist/plugin.wasm | cut -d' ' -f1))"
