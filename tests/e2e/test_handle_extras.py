"""Differential tests of the rest of the handle API: route / virtual-host metadata,
Envoy's dynamic metadata, filter state, stats, signatures, route-cache clearing
and the methods Proxy-Wasm cannot provide. Same method as test_conformance: one
Envoy per version, each script under the plugin and under the native filter."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import harness
from conftest import deploy
from scenarios import Scenario
from test_conformance import assert_same_client, assert_same_upstream, both, send, x_headers

SKIP = ("x-test-id", "x-echo-test-id", "x-request-id", "x-forwarded-proto", "x-envoy-upstream-service-time")

RSA = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "rsa.json").read_text())


def lua_bytes(b64: str) -> str:
    """A Lua string literal with these bytes (decimal escapes work in LuaJIT and 5.4)."""
    return '"' + "".join(f"\\{b}" for b in base64.b64decode(b64)) + '"'


def strip_pos(expr: str) -> str:
    return f'(tostring({expr}):gsub("^.-:%d+: ", ""))'


METADATA = r"""
function envoy_on_request(h)
  local hd = h:headers()
  local m = h:metadata()
  hd:add("x-md-route-key", tostring((m:get("route_key"))))
  hd:add("x-md-n", tostring((m:get("n"))))
  local nested = m:get("nested")
  hd:add("x-md-nested", nested and (nested.list[1] .. "," .. tostring(nested.list[2]) .. "," .. tostring(nested.list[3])) or "nil")
  hd:add("x-md-absent", select("#", m:get("absent")))
  local keys = {}
  for k in pairs(m) do keys[#keys + 1] = k end
  table.sort(keys)
  hd:add("x-md-keys", table.concat(keys, ","))
  hd:add("x-route-md", tostring((h:route():metadata():get("route_key"))))
  hd:add("x-vhost-md", tostring((h:virtualHost():metadata():get("vhost_key"))))
end

function envoy_on_response(h)
  h:headers():add("x-resp-md", tostring((h:metadata():get("route_key"))))
  h:headers():add("x-resp-vhost-md", tostring((h:virtualHost():metadata():get("vhost_key"))))
end
"""

CUSTOM_NAME = r"""
function envoy_on_request(h)
  h:headers():add("x-md", tostring((h:metadata():get("route_key"))) .. " " .. tostring((h:route():metadata():get("route_key"))))
  h:headers():add("x-ctx", tostring((h:filterContext():get("tier"))))
end
"""

HEADER_TO_METADATA = {
    "name": "envoy.filters.http.header_to_metadata",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
        "request_rules": [
            {"header": "x-md", "on_header_present": {"metadata_namespace": "hdr", "key": "k", "type": "STRING"}}
        ],
    },
}

# Typed (Any) and untyped dynamic metadata set by Envoy's set_metadata filter.
SET_METADATA = {
    "name": "envoy.filters.http.set_metadata",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config",
        "metadata": [
            {"metadata_namespace": "set.untyped", "value": {"answer": 42, "tags": ["a", "b"]}},
            {
                "metadata_namespace": "set.typed",
                "typed_value": {
                    "@type": "type.googleapis.com/google.protobuf.Struct",
                    "value": {"kind": "typed", "n": 7},
                },
            },
        ],
    },
}

DYNAMIC_METADATA = r"""
function envoy_on_request(h)
  local hd = h:headers()
  local dm = h:streamInfo():dynamicMetadata()
  local hdr = dm:get("hdr")
  hd:add("x-hdr-md", hdr and tostring(hdr.k) or "none")
  dm:set("hdr", "extra", "e")
  local again = dm:get("hdr")
  hd:add("x-hdr-md2", tostring(again.k) .. "," .. tostring(again.extra))
  local names = {}
  for ns in pairs(dm) do names[#names + 1] = ns end
  table.sort(names)
  hd:add("x-dm-names", table.concat(names, ","))
  local untyped = dm:get("set.untyped")
  hd:add("x-untyped", tostring(untyped.answer) .. " " .. table.concat(untyped.tags, ","))
  local si = h:streamInfo()
  local typed = si:dynamicTypedMetadata("set.typed")
  hd:add("x-typed", typed and (typed.fields.kind.string_value .. " " .. tostring(typed.fields.n.number_value)) or "nil")
  hd:add("x-typed-absent", tostring(si:dynamicTypedMetadata("set.untyped")))
end
"""

FILTER_STATE = rf"""
function envoy_on_request(h)
  local hd = h:headers()
  local fs = h:streamInfo():filterState()
  local name = "envoy.network.upstream_server_name"
  local ok, err = pcall(fs.set, fs, name, name, "sni.example")
  hd:add("x-fs-set", ok and "ok" or {strip_pos("err")})
  hd:add("x-fs-get", tostring((fs:get(name))))
  hd:add("x-fs-absent", select("#", fs:get("nothing.here")))
  local ok2, err2 = pcall(fs.set, fs, "no.such.factory", "no.such.factory", "v")
  hd:add("x-fs-err", {strip_pos("err2")})
end
"""

STATS = rf"""
function envoy_on_request(h)
  local hd = h:headers()
  local st = h:stats()
  st:counter("hits"):inc()
  st:counter("hits"):add(2)
  local g = st:gauge("level")
  g:set(7); g:inc(); g:sub(3); g:add(1); g:dec()
  st:histogram("sizes", "bytes"):recordValue(42)
  hd:add("x-hits", tostring(st:counter("hits"):value()))
  hd:add("x-level", tostring(g:value()))
  local errs = {{}}
  for _, f in ipairs({{
      function() st:counter("hits"):add(-1) end,
      function() g:add(-1) end,
      function() g:sub(-1) end,
      function() g:set(-1) end,
      function() st:histogram("sizes"):recordValue(-1) end,
      function() st:histogram("sizes", "seconds") end,
  }}) do
    local ok, err = pcall(f)
    errs[#errs + 1] = {strip_pos("err")}
  end
  hd:add("x-stat-errors", table.concat(errs, "|"))
end
"""

CRYPTO = rf"""
local der = {lua_bytes(RSA["public_key_der_b64"])}
local sig = {lua_bytes(RSA["sig_sha256_b64"])}
local sig1 = {lua_bytes(RSA["sig_sha1_b64"])}
function envoy_on_request(h)
  local hd = h:headers()
  local key = h:importPublicKey(der, string.len(der)):get()
  hd:add("x-key", type(key))
  local function check(name, hash, s, data)
    local ok, err = h:verifySignature(hash, key, s, string.len(s), data, string.len(data))
    hd:add("x-" .. name, tostring(ok) .. " " .. tostring(err))
  end
  check("sha256", "SHA256", sig, "hello world")
  check("sha1", "sha1", sig1, "hello world")
  check("tampered", "SHA256", sig, "hello world!")
  check("wrong-hash", "SHA384", sig, "hello world")
  check("unknown-hash", "md5", sig, "hello world")
  local ok, err = pcall(h.verifySignature, h, "SHA256", "never imported", sig, string.len(sig), "x", 1)
  hd:add("x-no-key", {strip_pos("err")})
  local bad = h:importPublicKey("junk", 4)
  hd:add("x-junk-first", type(bad:get()))
end
"""

ROUTE_CACHE = r"""
function envoy_on_request(h)
  local hd = h:headers()
  if hd:get("x-want-alt") then hd:add("x-route-to", "alt") end
end
"""

CLEAR_ROUTE_CACHE = r"""
function envoy_on_request(h)
  h:clearRouteCache()
  h:headers():add("x-cleared", "yes")
end

function envoy_on_response(h)
  h:clearRouteCache()
end
"""

OVERRIDE_HOST = rf"""
function envoy_on_request(h)
  local hd = h:headers()
  local ok, err = pcall(h.setUpstreamOverrideHost, h, "example.com")
  hd:add("x-hostname", {strip_pos("err")})
  local ok2, err2 = pcall(h.setUpstreamOverrideHost, h, "10.0.0.1", "yes")
  hd:add("x-strict", {strip_pos("err2")})
  local ok3, err3 = pcall(h.setUpstreamOverrideHost, h, "127.0.0.1")
  hd:add("x-valid", ok3 and "ok" or {strip_pos("err3")})
end
"""


TLS_INFO = r"""
function envoy_on_request(h)
  local hd = h:headers()
  local ssl = h:streamInfo():downstreamSslConnection()
  hd:add("x-tls", ssl:tlsVersion())
  hd:add("x-sni", h:streamInfo():requestedServerName())
  hd:add("x-presented", tostring(ssl:peerCertificatePresented()))
  hd:add("x-subject-local", ssl:subjectLocalCertificate())
  hd:add("x-subject-peer", ssl:subjectPeerCertificate())
  hd:add("x-uri-peer", table.concat(ssl:uriSanPeerCertificate(), ","))
  hd:add("x-uri-local", table.concat(ssl:uriSanLocalCertificate(), ","))
  hd:add("x-dns-local-first", ssl:dnsSansLocalCertificate()[1] or "none")
  hd:add("x-dns-local-count", #ssl:dnsSansLocalCertificate())
  hd:add("x-digest", ssl:sha256PeerCertificateDigest())
  local p = ssl:parsedSubjectPeerCertificate()
  hd:add("x-cn", p and p:commonName() or "none")
  hd:add("x-orgs", p and table.concat(p:organizationName(), ";") or "none")
  hd:add("x-conn-ssl", tostring(h:connection():ssl() ~= nil))
end
"""


MISUSE = rf"""
function envoy_on_request(h)
  h:body()
  local hd = h:headers()
  local ok, err = pcall(h.bodyChunks, h)
  hd:add("x-chunks-after-body", {strip_pos("err")})
  local ok2, err2 = pcall(h.timestamp, h, EnvoyTimestampResolution.MICROSECOND)
  hd:add("x-timestamp", {strip_pos("err2")})
  local ok3, err3 = pcall(h.timestampString, h, 7)
  hd:add("x-timestamp-string", {strip_pos("err3")})
end
"""


def s(script: str, native: bool = True, pre_filters=None, tls: bool = False, **config) -> Scenario:
    return Scenario(script, config=config, native=native, stop_iteration=True, pre_filters=pre_filters or [], tls=tls)


CASES = {
    "metadata": s(METADATA),
    "custom_name": s(CUSTOM_NAME, native=False, filter_name="custom", filter_context={"tier": "gold"}),
    "dynamic_metadata": s(DYNAMIC_METADATA, pre_filters=[HEADER_TO_METADATA, SET_METADATA]),
    "filter_state": s(FILTER_STATE),
    "stats": s(STATS),
    "crypto": s(CRYPTO),
    "route_cache": s(ROUTE_CACHE),
    "clear_route_cache": s(CLEAR_ROUTE_CACHE),
    "override_host": s(OVERRIDE_HOST),
    "tls_info": s(TLS_INFO, tls=True),
    "misuse": s(MISUSE),
}


@pytest.fixture(scope="module", params=harness.FULL_SUITE_VERSIONS)
def extras(request, upstream):
    dep = deploy(request.param, upstream, list(CASES), CASES)
    yield dep
    dep.envoy.stop()


def test_route_and_vhost_metadata_match_native(extras, upstream):
    ours, native = both(extras, upstream, "metadata")
    assert_same_upstream(ours, native)
    assert_same_client(ours, native)
    got = ours[2]
    assert got.header("x-md-route-key") == "route-value"
    assert got.header("x-md-n") == "5"
    assert got.header("x-md-nested") == "a,2,true"
    assert got.header("x-md-absent") == "0"
    assert got.header("x-md-keys") == "n,nested,route_key"
    assert got.header("x-route-md") == "route-value"
    assert got.header("x-vhost-md") == "vhost-value"
    assert ours[1].header("x-resp-md") == "route-value"


def test_metadata_of_a_route_without_metadata_is_empty_in_both(extras, upstream):
    ours, native = both(extras, upstream, "metadata", headers=[("x-route-to", "alt")])
    assert_same_client(ours, native)
    assert ours[1].status == 203 and ours[1].body == b"alt route"
    assert ours[1].header("x-resp-md") == "nil"
    assert ours[1].header("x-resp-vhost-md") == "vhost-value"


def test_filter_name_and_filter_context_come_from_the_config(extras, upstream):
    _, resp, got = send(extras, upstream, "custom_name")
    assert resp.status == 200
    assert got.header("x-md") == "custom-value custom-value"
    assert got.header("x-ctx") == "gold"


@pytest.mark.parametrize("headers", [[("x-md", "from-header")], []], ids=["set-by-envoy", "absent"])
def test_envoys_dynamic_metadata_is_visible_like_native(extras, upstream, headers):
    ours, native = both(extras, upstream, "dynamic_metadata", headers=headers)
    assert_same_upstream(ours, native)
    got = ours[2]
    if headers:
        assert got.header("x-hdr-md") == "from-header"
        assert got.header("x-hdr-md2") == "from-header,e"
    else:
        assert got.header("x-hdr-md") == "none"
    assert got.header("x-dm-names") == "hdr,set.untyped"
    assert got.header("x-untyped") == "42 a,b"
    assert got.header("x-typed") == "typed 7"
    assert got.header("x-typed-absent") == "nil"


def test_filter_state_set_and_get(extras, upstream):
    (_, r1, g1), (_, r2, g2) = both(extras, upstream, "filter_state")
    assert r1.status == 200, extras.envoy.log()[-3000:]
    assert g1.header("x-fs-set") == "ok"
    assert g1.header("x-fs-get") == "sni.example"
    assert g1.header("x-fs-absent") == "0"
    assert g1.header("x-fs-err") == "'no.such.factory' does not have an object factory"
    if g2.header("x-fs-set") == "ok":  # native filterState():set exists (newer Envoy)
        assert_same_upstream((None, r1, g1), (None, r2, g2))


def test_stats_match_native(extras, upstream):
    ours, native = both(extras, upstream, "stats")
    got, ref = ours[2], native[2]
    assert got.header("x-hits") == "3"
    assert got.header("x-level") == "5"
    assert got.header("x-stat-errors") == "|".join(
        [
            "counter add amount must be non-negative",
            "gauge add amount must be non-negative",
            "gauge sub amount must be non-negative",
            "gauge set value must be non-negative",
            "histogram value must be non-negative",
            "invalid histogram unit 'seconds', expected 'ms', 'milliseconds', 'microseconds', 'nanoseconds', 'bytes', or 'unspecified'",
        ]
    )
    stats = extras.envoy.stats()
    assert "wasmcustom.lua.hits: 3" in stats
    assert "wasmcustom.lua.level: 5" in stats
    if ref.header("x-hits") is not None:  # stats() exists natively from Envoy 1.38
        assert_same_upstream(ours, native)
        assert "http.native_stats.lua.hits: 3" in stats


def test_signatures_match_native(extras, upstream):
    ours, native = both(extras, upstream, "crypto")
    # Envoy hands a stream's first key object out again for every later import,
    # so its `junk` import reports the good key; every import here is its own.
    assert x_headers(native[2], skip=SKIP + ("x-junk-first",)) == x_headers(ours[2], skip=SKIP + ("x-junk-first",))
    assert native[2].header("x-junk-first") == "string"
    got = ours[2]
    assert got.header("x-junk-first") == "nil"
    assert got.header("x-key") == "string"
    assert got.header("x-sha256") == "true nil"
    assert got.header("x-sha1") == "true nil"
    assert got.header("x-tampered") == "false Failed to verify digest. Error code: 0"
    assert got.header("x-unknown-hash") == "false md5 is not supported."
    assert got.header("x-no-key") == "invalid public key"


@pytest.mark.parametrize("headers", [[("x-want-alt", "1")], []], ids=["rerouted", "default"])
def test_changing_request_headers_reroutes_like_native(extras, upstream, headers):
    ours, native = both(extras, upstream, "route_cache", headers=headers)
    assert_same_client(ours, native)
    assert ours[1].status == (203 if headers else 200)


def test_clear_route_cache_is_callable_on_both_paths(extras, upstream):
    ours, native = both(extras, upstream, "clear_route_cache")
    assert_same_upstream(ours, native)
    assert_same_client(ours, native)
    assert ours[2].header("x-cleared") == "yes"


def test_upstream_override_host_argument_errors_match_native_and_the_rest_is_unsupported(extras, upstream):
    (_, r1, g1), (_, r2, g2) = both(extras, upstream, "override_host")
    assert g1.header("x-hostname") == g2.header("x-hostname") == "host is not a valid IP address"
    # Envoy counts self and has no name here: "bad argument #3 to '?'".
    assert g1.header("x-strict") == "bad argument #2 to 'setUpstreamOverrideHost' (boolean expected, got string)"
    assert g2.header("x-strict") == "bad argument #3 to '?' (boolean expected, got string)"
    assert g2.header("x-valid") == "ok"
    assert g1.header("x-valid").startswith("handle:setUpstreamOverrideHost() is unsupported on Proxy-Wasm: ")


def test_misuse_errors_match_native(extras, upstream):
    ours, native = both(extras, upstream, "misuse", body=b"payload")
    assert_same_upstream(ours, native)
    got = ours[2]
    assert got.header("x-chunks-after-body") == "cannot call bodyChunks after body processing has begun"
    assert got.header("x-timestamp") == "timestamp format must be MILLISECOND."
    assert got.header("x-timestamp-string") == "timestamp format must be MILLISECOND or MICROSECOND."


@pytest.mark.parametrize("client_cert", [True, False], ids=["mtls", "server-only"])
def test_ssl_object_matches_native_on_tls(extras, upstream, client_cert):
    got = {}
    for name in ("tls_info", "native:tls_info"):
        test_id = name.replace(":", "-") + str(client_cert)
        resp = harness.tls_request(extras.port(name), "/", [("x-test-id", test_id)], client_cert)
        assert resp.status == 200, (name, resp, extras.envoy.log()[-2000:])
        got[name] = upstream.find(test_id)
    ours, native = got["tls_info"], got["native:tls_info"]
    # Envoy's properties carry the first SAN of each kind only (documented).
    skip = SKIP + ("x-dns-local-count",)
    assert x_headers(ours, skip=skip) == x_headers(native, skip=skip)
    assert native.header("x-dns-local-count") == "2" and ours.header("x-dns-local-count") == "1"
    assert ours.header("x-tls") == "TLSv1.3"
    assert ours.header("x-sni") == "lua.test"
    assert ours.header("x-dns-local-first") == "lua.test"
    assert ours.header("x-uri-local") == "spiffe://test/server"
    assert ours.header("x-conn-ssl") == "true"
    if client_cert:
        assert ours.header("x-presented") == "true"
        assert ours.header("x-uri-peer") == "spiffe://test/client"
        assert ours.header("x-cn") == "client one"
        assert len(ours.header("x-digest")) == 64
    else:
        assert ours.header("x-presented") == "false"
        assert ours.header("x-cn") == "none"
