#!/usr/bin/env bash
# The whole test suite: set-up, lint, native unit tests, the plugin build, and the
# end-to-end tests in real Envoy 1.36.2-1.40.0 (including the import/tag gate).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== rustfmt / clippy"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --release --target wasm32-wasip1 --lib -- -D warnings
echo "== native unit tests"
cargo test --locked
echo "== plugin build"
scripts/build.sh
echo "== end-to-end tests in real Envoy"
cd tests/e2e
python3 -m pytest -q -p no:cacheprovider "$@"
