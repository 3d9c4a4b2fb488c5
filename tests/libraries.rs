//! Native tests of what the configuration carries besides the script: modules
//! and `require`, bundled helpers, LuaJIT compatibility, strict globals, the
//! outside-world stubs, named scripts and the per-route choice between them.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod fake_host;

use std::collections::HashMap;

use fake_host::{Plugin, GET};
use prost::Message;
use prost_types::value::Kind;
use proxy_wasm_lua::host::{LogLevel, MapType};
use proxy_wasm_lua::proto::Metadata;
use proxy_wasm_lua::stream::Verdict;
use serde_json::json;

fn logs(p: &Plugin) -> Vec<String> {
    p.host.logs_at(LogLevel::Info).iter().map(|l| l.trim_start_matches("script log: ").to_string()).collect()
}

fn run(p: &Plugin) {
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
}

fn plugin(cfg: serde_json::Value) -> Plugin {
    Plugin::new(&cfg.to_string()).unwrap()
}

fn rejected(cfg: serde_json::Value) -> String {
    Plugin::new(&cfg.to_string()).err().unwrap()
}

/// A three-level library: relative requires through the module name `...`,
/// loaded once per VM, with a traceback position inside a module.
fn library() -> serde_json::Value {
    json!({
        "acme": "local base = ... \n return { util = require(base .. '.util'), name = 'acme' }",
        "acme.util": "local base = (...):match('(.-)[^%.]+$')\n local strings = require(base .. 'text.strings')\n LOADS = (LOADS or 0) + 1\n return { shout = function(s) return strings.upper(s) .. '!' end, fail = function() error('util failed') end }",
        "acme.text.strings": {"inline_string": "local M = {}\nfunction M.upper(s)\n  return s:upper()\nend\nreturn M"},
    })
}

