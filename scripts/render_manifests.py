#!/usr/bin/env python3
"""Renders the manifests in istio/ for a published image: the placeholder image
reference and zero digest become the real ones (comments and layout kept).

  scripts/render_manifests.py --image REGISTRY/REPO:TAG --sha256 HEX OUT_DIR"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_URL = "oci://ghcr.io/example/proxy-wasm-lua:0.1.0"
PLACEHOLDER_SHA = "0" * 64


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", required=True, help="REGISTRY/REPO:TAG (without oci://)")
    p.add_argument("--sha256", required=True, help="the image's manifest digest, hex")
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    digest = args.sha256.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        sys.stderr.write(f"render: --sha256 {args.sha256!r} is not a sha256 hex digest\n")
        return 1
    sources = sorted((ROOT / "istio").rglob("*.yaml"))
    for src in sources:
        text = src.read_text()
        if src.name == "envoy-bootstrap.yaml":
            continue
        if PLACEHOLDER_URL not in text or PLACEHOLDER_SHA not in text:
            sys.stderr.write(f"render: {src.relative_to(ROOT)} lacks the placeholder url or sha256\n")
            return 1
        out = args.out / src.relative_to(ROOT / "istio")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text.replace(PLACEHOLDER_URL, f"oci://{args.image}").replace(PLACEHOLDER_SHA, digest))
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
