"""scripts/bundle.py: a folder of Lua files becomes pluginConfig (module names from
paths, syntax-checked), and what it emits runs in real Envoy."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

import harness
from conftest import deploy
from istio_schema import problems
from scenarios import Scenario

BUNDLE = harness.ROOT / "scripts" / "bundle.py"


def bundle(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUNDLE), str(directory), *args], capture_output=True, text=True)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


LIBRARY = {
    "main.lua": 'local moesif = require("moesif")\n'
    "function envoy_on_request(h)\n"
    '  h:headers():add("x-bundled", moesif.tag(h:headers():get(":path")))\n'
    "end\n",
    "moesif/init.lua": 'local helpers = require("moesif.core.helpers")\n'
    "return { tag = function(s) return helpers.wrap(s) end }\n",
    "moesif/core/helpers.lua": 'local log = require("moesif.core.logger")\n'
    "return { wrap = function(s) return log.prefix .. s .. ']' end }\n",
    "moesif/core/logger.lua": 'return { prefix = "[moesif " }\n',
    "lua/admin.lua": "function envoy_on_request(h) h:headers():add('x-admin', 'yes') end\n",
}


def test_a_folder_becomes_plugin_config_that_runs_in_envoy(tmp_path, upstream):
    root = write(tmp_path / "lib", LIBRARY)
    done = bundle(root, "--script", "admin=lua/admin.lua", "--set", "strict_globals=true")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert sorted(config["modules"]) == ["moesif", "moesif.core.helpers", "moesif.core.logger"]
    assert config["inline_code"] == LIBRARY["main.lua"]
    assert config["source_codes"] == {"admin": LIBRARY["lua/admin.lua"]}
    assert config["strict_globals"] is True

    cases = {"bundled": Scenario(None, config=config)}
    dep = deploy(harness.FULL_SUITE_VERSIONS[0], upstream, list(cases), cases)
    try:
        test_id = uuid.uuid4().hex
        resp = harness.request(dep.port("bundled"), "/orders", headers=[("x-test-id", test_id)])
        assert resp.status == 200
        assert upstream.find(test_id).header("x-bundled") == "[moesif /orders]"
    finally:
        dep.envoy.stop()


@pytest.mark.parametrize("fmt,kind", [("wasmplugin", "WasmPlugin"), ("trafficextension", "TrafficExtension")])
def test_manifests_carry_the_same_config(tmp_path, fmt, kind):
    root = write(tmp_path / "lib", LIBRARY)
    args = ["--name", "moesif", "--namespace", "istio-system", "--url", "oci://registry.example.com/proxy-wasm-lua:0.1.0",
            "--sha256", "0123456789012345678901234567890123456789012345678901234567890123",
            "--selector", "istio=ingressgateway", "--phase", "AUTHZ"]
    done = bundle(root, "--format", fmt, *args)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert problems(doc) == []
    assert doc["kind"] == kind and doc["metadata"] == {"name": "moesif", "namespace": "istio-system"}
    wasm = doc["spec"] if kind == "WasmPlugin" else doc["spec"]["wasm"]
    assert wasm["failStrategy"] == "FAIL_CLOSE"
    assert wasm["pluginConfig"] == json.loads(bundle(root).stdout)
    assert "inline_code: |" in done.stdout, "Lua sources are block scalars"


@pytest.mark.parametrize(
    "files,message",
    [
        ({"main.lua": "x = 1", "a/b.lua": "return 1", "a/b/init.lua": "return 2"}, "module 'a.b' comes from both a/b.lua and a/b/init.lua"),
        ({"main.lua": "x = 1", "lib/broken.lua": "local x =\n\n= 2"}, "lib/broken.lua:3: unexpected symbol near '='"),
        ({"main.lua": "x = 1", "my-lib/x.lua": "return 1"}, "my-lib/x.lua: cannot be a Lua module name"),
        ({"lib/only.lua": "return 1"}, "no script: add a main.lua"),
    ],
    ids=["clash", "syntax", "bad-name", "no-script"],
)
def test_clear_errors(tmp_path, files, message):
    done = bundle(write(tmp_path / "lib", files))
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