#[test]
fn require_loads_configured_modules_once_with_relative_helpers() {
    let p = plugin(json!({"modules": library(), "inline_code": r#"
        local acme = require("acme")
        function envoy_on_request(h)
          local again = require("acme.util")
          h:logInfo(acme.name .. " " .. acme.util.shout("hi") .. " " .. tostring(again == acme.util) .. " " .. LOADS)
          local ok, err = pcall(acme.util.fail)
          h:logInfo(err)
          local ok2, err2 = pcall(require, "acme.missing")
          h:logInfo(err2)
          h:logInfo(type(require("string").format) .. " " .. type(require("math")) .. " " .. tostring(package.loaded.acme == acme))
          package.path = "/etc/lua/?.lua;" .. package.path
        end
    "#}));
    run(&p);
    run(&p);
    let logs = logs(&p);
    assert_eq!(logs[0], "acme HI! true 1");
    assert_eq!(logs[1], "acme/util.lua:4: util failed");
    assert_eq!(
        logs[2],
        "module 'acme.missing' not found:\n\tno field package.preload['acme.missing']\n\tno module 'acme.missing' in pluginConfig.modules"
    );
    assert_eq!(logs[3], "function table true");
    assert_eq!(logs[4], "acme HI! true 1", "modules load once per VM");
}

#[test]
fn a_module_that_does_not_compile_rejects_the_configuration() {
    let err = rejected(json!({"inline_code": "x = 1", "modules": {"acme.bad": "local x = \n\n = 2"}}));
    assert!(err.contains("module load error: modules.acme.bad: acme/bad.lua:3: unexpected symbol near '='"), "{err}");
    // A module that fails while loading fails where it is required, with its position.
    let err =
        rejected(json!({"inline_code": "require('acme.boom')", "modules": {"acme.boom": "\nerror('no config')"}}));
    assert!(err.contains("script load error: acme/boom.lua:2: no config"), "{err}");
}

#[test]
fn json_encodes_and_decodes_like_cjson() {
    let p = plugin(json!({"inline_code": r#"
        local json = require("json")
        function envoy_on_request(h)
          local doc = json.decode('{"a": [1, 2.5, "x", null, true], "b": {}, "n": -3}')
          h:logInfo(math.type(doc.a[1]) .. " " .. doc.a[2] .. " " .. doc.a[3] .. " " .. tostring(doc.a[4] == json.null) .. " " .. tostring(doc.a[5]) .. " " .. doc.n)
          h:logInfo(json.encode({1, 2, 3}) .. " " .. json.encode({}) .. " " .. json.encode(json.empty_array) .. " " .. json.encode({k = json.null}))
          h:logInfo(json.encode(setmetatable({}, json.empty_array_mt)) .. " " .. json.encode({[1] = "a", [3] = "c"}) .. " " .. json.encode(5.0) .. " " .. json.encode("q\"\n"))
          local ok, err = pcall(json.decode, '{"a": }')
          h:logInfo(err)
          local ok2, err2 = pcall(json.encode, {f = function() end})
          h:logInfo(err2)
          local ok3, err3 = pcall(json.encode, 0/0)
          h:logInfo(err3)
          local t = {} t.self = t
          local ok4, err4 = pcall(json.encode, t)
          h:logInfo(err4)
        end
    "#}));
    run(&p);
    let logs = logs(&p);
    assert_eq!(logs[0], "integer 2.5 x true true -3");
    assert_eq!(logs[1], r#"[1,2,3] {} [] {"k":null}"#);
    assert_eq!(logs[2], r#"[] {"1":"a","3":"c"} 5 "q\"\n""#);
    assert!(logs[3].contains("json.decode: expected value at line 1 column 7"), "{}", logs[3]);
    assert!(logs[4].contains("json.encode: cannot encode a value of type function"), "{}", logs[4]);
    assert!(logs[5].contains("json.encode: cannot encode number NaN"), "{}", logs[5]);
    assert!(logs[6].contains("nesting deeper than 128"), "{}", logs[6]);
}

#[test]
fn base64_and_luajit_compatibility_helpers() {
    let script = r#"
        function envoy_on_request(h)
          local b64 = require("base64")
          h:logInfo(b64.encode("foobar") .. " " .. b64.decode("Zm9vYmFy") .. " " .. tostring(b64.decode("!!")))
          h:logInfo(tostring(bit.band(0xff, 0x0f)) .. " " .. bit.bor(1, 2, 4) .. " " .. bit.bxor(5, 3) .. " " .. bit.bnot(0))
          h:logInfo(bit.lshift(1, 31) .. " " .. bit.rshift(-1, 28) .. " " .. bit.arshift(-256, 4) .. " " .. bit.tobit(2^32 + 5))
          h:logInfo(bit.tohex(255) .. " " .. bit.tohex(-1, -4) .. " " .. bit.tohex(0x12345678, 2) .. " " .. bit.rol(0x80000001, 1) .. " " .. bit.bswap(0x01020304))
          h:logInfo(unpack({1, 2, 3}) .. " " .. loadstring("return 7")() .. " " .. table.getn({1, 2}) .. " " .. math.pow(2, 10))
          h:logInfo(tostring(require("bit") == bit))
        end
    "#;
    let p = plugin(json!({ "inline_code": script }));
    run(&p);
    assert_eq!(
        logs(&p),
        vec![
            "Zm9vYmFy foobar nil",
            "15 7 6 -1",
            "-2147483648 15 -16 5",
            "000000ff FFFF 78 3 67305985",
            "1 7 2 1024.0",
            "true",
        ]
    );
    // Pure Lua 5.4 on request.
    let p = plugin(json!({"luajit_compat": false, "inline_code":
        "function envoy_on_request(h) h:logInfo(tostring(unpack) .. ' ' .. tostring(bit) .. ' ' .. type(require('bit'))) end"}));
    run(&p);
    assert_eq!(logs(&p), vec!["nil nil table"]);
}

#[test]
fn outside_world_calls_fail_the_ordinary_lua_way() {
    std::env::set_var("PWL_TEST_SETTING", "from-env");
    let p = plugin(json!({"inline_code": r#"
        local setting = os.getenv("PWL_TEST_SETTING")
        local f, err = io.open("/etc/envoy/lua.conf", "r")
        function envoy_on_request(h)
          h:logInfo(setting .. " " .. tostring(os.getenv("PWL_NOT_SET")) .. " " .. tostring(f) .. " " .. err)
          local ok, e = pcall(io.lines, "/x")
          h:logInfo(e)
        end
    "#}));
    run(&p);
    let logs = logs(&p);
    assert_eq!(
        logs[0],
        "from-env nil nil /etc/envoy/lua.conf: No such file or directory (the proxy-wasm-lua sandbox has no file system)"
    );
    assert!(
        logs[1].ends_with("/x: No such file or directory (the proxy-wasm-lua sandbox has no file system)"),
        "{}",
        logs[1]
    );
}

#[test]
fn strict_globals_refuses_new_globals_in_request_hooks() {
    let script = r#"
        counter = 0
        function envoy_on_request(h)
          counter = counter + 1
          if h:headers():get("x-leak") then leaked = {} end
          h:logInfo("count " .. counter)
        end
    "#;
    let p = plugin(json!({"strict_globals": true, "inline_code": script}));
    run(&p);
    let mut leak = GET.to_vec();
    leak.push(("x-leak", "1"));
    assert_eq!(p.request(&leak).1, Verdict::Pause);
    let errors = p.host.logs_at(LogLevel::Error).join("\n");
    assert!(
        errors.contains("inline_code:5: assignment to undeclared global 'leaked' (strict_globals: declare it at the script's top level, or use a local)"),
        "{errors}"
    );
    run(&p);
    assert_eq!(logs(&p), vec!["count 1", "count 3"]);
    // Off by default, as in Envoy.
    let p = plugin(json!({ "inline_code": script }));
    assert_eq!(p.request(&leak).1, Verdict::Continue);
}

fn per_route(ns: &str, fields: &[(&str, Kind)]) -> Vec<u8> {
    let s = prost_types::Struct {
        fields: fields.iter().map(|(k, v)| (k.to_string(), prost_types::Value { kind: Some(v.clone()) })).collect(),
    };
    Metadata { filter_metadata: HashMap::from([(ns.to_string(), s)]), typed_filter_metadata: HashMap::new() }
        .encode_to_vec()
}

#[test]
fn routes_pick_named_scripts_or_disable_the_filter() {
    let p = plugin(json!({
        "inline_code": "function envoy_on_request(h) h:headers():add('x-script', 'default') end",
        "source_codes": {
            "auth": "function envoy_on_request(h) h:headers():add('x-script', 'auth ' .. tostring((h:filterContext():get('tier')))) end",
            "other": {"inline_string": "function envoy_on_request(h) error('other fails') end", "fail_open": true},
        },
        "filter_context": {"tier": "config"},
    }));
    let script_header = |route: Option<Vec<u8>>, vhost: Option<Vec<u8>>| -> Option<String> {
        let mut props = p.host.properties.borrow_mut();
        props.remove("xds.route_metadata");
        props.remove("xds.virtual_host_metadata");
        if let Some(r) = route {
            props.insert("xds.route_metadata".into(), r);
        }
        if let Some(v) = vhost {
            props.insert("xds.virtual_host_metadata".into(), v);
        }
        drop(props);
        let ran = p.routed_request(GET).unwrap();
        ran.map(|_| p.host.header(MapType::RequestHeaders, "x-script").unwrap_or_else(|| "none".into()))
    };
    let ns = "proxy-wasm-lua";
    assert_eq!(script_header(None, None).as_deref(), Some("default"));
    let auth = per_route(ns, &[("name", Kind::StringValue("auth".into()))]);
    assert_eq!(script_header(Some(auth.clone()), None).as_deref(), Some("auth config"));
    // The virtual host's settings apply when the route has none; the route's win.
    assert_eq!(script_header(None, Some(auth.clone())).as_deref(), Some("auth config"));
    let disabled = per_route(ns, &[("disabled", Kind::BoolValue(true))]);
    assert_eq!(script_header(Some(disabled), Some(auth.clone())), None);
    // An unknown name runs nothing (Envoy does not fall back to the default).
    assert_eq!(script_header(Some(per_route(ns, &[("name", Kind::StringValue("nope".into()))])), None), None);
    // Settings under another namespace are not ours.
    assert_eq!(
        script_header(Some(per_route("else", &[("disabled", Kind::BoolValue(true))])), None).as_deref(),
        Some("default")
    );
    // A per-route filter_context replaces the configured one.
    let ctx = prost_types::Struct {
        fields: [("tier".to_string(), prost_types::Value { kind: Some(Kind::StringValue("route".into())) })].into(),
    };
    let auth_ctx =
        per_route(ns, &[("name", Kind::StringValue("auth".into())), ("filter_context", Kind::StructValue(ctx))]);
    assert_eq!(script_header(Some(auth_ctx), None).as_deref(), Some("auth route"));
    // A named script's own fail_open.
    let other = per_route(ns, &[("name", Kind::StringValue("other".into()))]);
    assert_eq!(script_header(Some(other), None).as_deref(), Some("none"));
    assert!(p.host.logs_at(LogLevel::Error).join("\n").contains("source_codes.other:1: other fails"));
    assert!(p.host.replies.borrow().is_empty(), "fail_open: no reply");
}

#[test]
fn the_fail_closed_reply_is_configurable() {
    let p = plugin(json!({
        "inline_code": "function envoy_on_request(h) error('boom') end",
        "fail_closed_reply": {"status": 503, "body": "{\"error\": \"unavailable\"}", "headers": {"content-type": "application/json", "retry-after": "5"}},
    }));
    assert_eq!(p.request(GET).1, Verdict::Pause);
    let reply = p.host.replies.borrow()[0].clone();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, br#"{"error": "unavailable"}"#);
    assert_eq!(
        reply.headers,
        vec![("content-type".to_string(), b"application/json".to_vec()), ("retry-after".to_string(), b"5".to_vec())]
    );
}

#[test]
fn shared_data_reads_writes_and_compares_and_swaps() {
    let p = plugin(json!({"inline_code": r#"
        function envoy_on_request(h)
          local sd = h:sharedData()
          local v, cas = sd:get("hits")
          h:logInfo(tostring(v) .. " " .. math.type(cas))
          sd:set("hits", (tonumber(v) or 0) + 1, cas)
          sd:set("k", "a")
          local _, c1 = sd:get("k")
          h:logInfo(tostring(sd:set("k", "b", c1)))
          local ok, why = sd:set("k", "c", c1)
          h:logInfo(tostring(ok) .. " " .. tostring(why) .. " " .. sd:get("k"))
        end
    "#}));
    run(&p);
    run(&p);
    assert_eq!(
        logs(&p),
        vec!["nil integer", "true", "false cas mismatch b", "1 integer", "true", "false cas mismatch b"]
    );
    assert_eq!(p.host.shared.borrow()["hits"].0, b"2");
}

#[test]
fn memory_gauges_report_the_lua_heap_and_linear_memory() {
    let p = plugin(json!({"inline_code": "big = string.rep('x', 100000)"}));
    p.scripts.stream_done(p.host.as_ref(), 5 << 20);
    let heap = p.host.metric("lua.vm.heap_bytes").unwrap();
    assert!(heap > 100_000, "{heap}");
    assert_eq!(p.host.metric("lua.vm.linear_memory_bytes"), Some(5 << 20));
    // Refreshed every 256 streams, not on each.
    p.scripts.stream_done(p.host.as_ref(), 6 << 20);
    assert_eq!(p.host.metric("lua.vm.linear_memory_bytes"), Some(5 << 20));
}
