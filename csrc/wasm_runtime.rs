/// Builds the C runtime Lua links against on wasm32 (`libsetjmp.a`:
/// see setjmp.c; `libplw_sandbox_libc.a`: see sandbox_libc.c) from the sources
/// in `csrc`, and points the linker at Debian's wasi-libc for
/// `libwasi-emulated-signal.a`. Included by build scripts (`include!`).
fn wasm_runtime(csrc: &std::path::Path) {
    println!("cargo:rerun-if-changed={}", csrc.display());
    let clang = std::env::var("WASM_CLANG").unwrap_or_else(|_| "clang-19".into());
    cc::Build::new()
        .compiler(&clang)
        .archiver("llvm-ar-19")
        .file(csrc.join("setjmp.c"))
        .include(csrc.join("include"))
        .flag("--target=wasm32-wasip1")
        .flag("-mexception-handling")
        .opt_level(2)
        .compile("setjmp");
    cc::Build::new()
        .compiler(&clang)
        .archiver("llvm-ar-19")
        .file(csrc.join("sandbox_libc.c"))
        .flag("--target=wasm32-wasip1")
        .flag("-isystem")
        .flag("/usr/include/wasm32-wasi")
        .opt_level(2)
        .compile("plw_sandbox_libc");
    println!("cargo:rustc-link-search=native=/usr/lib/wasm32-wasi");
}
