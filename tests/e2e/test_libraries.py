"""pluginConfig as the unit of distribution, in real Envoy: modules and require,
bundled helpers, named scripts chosen per route, the VM environment, strict
globals, the configurable fail-closed reply, and a Moesif-style multi-module
library that batches events and ships them with an asynchronous httpCall."""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

import harness
from conftest import deploy
from scenarios import Scenario

# A three-level library with relative requires (through the module name `...`).
LIBRARY = {
    "acme": "local base = ...\nreturn { util = require(base .. '.util'), name = 'acme' }",
    "acme.util": (
        "local base = (...):match('(.-)[^%.]+$')\n"
        "local strings = require(base .. 'text.strings')\n"
        "local M = {}\n"
        "function M.shout(s) return strings.upper(s) .. '!' end\n"
        "function M.fail()\n"
        "  error('util failed')\n"
        "end\n"
        "return M"
    ),
    "acme.text.strings": "local M = {}\nfunction M.upper(s) return s:upper() end\nreturn M",
}

LIBRARY_SCRIPT = r"""
-- Load-time probing seen in public Envoy Lua filters must not break the script.
local conf, conf_err = io.open("/etc/envoy/lua-settings.conf", "r")
package.path = "/usr/local/share/lua/?.lua;" .. package.path
local acme = require("acme")
local json = require("json")
local b64 = require("base64")
function envoy_on_request(h)
  local hd = h:headers()
  if hd:get("x-fail") then acme.util.fail() end
  hd:add("x-shout", acme.util.shout(hd:get("x-word") or "hi"))
  local doc = json.decode(h:body():getBytes(0, h:body():length()))
  doc.seen = true
  doc.list[#doc.list + 1] = bit.band(0xff, 0x0f)
  hd:add("x-json", json.encode(doc))
  hd:add("x-b64", b64.encode(doc.name))
  hd:add("x-getenv", tostring(os.getenv("TEAM_SETTING")))
  hd:add("x-io", tostring(conf) .. " " .. conf_err)
end
"""

PER_ROUTE_NS = "proxy-wasm-lua"
PER_ROUTE_ROUTES = [
    {
        "name": "auth",
        "match": {"prefix": "/auth"},
        "route": {"cluster": "upstream"},
        "metadata": {"filter_metadata": {PER_ROUTE_NS: {"name": "auth"}}},
    },
    {
        "name": "auth-ctx",
        "match": {"prefix": "/ctx"},
        "route": {"cluster": "upstream"},
        "metadata": {"filter_metadata": {PER_ROUTE_NS: {"name": "auth", "filter_context": {"tier": "route"}}}},
    },
    {
        "name": "off",
        "match": {"prefix": "/off"},
        "route": {"cluster": "upstream"},
        "metadata": {"filter_metadata": {PER_ROUTE_NS: {"disabled": True}}},
    },
    {
        "name": "lenient",
        "match": {"prefix": "/lenient"},
        "route": {"cluster": "upstream"},
        "metadata": {"filter_metadata": {PER_ROUTE_NS: {"name": "lenient"}}},
    },
    {
        "name": "unknown",
        "match": {"prefix": "/unknown"},
        "route": {"cluster": "upstream"},
        "metadata": {"filter_metadata": {PER_ROUTE_NS: {"name": "nope"}}},
    },
]

PER_ROUTE = {
    "inline_code": "function envoy_on_request(h) h:headers():add('x-script', 'default') end\n"
    "function envoy_on_response(h) h:headers():add('x-resp-script', 'default') end",
    "source_codes": {
        "auth": "function envoy_on_request(h)\n"
        "  h:headers():add('x-script', 'auth ' .. tostring((h:filterContext():get('tier'))))\n"
        "end\n"
        "function envoy_on_response(h) h:headers():add('x-resp-script', 'auth') end",
        # Its own fail_open: its error lets the request through.
        "lenient": {"inline_string": "function envoy_on_request(h)\n  h:headers():add('x-script', 'lenient')\n  error('lenient fails')\nend", "fail_open": True},
    },
    "filter_context": {"tier": "config"},
}

STRICT = r"""
counter = 0
function envoy_on_request(h)
  counter = counter + 1
  if h:headers():get("x-leak") then leaked_per_request = {} end
  h:headers():add("x-count", counter)
end
"""

