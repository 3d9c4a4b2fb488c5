"""Every supported Envoy version loads the plugin and serves requests; invalid
configurations are refused by Envoy with a log line that says why."""
from __future__ import annotations

import json
import re
import subprocess
import tomllib
import uuid

import pytest

import harness
from conftest import deploy


@pytest.mark.parametrize("version", harness.ALL_VERSIONS)
def test_smoke_on_every_supported_envoy(version, upstream):
    dep = deploy(version, upstream, ["headers", "respond", "error"])
    try:
        test_id = uuid.uuid4().hex
        resp = harness.request(dep.port("headers"), "/smoke", headers=[("x-test-id", test_id), ("x-multi", "a")])
        assert resp.status == 200
        got = upstream.find(test_id)
        assert got is not None and got.values("x-added") == ["a1", "a2"] and got.path == "/rewritten/smoke"
        assert resp.values("x-resp-added") == ["r"]

        resp = harness.request(dep.port("respond"), "/deny")
        assert (resp.status, resp.body) == (403, b"go away")

        resp = harness.request(dep.port("error"), "/", headers=[("x-fail", "1")])
        assert resp.status == 500
        resp = harness.request(dep.port("error"), "/")
        assert resp.status == 200

        # The build says what it is: version from Cargo.toml, git revision.
        version = tomllib.loads((harness.ROOT / "Cargo.toml").read_text())["package"]["version"]
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=harness.ROOT, capture_output=True, text=True)
        expected = rev.stdout.strip() if rev.returncode == 0 else "unknown"
        dep.envoy.wait_log(rf"proxy-wasm-lua {re.escape(version)} \(git {expected}(-dirty)?\) started")
    finally:
        dep.envoy.stop()


def refused(version: str, upstream, plugin_config: str) -> str:
    """Starts Envoy with one plugin listener using `plugin_config`; asserts Envoy
    refuses to start and returns its log."""
    admin = harness.free_port()
    lst = harness.listener("bad", harness.free_port(), [harness.wasm_filter(plugin_config)])
    envoy = harness.start_envoy_process(version, harness.bootstrap(admin, upstream.port, [lst]))
    rc = envoy.wait_exit()
    assert rc != 0, "Envoy must refuse an invalid plugin configuration"
    return envoy.log()


REJECTIONS = [
    ("{not json", r"invalid plugin configuration: key must be a string at line 1 column 2"),
    (json.dumps({"inline_code": "x = 1", "bogus": True}), r"invalid plugin configuration: unknown field `bogus`"),
    (json.dumps({"inline_code": "x = 1", "fail_open": "yes"}), r"invalid type: string \"yes\", expected a boolean"),
    (json.dumps({"fail_open": True}), r"missing script: set `inline_code`"),
    (
        json.dumps({"inline_code": "function envoy_on_request(h)\n  local x = = 1\nend"}),
        r"script load error: inline_code:2: unexpected symbol near '='",
    ),
    (json.dumps({"inline_code": "\n\nerror('no config file')"}), r"script load error: inline_code:3: no config file"),
    (
        json.dumps({"inline_code": "local n = 0\nwhile true do n = n + 1 end"}),
        r"script load error: inline_code:2: instruction budget exceeded",
    ),
    (json.dumps({"inline_code": "x = 1", "memory_limit_bytes": 1000}), r"`memory_limit_bytes` 1000 is below the minimum"),
    (
        json.dumps({"inline_code": "x = 1", "modules": {"acme.bad": "local x =\n\n= 2"}}),
        r"module load error: modules\.acme\.bad: acme/bad\.lua:3: unexpected symbol near '='",
    ),
    (
        json.dumps({"inline_code": "require('acme.missing')"}),
        r"script load error: inline_code:1: module 'acme\.missing' not found:",
    ),
]


@pytest.mark.parametrize("version", harness.FULL_SUITE_VERSIONS)
@pytest.mark.parametrize("config,message", REJECTIONS, ids=["bad-json", "unknown-field", "wrong-type", "no-script", "syntax-error", "load-error", "load-loop", "memory-limit", "module-syntax", "module-missing"])
def test_invalid_configuration_is_refused_with_a_clear_message(version, upstream, config, message):
    log = refused(version, upstream, config)
    assert re.search(r"\[error\]\[wasm\].*lua: configuration rejected: .*" + message, log), log[-4000:]
