"""Publish-and-verify: scripts/oci_image.py pushes plugin.wasm in both image forms
to a real registry (Debian's docker-registry on loopback); the test pulls each
back over the registry API and applies the acceptance rules of Istio's Wasm
image fetcher (istio pkg/wasm/imagefetcher.go), then compares the bytes."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import harness

SCRIPT = harness.ROOT / "scripts" / "oci_image.py"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class Rejected(Exception):
    pass


def extract_plugin_wasm(tar_gz: bytes) -> bytes:
    try:
        tar = tarfile.open(fileobj=io.BytesIO(gzip.decompress(tar_gz)))
    except (OSError, tarfile.TarError) as e:
        raise Rejected(f"failed to parse layer as tar.gz: {e}")
    for member in tar:
        if Path(member.name).name == "plugin.wasm":
            # Istio reads Size bytes: nothing for a link or directory.
            if not member.isfile():
                return b""
            f = tar.extractfile(member)
            return f.read() if f else b""
    raise Rejected("plugin.wasm not found in the archive")


def istio_accepts(manifest: dict, blob) -> bytes:
    """The Wasm module Istio's image fetcher would take from this manifest, or
    Rejected. `blob(digest)` returns a blob's bytes."""
    layers = manifest.get("layers") or []
    if manifest.get("mediaType") == "application/vnd.docker.distribution.manifest.v2+json":
        if not layers or layers[-1]["mediaType"] != "application/vnd.docker.image.rootfs.diff.tar.gzip":
            raise Rejected("docker image: last layer is not rootfs.diff.tar.gzip")
        wasm = extract_plugin_wasm(blob(layers[-1]["digest"]))
    elif layers and layers[-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip":
        wasm = extract_plugin_wasm(blob(layers[-1]["digest"]))  # compat variant
    else:
        if len(layers) != 2:
            raise Rejected(f"number of layers must be 2 but got {len(layers)}")
        content = [l for l in layers if l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm"]
        if not content:
            raise Rejected("no application/vnd.module.wasm.content.layer.v1+wasm layer")
        wasm = blob(content[0]["digest"])
    if not wasm.startswith(b"\0asm"):
        raise Rejected("not a Wasm module")
    return wasm


@pytest.fixture(scope="module")
def registry():
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        pytest.fail("docker-registry and skopeo are missing: run scripts/setup.sh")
    port = harness.free_port()
    storage = Path(tempfile.mkdtemp(prefix="registry-"))
    config = storage / "config.yml"
    # Debian's default config listens on all interfaces: use our own, loopback only.
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{base}/v2/", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"docker-registry did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}", base
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(storage, ignore_errors=True)


def get(url: str, accept: str | None = None) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


@pytest.mark.parametrize("form", ["compat", "artifact"])
def test_published_image_is_what_istio_accepts(registry, form):
    host, base = registry
    ref = f"{host}/proxy-wasm-lua:{form}"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "push", "--form", form, "--insecure", ref], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    printed = dict(
        line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith(("manifest digest", "plugin.wasm sha256"))
    )
    built = harness.PLUGIN.read_bytes()
    assert printed["plugin.wasm sha256"] == hashlib.sha256(built).hexdigest()

    # Pull it back the way Istio does: the manifest by tag, its digest, then the layers.
    raw = get(f"{base}/v2/proxy-wasm-lua/manifests/{form}", ACCEPT)
    assert printed["manifest digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"

    def blob(digest: str) -> bytes:
        data = get(f"{base}/v2/proxy-wasm-lua/blobs/{digest}")
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    assert istio_accepts(manifest, blob) == built
    assert manifest["annotations"]["org.opencontainers.image.version"]


def test_images_are_reproducible(tmp_path):
    for d in ("a", "b"):
        subprocess.run([sys.executable, str(SCRIPT), "layout", "--form", "compat", str(tmp_path / d)], check=True, capture_output=True)
    index = [json.loads((tmp_path / d / "index.json").read_text()) for d in ("a", "b")]
    assert index[0]["manifests"][0]["digest"] == index[1]["manifests"][0]["digest"]


def tar_gz(name: str, data: bytes, symlink: bool = False) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, "other.wasm"
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


@pytest.mark.parametrize(
    "layers,blobs",
    [
        ([("application/vnd.oci.image.layer.v1.tar", "d1")], {"d1": b"not gzip"}),
        ([("application/vnd.oci.image.layer.v1.tar+gzip", "d1")], {"d1": tar_gz("other.wasm", b"\0asm")}),
        ([("application/vnd.oci.image.layer.v1.tar+gzip", "d1")], {"d1": tar_gz("plugin.wasm", b"", symlink=True)}),
        (
            [("application/vnd.oci.image.layer.v1.tar+gzip", "d1"), ("application/vnd.oci.image.layer.v1.tar+zstd", "d2")],
            {"d1": tar_gz("plugin.wasm", b"\0asm"), "d2": b""},
        ),
        ([("application/vnd.module.wasm.content.layer.v1+wasm", "d1")], {"d1": b"\0asm"}),
        ([("application/vnd.oci.image.layer.v1.tar+gzip", "d1")], {"d1": tar_gz("plugin.wasm", b"MZ not wasm")}),
    ],
    ids=["uncompressed-tar", "other-name", "symlink", "plugin-in-earlier-layer", "one-layer-artifact", "not-wasm"],
)
def test_the_acceptance_check_rejects_what_istio_rejects(layers, blobs):
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [{"mediaType": m, "digest": d} for m, d in layers]}
    with pytest.raises(Rejected):
        istio_accepts(manifest, blobs.__getitem__)
