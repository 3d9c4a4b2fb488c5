#!/usr/bin/env python3
"""Turns a folder of Lua files into the plugin's configuration.

  scripts/bundle.py DIR [--main main.lua] [--script NAME=FILE ...]
                        [--format json|wasmplugin|trafficextension]
                        [--name NAME] [--namespace NS] [--url URL] [--sha256 HEX]
                        [--selector KEY=VALUE ...] [--fail-strategy FAIL_CLOSE]
                        [--phase AUTHZ] [--priority N] [--set FIELD=JSON ...]

The main script (default `main.lua`, if present) becomes `inline_code`; each
`--script NAME=FILE` becomes `source_codes.NAME`; every other `.lua` file is a
module named after its path: `moesif/core/helpers.lua` is `moesif.core.helpers`
and `moesif/init.lua` is `moesif`. Every file is syntax-checked with Debian's
`luac5.4 -p`; errors read `file:line: message`. `--set` adds other config
fields (`--set strict_globals=true`). Output goes to stdout: the pluginConfig
JSON, or a WasmPlugin / TrafficExtension (Istio >= 1.30, `wasm:` form) YAML
ready for `kubectl apply`."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BundleError(Exception):
    pass


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "init" and len(parts) > 1:
        parts = parts[:-1]
    if not all(IDENT.match(p) for p in parts):
        raise BundleError(f"{rel}: cannot be a Lua module name (each path part must be an identifier)")
    return ".".join(parts)


def syntax_check(root: Path, files: list[Path]) -> None:
    luac = shutil.which("luac5.4") or shutil.which("luac")
    if not luac:
        raise BundleError("luac5.4 is missing (Debian package lua5.4): it checks each file's syntax")
    errors = []
    for rel in files:
        done = subprocess.run([luac, "-p", "--", str(rel)], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            # "luac5.4: a/b.lua:3: unexpected symbol near '='" -> "a/b.lua:3: ..."
            errors.append(re.sub(r"^\S*luac\S*: ", "", done.stderr.strip()))
    if errors:
        raise BundleError("syntax errors:\n" + "\n".join(errors))


def bundle(root: Path, main: str | None, scripts: dict[str, str]) -> dict:
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    files = sorted(p.relative_to(root) for p in root.rglob("*.lua") if p.is_file())
    if not files:
        raise BundleError(f"no .lua files under {root}")
    syntax_check(root, files)
    if main is None and (root / "main.lua").is_file():
        main = "main.lua"
    taken = {Path(main)} if main else set()
    for name, file in scripts.items():
        taken.add(Path(file))
    for rel in taken:
        if rel not in files:
            raise BundleError(f"{rel}: no such .lua file under {root}")
    config: dict = {}
    if main:
        config["inline_code"] = (root / main).read_text()
    if scripts:
        config["source_codes"] = {name: (root / f).read_text() for name, f in sorted(scripts.items())}
    if not config:
        raise BundleError("no script: add a main.lua, or name one with --main or --script NAME=FILE")
    modules: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for rel in files:
        if rel in taken:
            continue
        name = module_name(rel)
        if name in origin:
            first, second = sorted([str(origin[name]), str(rel)])
            raise BundleError(f"module '{name}' comes from both {first} and {second}")
        origin[name] = rel
        modules[name] = (root / rel).read_text()
    if modules:
        config["modules"] = modules
    return config


class LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (Lua sources) as `|` blocks, readable in a manifest."""


def _str(dumper: yaml.SafeDumper, s: str):
    style = "|" if "\n" in s and not any(c in s for c in "\r\t") and not s.endswith((" ", "\n\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


LiteralDumper.add_representer(str, _str)


def manifest(kind: str, config: dict, args: argparse.Namespace) -> dict:
    if not args.url:
        raise BundleError(f"--url is required for a {kind} (oci://REGISTRY/REPO:TAG)")
    wasm: dict = {"url": args.url}
    if args.sha256:
        wasm["sha256"] = args.sha256
    wasm["failStrategy"] = args.fail_strategy
    wasm["pluginConfig"] = config
    spec: dict = {}
    if args.selector:
        spec["selector"] = {"matchLabels": dict(kv.split("=", 1) for kv in args.selector)}
    if args.phase:
        spec["phase"] = args.phase
    if args.priority is not None:
        spec["priority"] = args.priority
    if kind == "WasmPlugin":
        spec.update(wasm)
    else:
        spec["wasm"] = wasm
    metadata = {"name": args.name}
    if args.namespace:
        metadata["namespace"] = args.namespace
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", type=Path)
    p.add_argument("--main", help="the default script, relative to DIR (default: main.lua if present)")
    p.add_argument("--script", action="append", default=[], metavar="NAME=FILE", help="a source_codes entry")
    p.add_argument("--format", choices=["json", "wasmplugin", "trafficextension"], default="json")
    p.add_argument("--name", default="lua")
    p.add_argument("--namespace")
    p.add_argument("--url")
    p.add_argument("--sha256")
    p.add_argument("--selector", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--fail-strategy", default="FAIL_CLOSE", choices=["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"])
    p.add_argument("--phase", choices=["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"])
    p.add_argument("--priority", type=int)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="another config field")
    args = p.parse_args(argv)
    try:
        scripts = {}
        for item in args.script:
            name, sep, file = item.partition("=")
            if not sep or not name or not file:
                raise BundleError(f"--script {item!r}: expected NAME=FILE")
            scripts[name] = file
        config = bundle(args.directory, args.main, scripts)
        for item in args.set:
            field, sep, value = item.partition("=")
            if not sep:
                raise BundleError(f"--set {item!r}: expected FIELD=JSON")
            try:
                config[field] = json.loads(value)
            except json.JSONDecodeError as e:
                raise BundleError(f"--set {field}: not JSON: {e}")
        if args.format == "json":
            out = json.dumps(config, indent=2) + "\n"
        else:
            kind = "WasmPlugin" if args.format == "wasmplugin" else "TrafficExtension"
            out = yaml.dump(manifest(kind, config, args), Dumper=LiteralDumper, sort_keys=False, width=1000)
    except BundleError as e:
        sys.stderr.write(f"bundle: {e}\n")
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
