/// Builds the project's Lua 5.4 (`liblua5.4.a`) for the target: the pristine
/// sources of the `lua-src` crate (a build-dependency, located with `cargo
/// metadata`) plus the patches in `csrc/lua-patches`, copied into `OUT_DIR` and
/// compiled with the flags `lua-src` would use. mlua links it (mlua-sys
/// feature `external`). Included by build.rs (`include!`).
///
/// The patches (see csrc/lua-patches/README.md): a coroutine yield from a C
/// function called straight from Lua code returns instead of `longjmp`ing. On
/// Wasm a `longjmp` is a Wasm exception, which costs Envoy's V8 ~10 µs.
const LUA_SRC_VERSION: &str = "551.0.2";
const LUA_DIR: &str = "lua-5.4.9";

fn lua(out: &std::path::Path, wasm: bool) {
    let patches = std::path::Path::new("csrc/lua-patches");
    println!("cargo:rerun-if-changed={}", patches.display());
    let pristine = lua_src_dir().join(LUA_DIR);
    let dir = out.join(LUA_DIR);
    if let Err(e) = copy_patched(&pristine, &dir, patches) {
        println!("cargo:warning=cannot prepare the Lua sources: {e}");
        std::process::exit(1);
    }
    let mut c_files: Vec<std::path::PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "c")).collect(),
        Err(e) => {
            println!("cargo:warning=cannot list {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    c_files.sort();
    let mut build = cc::Build::new();
    build.files(&c_files).include(&dir).warnings(false).flag_if_supported("-fno-common").define("LUA_COMPAT_5_3", None);
    if std::env::var("PROFILE").as_deref() == Ok("debug") {
        build.define("LUA_USE_APICHECK", None);
    }
    if wasm {
        // The C compiler is scripts/wasm-cc (.cargo/config.toml): clang-19 for
        // wasm32-wasip1 with the legacy exception encoding every Envoy accepts.
        build
            .define("LUA_USE_POSIX", None)
            .define("_WASI_EMULATED_SIGNAL", None)
            .flag("-mllvm")
            .flag("-wasm-enable-eh")
            .flag("-mllvm")
            .flag("-wasm-enable-sjlj");
        println!("cargo:rustc-link-lib=static=wasi-emulated-signal");
    } else {
        build.define("LUA_USE_LINUX", None);
    }
    build.compile("lua5.4");
}

/// The `lua-src` package's directory, from `cargo metadata` (works for registry,
/// vendored and git sources alike).
fn lua_src_dir() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("Cargo.toml");
    let fail = |what: String| -> ! {
        println!("cargo:warning=cannot find the lua-src {LUA_SRC_VERSION} sources: {what}");
        std::process::exit(1);
    };
    // Filtered to the platforms of this build: cargo has downloaded those
    // packages, so `--offline` normally holds (unfiltered, it wants every
    // platform's dependencies). Online again if not (say, a dev-dependency
    // a plain build never fetched).
    let metadata = |offline: bool| {
        let mut command = std::process::Command::new(&cargo);
        command.args(["metadata", "--format-version", "1", "--manifest-path"]).arg(&manifest);
        if offline {
            command.arg("--offline");
        }
        for platform in [std::env::var("TARGET"), std::env::var("HOST")].into_iter().flatten() {
            command.args(["--filter-platform", &platform]);
        }
        command.output().unwrap_or_else(|e| fail(format!("cargo metadata: {e}")))
    };
    let mut output = metadata(true);
    if !output.status.success() {
        output = metadata(false);
    }
    if !output.status.success() {
        fail(format!("cargo metadata: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| fail(format!("cargo metadata output: {e}")));
    let packages = meta.get("packages").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    let path = packages
        .iter()
        .find(|p| {
            p.get("name").and_then(|n| n.as_str()) == Some("lua-src")
                && p.get("version").and_then(|v| v.as_str()) == Some(LUA_SRC_VERSION)
        })
        .and_then(|p| p.get("manifest_path").and_then(|m| m.as_str()))
        .unwrap_or_else(|| fail("no such package in cargo metadata".into()));
    match std::path::Path::new(path).parent() {
        Some(dir) => dir.to_path_buf(),
        None => fail(format!("odd manifest path {path}")),
    }
}

/// Copies the Lua sources from `from` to `to`, applying `<file>.patch` from
/// `patches` to each file that has one; every patch must apply cleanly.
fn copy_patched(from: &std::path::Path, to: &std::path::Path, patches: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut applied = 0;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !(name.ends_with(".c") || name.ends_with(".h")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let patch_path = patches.join(format!("{name}.patch"));
        let text = if patch_path.exists() {
            let patch_text =
                std::fs::read_to_string(&patch_path).map_err(|e| format!("{}: {e}", patch_path.display()))?;
            let patch = diffy::Patch::from_str(&patch_text).map_err(|e| format!("{}: {e}", patch_path.display()))?;
            applied += 1;
            diffy::apply(&text, &patch).map_err(|e| format!("{} does not apply: {e}", patch_path.display()))?
        } else {
            text
        };
        let dest = to.join(&name);
        // Rewrite only on change, so cc's objects stay valid across reruns.
        if std::fs::read_to_string(&dest).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&dest, text).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
    }
    let mut expected = 0;
    for entry in std::fs::read_dir(patches).map_err(|e| format!("{}: {e}", patches.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "patch") {
            // Per file as well as the directory: cargo notices a file that goes.
            println!("cargo:rerun-if-changed={}", path.display());
            expected += 1;
        }
    }
    if applied != expected {
        return Err(format!("{expected} patches in {}, {applied} matched a Lua source", patches.display()));
    }
    Ok(())
}