# --- a Moesif-style library: several modules, one of them batching events and
# shipping them with an asynchronous httpCall.
MOESIF = {
    "moesif": "local base = ...\nreturn { logger = require(base .. '.logger') }",
    "moesif.codec": (
        "local json, b64 = require('json'), require('base64')\n"
        "local rle = require('moesif.rle')\n"
        "local M = {}\n"
        "function M.pack(events) return b64.encode(rle.encode(json.encode(events))) end\n"
        "return M"
    ),
    "moesif.rle": (
        "-- run-length encoding: (count byte, char) pairs, a stand-in for deflate\n"
        "local M = {}\n"
        "function M.encode(s)\n"
        "  local out, i = {}, 1\n"
        "  while i <= #s do\n"
        "    local c, n = s:sub(i, i), 1\n"
        "    while n < 255 and s:sub(i + n, i + n) == c do n = n + 1 end\n"
        "    out[#out + 1] = string.char(n) .. c\n"
        "    i = i + n\n"
        "  end\n"
        "  return table.concat(out)\n"
        "end\n"
        "return M"
    ),
    "moesif.logger": (
        "local codec = require('moesif.codec')\n"
        "local M = { batch = {}, size = 3, sent = 0 }\n"
        "function M.log(h, event)\n"
        "  M.batch[#M.batch + 1] = event\n"
        "  if #M.batch < M.size then return end\n"
        "  local body = codec.pack(M.batch)\n"
        "  M.batch = {}\n"
        "  M.sent = M.sent + 1\n"
        "  h:httpCall('upstream', {[':method'] = 'POST', [':path'] = '/moesif-batch', [':authority'] = 'moesif',\n"
        "    ['content-type'] = 'application/octet-stream', ['x-test-id'] = 'moesif-batch-' .. M.sent}, body, 1000, true)\n"
        "end\n"
        "return M"
    ),
}

MOESIF_SCRIPT = r"""
local moesif = require("moesif")
function envoy_on_request(h)
  h:streamInfo():dynamicMetadata():set("moesif", "path", h:headers():get(":path"))
end
function envoy_on_response(h)
  local path = h:streamInfo():dynamicMetadata():get("moesif").path
  moesif.logger.log(h, {path = path, status = tonumber(h:headers():get(":status"))})
end
"""

# A counter both listeners' scripts (separate Lua states in one VM) increment,
# retrying when another writer came first.
SHARED_COUNTER = r"""
function envoy_on_request(h)
  local sd = h:sharedData()
  for _ = 1, 10 do
    local v, cas = sd:get("e2e-hits")
    local n = (tonumber(v) or 0) + 1
    if sd:set("e2e-hits", n, cas) then
      h:headers():add("x-hits", n)
      return
    end
  end
  error("shared counter kept changing")
end
"""

COMPAT = r"""
function envoy_on_request(h)
  local a, b = unpack({"x", "y"})
  h:headers():add("x-compat", a .. b .. " " .. loadstring("return 6 * 7")() .. " " .. table.getn({1, 2, 3})
    .. " " .. math.pow(2, 3) .. " " .. bit.tohex(bit.bxor(0xf0, 0xff), 2))
end
"""

CASES = {
    "compat": Scenario(COMPAT),
    "counter_a": Scenario(SHARED_COUNTER),
    "counter_b": Scenario(SHARED_COUNTER),
    "library": Scenario(LIBRARY_SCRIPT, config={"modules": LIBRARY}, env={"TEAM_SETTING": "from-vm-config"}, stop_iteration=True),
    "per_route": Scenario(None, config=PER_ROUTE, routes=PER_ROUTE_ROUTES),
    "strict": Scenario(STRICT, config={"strict_globals": True}),
    "reply": Scenario(
        "function envoy_on_request(h) error('boom') end",
        config={"fail_closed_reply": {"status": 503, "body": '{"error":"unavailable"}', "headers": {"content-type": "application/json"}}},
    ),
    "moesif": Scenario(MOESIF_SCRIPT, config={"modules": MOESIF}),
}


@pytest.fixture(scope="module", params=harness.FULL_SUITE_VERSIONS)
def libs(request, upstream):
    dep = deploy(request.param, upstream, list(CASES), CASES)
    yield dep
    dep.envoy.stop()


