//! The plugin's wasm C runtime (setjmp/longjmp, sandboxed libc), from ../../csrc.
include!("../../csrc/wasm_runtime.rs");

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        wasm_runtime(std::path::Path::new("../../csrc"));
    }
}
