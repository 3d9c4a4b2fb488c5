//! proxy-wasm-lua: Envoy Lua filter scripts in a fail-closed Proxy-Wasm plugin.
//!
//! Layout: `config` (the pluginConfig contract), `runtime` (one Lua state per
//! configuration), `stream` (the per-stream coroutine driver), `api` (one module
//! per Lua object), `host` (the host-call seam), and `shell` (the thin proxy-wasm
//! layer, built only for wasm32).
pub mod api;
pub mod budget;
pub mod config;
pub mod helpers;
pub mod host;
pub mod pairs;
pub mod proto;
pub mod runtime;
pub mod scripts;
pub mod stream;

#[cfg(target_arch = "wasm32")]
mod shell;
