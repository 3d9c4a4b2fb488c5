#!/usr/bin/env python3
"""Builds an OCI image of plugin.wasm that Istio's Wasm image fetcher accepts and
pushes it with skopeo.

  scripts/oci_image.py push [--form compat|artifact] [--wasm dist/plugin.wasm]
                            [--insecure] [--creds USER:PASS] REGISTRY/REPO:TAG
  scripts/oci_image.py layout [--form ...] [--wasm ...] DIR     (build only)

Forms (both accepted by istio pkg/wasm/imagefetcher.go):
- compat:   OCI image manifest whose last (only) layer is
            application/vnd.oci.image.layer.v1.tar+gzip holding `plugin.wasm`;
- artifact: OCI manifest with exactly two layers, the Wasm config
            (application/vnd.module.wasm.config.v1+json) and the raw module
            (application/vnd.module.wasm.content.layer.v1+wasm).

The layers are built here, byte for byte reproducible (fixed tar and gzip
metadata), and skopeo copies them with --preserve-digests, so it never
recompresses them (skopeo's blob cache can otherwise turn a gzip layer into
zstd, which Istio rejects). After a push it prints the manifest digest (what
WasmPlugin.sha256 must be for oci:// URLs) and the sha256 of plugin.wasm (for
http(s):// URLs)."""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_CONTENT = "application/vnd.module.wasm.content.layer.v1+wasm"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plugin_tar_gz(wasm: bytes) -> tuple[bytes, bytes]:
    """(tar.gz, tar) with one regular file `plugin.wasm`, fixed metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(wasm), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(wasm))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=9, mtime=0), tar_bytes


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": f"sha256:{sha256(data)}", "size": len(data), **extra}


def image(wasm: bytes, form: str, version: str, revision: str) -> tuple[bytes, dict[str, bytes]]:
    """(manifest bytes, blobs by digest) of the image."""
    if not wasm.startswith(b"\0asm"):
        raise SystemExit("error: the file is not a Wasm module (it must start with \\0asm)")
    annotations = {
        "org.opencontainers.image.title": "proxy-wasm-lua",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": "proxy-wasm-lua",
    }
    blobs: dict[str, bytes] = {}

    def blob(media_type: str, data: bytes, **extra) -> dict:
        d = descriptor(media_type, data, **extra)
        blobs[d["digest"]] = data
        return d

    if form == "compat":
        layer, tar_bytes = plugin_tar_gz(wasm)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(tar_bytes)}"]},
                "config": {},
            },
            separators=(",", ":"),
        ).encode()
        layers = [blob(OCI_LAYER_GZIP, layer)]
        config_desc = blob(OCI_CONFIG, config)
    elif form == "artifact":
        wasm_config = json.dumps({"abiVersions": ["v0.2.1"], "type": "envoy_proxy"}, separators=(",", ":")).encode()
        layers = [
            blob(WASM_CONFIG, wasm_config),
            blob(WASM_CONTENT, wasm, annotations={"org.opencontainers.image.title": "plugin.wasm"}),
        ]
        config_desc = blob(OCI_CONFIG, b"{}")
    else:
        raise SystemExit(f"error: unknown form {form!r} (compat or artifact)")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layers,
            "annotations": annotations,
        },
        separators=(",", ":"),
    ).encode()
    return manifest, blobs


def write_layout(directory: Path, manifest: bytes, blobs: dict[str, bytes], tag: str) -> None:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/...) skopeo can read."""
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for digest, data in {**blobs, f"sha256:{sha256(manifest)}": manifest}.items():
        (blob_dir / digest.split(":", 1)[1]).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **descriptor(OCI_MANIFEST, manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))


def project_version() -> tuple[str, str]:
    import tomllib

    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return version, rev.stdout.strip() if rev.returncode == 0 else "unknown"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("push", "layout"):
        p = sub.add_parser(name)
        p.add_argument("--form", choices=["compat", "artifact"], default="compat")
        p.add_argument("--wasm", type=Path, default=ROOT / "dist" / "plugin.wasm")
        if name == "push":
            p.add_argument("--insecure", action="store_true", help="plain http / no TLS verification (local registries)")
            p.add_argument("--creds", help="USER:PASSWORD for the registry (else skopeo's auth file)")
            p.add_argument("reference", help="REGISTRY/REPOSITORY:TAG")
        else:
            p.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    wasm = args.wasm.read_bytes()
    version, revision = project_version()
    manifest, blobs = image(wasm, args.form, version, revision)
    if args.command == "layout":
        write_layout(args.directory, manifest, blobs, "latest")
        print(f"wrote {args.directory} ({args.form}); manifest digest: sha256:{sha256(manifest)}")
        return 0

    with tempfile.TemporaryDirectory(prefix="oci-layout-") as tmp:
        layout = Path(tmp) / "image"
        write_layout(layout, manifest, blobs, "latest")
        digest_file = Path(tmp) / "digest"
        cmd = ["skopeo", "copy", "--quiet", "--preserve-digests", "--digestfile", str(digest_file)]
        if args.insecure:
            cmd.append("--dest-tls-verify=false")
        if args.creds:
            cmd += ["--dest-creds", args.creds]
        cmd += [f"oci:{layout}:latest", f"docker://{args.reference}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(f"error: skopeo copy failed: {done.stderr.strip()}\n")
            return 1
        pushed = digest_file.read_text().strip()
    expected = f"sha256:{sha256(manifest)}"
    if pushed != expected:
        sys.stderr.write(f"error: the registry holds manifest {pushed}, not the one built ({expected})\n")
        return 1
    print(f"pushed {args.reference} ({args.form} form)")
    print(f"manifest digest: {pushed}")
    print(f"  WasmPlugin for oci:// URLs:    url: oci://{args.reference}  sha256: {pushed.split(':', 1)[1]}")
    print(f"plugin.wasm sha256: {sha256(wasm)}")
    print(f"  WasmPlugin for http(s):// URLs: sha256: {sha256(wasm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
