//! The thin proxy-wasm layer: a root context per plugin configuration, an HTTP
//! context per stream, and the [`Host`](crate::host::Host) implementation over
//! the real ABI. Everything else is plain Rust, tested natively.
mod abi;
mod http;
mod root;
mod wasm_host;

proxy_wasm::main! {{
    // Runs in `_initialize`, where any host call but logging traps: only register
    // the factory here; Lua states are created in on_configure.
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}