def send(dep, upstream, name, path="/", headers=(), body=None):
    test_id = uuid.uuid4().hex
    resp = harness.request(
        dep.port(name), path, method="POST" if body is not None else "GET", headers=[("x-test-id", test_id), *headers], body=body
    )
    return resp, upstream.find(test_id)


def test_require_a_three_level_library_with_helpers_and_vm_env(libs, upstream):
    doc = {"name": "widget", "list": [1, 2]}
    resp, got = send(libs, upstream, "library", headers=[("x-word", "hello")], body=json.dumps(doc).encode())
    assert resp.status == 200
    assert got.header("x-shout") == "HELLO!"
    assert json.loads(got.header("x-json")) == {"name": "widget", "list": [1, 2, 15], "seen": True}
    assert got.header("x-b64") == base64.b64encode(b"widget").decode()
    assert got.header("x-getenv") == "from-vm-config"
    assert got.header("x-io") == (
        "nil /etc/envoy/lua-settings.conf: No such file or directory (the proxy-wasm-lua sandbox has no file system)"
    )


def test_an_error_inside_a_module_names_the_module_and_line(libs, upstream):
    resp, got = send(libs, upstream, "library", headers=[("x-fail", "1")], body=b"{}")
    assert resp.status == 500 and got is None
    libs.envoy.wait_log(r"script error in envoy_on_request: acme/util\.lua:6: util failed")


@pytest.mark.parametrize(
    "path,request_script,response_script",
    [
        ("/", "default", "default"),
        ("/auth", "auth config", "auth"),
        ("/ctx", "auth route", "auth"),
        ("/off", None, None),
        ("/lenient", "lenient", None),
        ("/unknown", None, None),
    ],
)
def test_routes_pick_a_named_script_or_none(libs, upstream, path, request_script, response_script):
    resp, got = send(libs, upstream, "per_route", path=path)
    assert resp.status == 200
    assert got.header("x-script") == request_script
    assert resp.header("x-resp-script") == response_script


def test_strict_globals_stop_a_per_request_global(libs, upstream):
    resp, got = send(libs, upstream, "strict")
    assert resp.status == 200
    resp, got = send(libs, upstream, "strict", headers=[("x-leak", "1")])
    assert resp.status == 500 and got is None
    libs.envoy.wait_log(r"inline_code:5: assignment to undeclared global 'leaked_per_request' \(strict_globals")
    resp, got = send(libs, upstream, "strict")
    assert resp.status == 200


def test_the_fail_closed_reply_comes_from_the_config(libs, upstream):
    resp, got = send(libs, upstream, "reply")
    assert (resp.status, resp.body, resp.header("content-type")) == (503, b'{"error":"unavailable"}', "application/json")
    assert got is None


def rle_decode(data: bytes) -> bytes:
    return b"".join(bytes([data[i + 1]]) * data[i] for i in range(0, len(data), 2))


def test_a_moesif_style_library_batches_and_ships_events(libs, upstream):
    paths = [f"/moesif/{uuid.uuid4().hex[:6]}" for _ in range(6)]
    for p in paths:
        resp, _ = send(libs, upstream, "moesif", path=p)
        assert resp.status == 200
    # The batches are asynchronous: wait until all six events arrived upstream.
    deadline = time.monotonic() + 5
    while True:
        events = [
            e
            for r in list(upstream.requests)
            if r.path == "/moesif-batch"
            for e in json.loads(rle_decode(base64.b64decode(r.body)))
            if e["path"] in paths
        ]
        if len(events) == len(paths) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [e["path"] for e in events] == paths
    assert all(e["status"] == 200 for e in events)


def test_shared_data_is_shared_between_lua_states(libs, upstream):
    seen = []
    for name in ["counter_a", "counter_b"] * 3:
        resp, got = send(libs, upstream, name)
        assert resp.status == 200
        seen.append(int(got.header("x-hits")))
    assert seen == list(range(seen[0], seen[0] + 6))


def test_luajit_era_globals_work(libs, upstream):
    resp, got = send(libs, upstream, "compat")
    assert resp.status == 200
    assert got.header("x-compat") == "xy 42 3 8.0 0f"
