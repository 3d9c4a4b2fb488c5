//! Build script:
//! 1. embeds every file under `lua/` into the plugin (`$OUT_DIR/lua_sources.rs`);
//! 2. builds Lua 5.4 with the project's patches (`csrc/lua_build.rs`);
//! 3. for wasm32, builds the project's C runtime that Lua links against
//!    (setjmp/longjmp, sandboxed libc calls: `csrc/wasm_runtime.rs`, shared with
//!    bench/lua-floor), and points the linker at Debian's wasi-libc.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    embed_lua(&out);
    git_revision();
    let wasm = env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    lua(&out, wasm);
    if wasm {
        wasm_runtime(std::path::Path::new("csrc"));
    }
}

/// `PWL_GIT_REV`: the commit the plugin is built from (logged at VM start), with
/// "-dirty" for uncommitted changes; "unknown" outside a git checkout.
fn git_revision() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=PWL_GIT_REV={rev}");
    // Rebuild when HEAD moves (a new commit or checkout).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head_ref}");
        }
    }
}

fn embed_lua(out: &std::path::Path) {
    println!("cargo:rerun-if-changed=lua");
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("lua");
    let mut files: Vec<PathBuf> =
        fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "lua"));
    files.sort();
    let mut code = String::from(
        "/// Lua sources bundled from `lua/`: (module name, source).\npub const LUA_SOURCES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        code.push_str(&format!("    ({name:?}, include_str!({:?})),\n", f.display().to_string()));
    }
    code.push_str("];\n");
    if let Err(e) = fs::write(out.join("lua_sources.rs"), code) {
        println!("cargo:warning=cannot write lua_sources.rs: {e}");
        std::process::exit(1);
    }
}

include!("csrc/lua_build.rs");
include!("csrc/wasm_runtime.rs");
