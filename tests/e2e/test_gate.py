"""The load-time gate real Envoy enforces: plugin.wasm may import only the 18 WASI
functions Envoy 1.36-1.38 provide and env.proxy_*, and must neither import nor
export a Wasm tag (V8's C API aborts the whole Envoy process on one)."""
from __future__ import annotations

import re
import subprocess

import harness

WASI_ALLOWED = set(
    "fd_write fd_read fd_seek fd_close fd_fdstat_get fd_fdstat_set_flags environ_get environ_sizes_get "
    "args_get args_sizes_get clock_time_get random_get sched_yield poll_oneoff proc_exit path_open "
    "fd_prestat_get fd_prestat_dir_name".split()
)


def objdump(*sections: str) -> str:
    args = ["wasm-objdump", "-x"]
    for s in sections:
        args += ["-j", s]
    return subprocess.run(args + [str(harness.PLUGIN)], check=True, capture_output=True, text=True).stdout


def imports() -> list[tuple[str, str, str]]:
    out = []
    for line in objdump("Import").splitlines():
        m = re.match(r"\s*- (\w+)\[\d+\].*<- ([\w]+)\.(\S+)$", line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def test_imports_are_only_what_envoy_136_provides():
    found = imports()
    assert found, "no imports parsed: the wasm-objdump output format changed?"
    bad = []
    for kind, module, name in found:
        if module in ("wasi_snapshot_preview1", "wasi_unstable"):
            ok = kind == "func" and name in WASI_ALLOWED
        elif module == "env":
            ok = kind == "func" and name.startswith("proxy_")
        else:
            ok = False
        if not ok:
            bad.append(f"{kind} {module}.{name}")
    assert not bad, f"imports real Envoy 1.36-1.38 does not provide: {bad}"


def test_no_tag_is_imported_or_exported():
    dump = objdump("Import", "Export")
    tags = [line for line in dump.splitlines() if re.match(r"\s*- tag\[", line)]
    assert not tags, f"a Wasm tag is imported or exported; Envoy aborts on load: {tags}"


def test_the_gate_recognises_a_forbidden_import(tmp_path):
    """The check itself can fail: a module importing fd_renumber and a tag is caught."""
    wat = tmp_path / "bad.wat"
    wat.write_text(
        '(module (import "wasi_snapshot_preview1" "fd_renumber" (func (param i32 i32) (result i32)))'
        ' (tag $t (import "env" "__c_longjmp") (param i32)))'
    )
    wasm = tmp_path / "bad.wasm"
    subprocess.run(["wat2wasm", "--enable-exceptions", str(wat), "-o", str(wasm)], check=True)
    saved = harness.PLUGIN
    harness.PLUGIN = wasm
    try:
        kinds = {(k, m, n) for k, m, n in imports()}
        assert ("func", "wasi_snapshot_preview1", "fd_renumber") in kinds
        assert any(k == "tag" for k, _, _ in kinds)
    finally:
        harness.PLUGIN = saved
