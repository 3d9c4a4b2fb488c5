"""scripts/release.sh, as the release workflow runs it, against the local
registry: both image forms pushed, digests recorded, manifests rendered with the
compat image's digest (still valid Istio resources), notes written."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess

import yaml

import harness
from istio_schema import problems
from test_oci import ACCEPT, get, registry  # noqa: F401  (pytest fixture)

RELEASE = harness.ROOT / "scripts" / "release.sh"


def custom_sections(module: bytes) -> list[str]:
    """Names of a Wasm module's custom sections (id 0), read from its section headers."""
    def leb(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            b = module[pos]
            value |= (b & 0x7F) << shift
            pos += 1
            if b < 0x80:
                return value, pos
            shift += 7

    names, pos = [], 8  # after the magic number and version
    while pos < len(module):
        section_id = module[pos]
        size, body = leb(pos + 1)
        if section_id == 0:
            length, start = leb(body)
            names.append(module[start:start + length].decode())
        pos = body + size
    return names


def test_release_publishes_and_renders(registry, tmp_path):  # noqa: F811
    host, base = registry
    repo = f"{host}/release-test"
    env = {**os.environ, "RELEASE_DIR": str(tmp_path / "release"), "RELEASE_TAG": ""}
    done = subprocess.run([str(RELEASE), repo, "--insecure"], capture_output=True, text=True, env=env, cwd=harness.ROOT)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "release"
    version = json.loads(subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=harness.ROOT,
                                        capture_output=True, text=True, check=True).stdout)["packages"][0]["version"]

    wasm = (out / "plugin.wasm").read_bytes()
    assert wasm == harness.PLUGIN.read_bytes()
    assert (out / "plugin.wasm.sha256").read_text().split()[0] == hashlib.sha256(wasm).hexdigest()
    # The debug module is the shipped one plus its name section (which the shipped one lacks).
    debug = (out / "plugin.debug.wasm").read_bytes()
    assert "name" in custom_sections(debug) and "name" not in custom_sections(wasm)
    assert len(debug) > len(wasm)

    compat = "sha256:" + hashlib.sha256(get(f"{base}/v2/release-test/manifests/{version}", ACCEPT)).hexdigest()
    artifact = "sha256:" + hashlib.sha256(get(f"{base}/v2/release-test/manifests/{version}-artifact", ACCEPT)).hexdigest()
    digests = (out / "digests.txt").read_text()
    assert compat in digests and artifact in digests

    rendered = sorted((out / "istio").rglob("*.yaml"))
    assert len(rendered) == len([p for p in (harness.ROOT / "istio").rglob("*.yaml") if p.name != "envoy-bootstrap.yaml"])
    for path in rendered:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("WasmPlugin", "TrafficExtension"):
                assert problems(doc) == []
                wasm_spec = doc["spec"] if doc["kind"] == "WasmPlugin" else doc["spec"]["wasm"]
                assert wasm_spec["url"] == f"oci://{repo}:{version}"
                assert wasm_spec["sha256"] == compat.split(":", 1)[1]
    assert f"oci://{repo}:{version}" in (out / "notes.md").read_text()


def test_release_refuses_a_tag_that_is_not_the_version(tmp_path):
    env = {**os.environ, "RELEASE_DIR": str(tmp_path / "r"), "RELEASE_TAG": "v999.0.0"}
    done = subprocess.run([str(RELEASE), "127.0.0.1:1/x", "--insecure"], capture_output=True, text=True, env=env, cwd=harness.ROOT)
    assert done.returncode == 1
    assert "tag v999.0.0 does not match Cargo.toml version" in done.stderr
