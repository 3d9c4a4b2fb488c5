//! Native tests of the Lua API and the stream driver, through the fake host.
mod fake_host;

use fake_host::{Plugin, GET};
use proxy_wasm_lua::host::{LogLevel, MapType};
use proxy_wasm_lua::stream::{Verdict, SCRIPT_ERROR_BODY, SCRIPT_ERROR_DETAILS};

fn info_logs(p: &Plugin) -> Vec<String> {
    p.host.logs_at(LogLevel::Info)
}

fn error_logs(p: &Plugin) -> String {
    p.host.logs_at(LogLevel::Error).join("\n")
}

#[test]
fn header_reads_follow_envoy_multi_value_semantics() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local hd = h:headers()
          h:logInfo(tostring(hd:get("X-Multi")))
          h:logInfo(tostring(hd:getNumValues("x-multi")))
          h:logInfo(tostring(hd:getAtIndex("x-multi", 0)) .. "|" .. tostring(hd:getAtIndex("x-multi", 1)))
          h:logInfo(tostring(hd:getAtIndex("x-multi", 2)) .. "|" .. tostring(hd:getAtIndex("x-multi", -1)))
          h:logInfo(tostring(hd:get("absent")) .. "|" .. hd:getNumValues("absent"))
          h:logInfo(math.type(hd:getNumValues("x-multi")))
          local seen = {}
          for k, v in pairs(hd) do seen[#seen + 1] = k .. "=" .. v end
          h:logInfo(table.concat(seen, ","))
        end
        "#,
    );
    let mut headers = GET.to_vec();
    headers.extend([("x-multi", "a"), ("x-other", "o"), ("x-multi", "b")]);
    let (_s, verdict) = p.request(&headers);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    let logs: Vec<String> = info_logs(&p).iter().map(|l| l.trim_start_matches("script log: ").to_string()).collect();
    assert_eq!(
        logs,
        vec![
            "a,b",
            "2",
            "a|b",
            "nil|nil",
            "nil|0",
            "integer",
            ":method=GET,:path=/p,:authority=example.com,x-multi=a,x-other=o,x-multi=b",
        ]
    );
}

#[test]
fn header_writes_reach_the_host() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local hd = h:headers()
          hd:add("X-Added", "1")
          hd:add("x-added", 2)
          hd:add("x-float", 10 / 2)
          hd:add("x-float", 2.5)
          hd:replace("x-replace", "new")
          hd:replace(":path", "/rewritten")
          hd:remove("x-remove")
          h:logInfo(hd:get("x-added") .. "|" .. hd:get(":path") .. "|" .. tostring(hd:get("x-remove")))
        end
        "#,
    );
    let mut headers = GET.to_vec();
    headers.extend([("x-replace", "old1"), ("x-replace", "old2"), ("x-remove", "gone")]);
    let (_s, verdict) = p.request(&headers);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    let got = p.host.get(MapType::RequestHeaders);
    let find = |k: &str| got.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert_eq!(find("x-added"), vec!["1", "2"]);
    assert_eq!(find("x-float"), vec!["5", "2.5"], "integral floats print as LuaJIT would; others as Lua does");
    assert_eq!(find("x-replace"), vec!["new"]);
    assert_eq!(find(":path"), vec!["/rewritten"]);
    assert!(find("x-remove").is_empty());
    assert_eq!(info_logs(&p), vec!["script log: 1,2|/rewritten|nil"]);
}

#[test]
fn pairs_iterates_a_snapshot_so_mutation_and_break_are_safe() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local hd = h:headers()
          local n = 0
          for k, v in pairs(hd) do
            n = n + 1
            hd:add("x-copy-" .. n, k)
            if k == ":path" then break end
          end
          for k in pairs(hd) do end
          hd:add("x-after-break", "ok")
          h:logInfo(tostring(n))
        end
        "#,
    );
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    assert_eq!(info_logs(&p), vec!["script log: 2"]);
    let names: Vec<String> = p.host.get(MapType::RequestHeaders).into_iter().map(|(k, _)| k).collect();
    assert!(names.contains(&"x-copy-2".to_string()) && names.contains(&"x-after-break".to_string()));
}

#[test]
fn respond_sends_a_local_reply_and_stops_the_script() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          h:respond({[":status"] = "403", ["x-reason"] = {"a", "b"}, ["X-Num"] = 7, ["x-f"] = {2.5, 3.0}}, "denied")
          h:logInfo("not reached")
        end
        "#,
    );
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Pause);
    let replies = p.host.replies.borrow();
    assert_eq!(replies.len(), 1, "{}", p.host.all_logs());
    let r = &replies[0];
    assert_eq!((r.status, r.details.as_str(), r.body.as_slice()), (403, "lua_response", &b"denied"[..]));
    let mut h: Vec<(String, Vec<u8>)> = r.headers.clone();
    h.sort();
    assert_eq!(
        h,
        vec![
            ("x-f".into(), b"2.5".to_vec()),
            ("x-f".into(), b"3".to_vec()),
            ("x-num".into(), b"7".to_vec()),
            ("x-reason".into(), b"a".to_vec()),
            ("x-reason".into(), b"b".to_vec())
        ]
    );
    assert!(info_logs(&p).is_empty());
}

#[test]
fn respond_without_body() {
    let p = Plugin::with_script(r#"function envoy_on_request(h) h:respond({[":status"] = 204}) end"#);
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Pause);
    let r = p.host.replies.borrow()[0].clone();
    assert_eq!((r.status, r.body.len(), r.headers.len()), (204, 0, 0));
}

#[test]
fn respond_rejects_bad_status_and_arguments() {
    for (call, expected) in [
        (r#"h:respond({[":status"] = "99"})"#, ":status must be between 200-599"),
        (r#"h:respond({[":status"] = "abc"})"#, ":status must be between 200-599"),
        (r#"h:respond({["x"] = "1"})"#, ":status must be between 200-599"),
        (r#"h:respond("403")"#, "bad argument #1 to 'respond' (table expected, got string)"),
        (r#"h:respond({[":status"] = 200}, {})"#, "bad argument #2 to 'respond' (string expected, got table)"),
        (r#"h:respond({[":status"] = 200, [1] = "x"})"#, "header key must be a string, got number"),
        (
            r#"h:respond({[":status"] = 200, x = true})"#,
            "header value for 'x' must be a string or an array of strings, got boolean",
        ),
        (
            r#"h:respond({[":status"] = 200, x = "a\r\nset-cookie: evil"})"#,
            "header value for 'x' contains CR, LF or NUL",
        ),
        (r#"h:respond({[":status"] = 200, x = {"a", {}}})"#, "header value for 'x' must be a string, got table"),
        (r#"h:respond({[":status"] = 200, x = {"a", "b\n"}})"#, "header value for 'x' contains CR, LF or NUL"),
        (r#"h:respond({[":status"] = 200, ["Bad Name"] = "1"})"#, "invalid header name 'Bad Name'"),
    ] {
        let p = Plugin::with_script(&format!("function envoy_on_request(h)\n  {call}\nend"));
        let (_s, verdict) = p.request(GET);
        assert_eq!(verdict, Verdict::Pause, "{call}");
        let errors = error_logs(&p);
        assert!(
            errors.contains(&format!("inline_code:2: {expected}")),
            "{call}: expected {expected:?} at inline_code:2 in {errors:?}"
        );
        let replies = p.host.replies.borrow();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].status, 500, "{call} must fail closed");
    }
}

#[test]
fn script_error_fails_closed_with_generic_body_then_next_request_works() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          if h:headers():get("x-fail") then
            local t = nil
            return t.field
          end
          h:headers():add("x-ok", "1")
        end
        "#,
    );
    let mut bad = GET.to_vec();
    bad.push(("x-fail", "1"));
    let (_s, verdict) = p.request(&bad);
    assert_eq!(verdict, Verdict::Pause);
    let r = p.host.replies.borrow()[0].clone();
    assert_eq!((r.status, r.details.as_str()), (500, SCRIPT_ERROR_DETAILS));
    assert_eq!(r.body, SCRIPT_ERROR_BODY.as_bytes());
    let errors = error_logs(&p);
    assert!(
        errors.contains("script error in envoy_on_request: inline_code:5: attempt to index a nil value (local 't')"),
        "{errors}"
    );

    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue);
    assert!(p.host.get(MapType::RequestHeaders).contains(&("x-ok".into(), "1".into())));
    assert_eq!(p.host.replies.borrow().len(), 1);
}

#[test]
fn fail_open_continues_and_keeps_earlier_changes() {
    let json = serde_json::json!({
        "inline_code": "function envoy_on_request(h) h:headers():add('x-before', '1'); error('boom') end",
        "fail_open": true,
    });
    let p = Plugin::new(&json.to_string()).unwrap();
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue);
    assert!(p.host.replies.borrow().is_empty());
    assert!(error_logs(&p).contains("inline_code:1: boom"));
    assert!(p.host.get(MapType::RequestHeaders).contains(&("x-before".into(), "1".into())));
}

#[test]
fn api_errors_are_plain_strings_with_the_script_position() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local hd = h:headers()
          local results = {}
          local function try(f, ...)
            local ok, err = pcall(f, ...)
            results[#results + 1] = type(err) .. ":" .. tostring(err)
          end
          try(function() hd:add("x", {}) end)
          try(function() hd:add("x") end)
          try(function() hd:add("bad name", "v") end)
          try(function() hd:replace("x", "a\nb") end)
          try(function() hd:add("x", "a\0b") end)
          try(function() hd:remove(":path") end)
          try(function() hd:add(":path", "/second") end)
          try(function() hd:getAtIndex("x", "one") end)
          try(function() h.headers() end)
          try(function() h:logInfo({}) end)
          for _, r in ipairs(results) do h:logInfo(r) end
        end
        "#,
    );
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    let logs: Vec<String> = info_logs(&p).iter().map(|l| l.trim_start_matches("script log: ").to_string()).collect();
    assert_eq!(
        logs,
        vec![
            "string:inline_code:9: bad argument #2 to 'add' (string expected, got table)",
            "string:inline_code:10: bad argument #2 to 'add' (string expected, got no value)",
            "string:inline_code:11: invalid header name 'bad name'",
            "string:inline_code:12: header value for 'x' contains CR, LF or NUL",
            "string:inline_code:13: header value for 'x' contains CR, LF or NUL",
            "string:inline_code:14: cannot remove pseudo-header ':path': Envoy needs it to forward the message",
            "string:inline_code:15: cannot add a second ':path': pseudo-headers have one value, use replace()",
            "string:inline_code:16: bad argument #2 to 'getAtIndex' (number expected, got string)",
            "string:inline_code:17: calling 'headers' on bad self (use ':' to call methods, e.g. handle:headers())",
            "string:inline_code:18: bad argument #1 to 'logInfo' (string expected, got table)",
        ]
    );
    // Nothing was added by the refused calls.
    assert!(!p.host.get(MapType::RequestHeaders).iter().any(|(k, _)| k == "x"));
}

#[test]
fn unexpected_yield_is_a_script_error() {
    let p = Plugin::with_script("function envoy_on_request(h) coroutine.yield(1) end");
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Pause);
    assert!(error_logs(&p).contains("script performed an unexpected yield"));
    assert_eq!(p.host.replies.borrow()[0].status, 500);
}

#[test]
fn scripts_may_use_their_own_coroutines() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
          h:headers():add("x-sum", gen() + gen() + gen())
        end
        "#,
    );
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    assert!(p.host.get(MapType::RequestHeaders).contains(&("x-sum".into(), "6".into())));
}

#[test]
fn objects_kept_across_requests_fail_cleanly() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          if saved then
            local ok, err = pcall(function() local v = saved:get(":path"); return v end)
            h:logInfo(tostring(ok) .. " " .. err)
          end
          saved = h:headers()
        end
        "#,
    );
    let (_first, _) = p.request(GET);
    let (second, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue);
    assert!(info_logs(&p)[0].contains("false inline_code:4: object used outside of its stream"), "{:?}", info_logs(&p));
    drop(second);
    let (_third, _) = p.request(GET);
    assert!(info_logs(&p)[1].contains("object used after its stream ended"), "{:?}", info_logs(&p));
}

#[test]
fn globals_persist_across_requests() {
    let p = Plugin::with_script(
        r#"
        count = 0
        function envoy_on_request(h)
          count = count + 1
          h:headers():replace("x-count", count)
        end
        "#,
    );
    for _ in 0..3 {
        p.request(GET);
    }
    assert!(p.host.get(MapType::RequestHeaders).contains(&("x-count".into(), "3".into())));
}

#[test]
fn response_hook_edits_response_headers_and_reads_request_headers_object() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h) req = h:headers() end
        function envoy_on_response(h)
          local hd = h:headers()
          hd:replace("x-status", hd:get(":status"))
          hd:remove("server")
        end
        "#,
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "200"), ("server", "upstream")]);
    assert_eq!(s.on_response_headers(true), Verdict::Continue, "{}", p.host.all_logs());
    assert_eq!(
        p.host.get(MapType::ResponseHeaders),
        vec![(":status".into(), "200".into()), ("x-status".into(), "200".into())]
    );
}

#[test]
fn request_headers_cannot_change_after_forwarding() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h) req = h:headers() end
        function envoy_on_response(h)
          local ok, err = pcall(req.add, req, "x", "1")
          h:logInfo(err)
          h:logInfo(req:get(":path"))
        end
        "#,
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "200")]);
    assert_eq!(s.on_response_headers(true), Verdict::Continue);
    assert_eq!(
        info_logs(&p),
        vec![
            "script log: header map can no longer be modified: the request headers were already forwarded",
            "script log: /p"
        ]
    );
}

#[test]
fn response_error_fails_closed_before_headers_are_forwarded() {
    let p = Plugin::with_script("function envoy_on_response(h) error('bad response') end");
    let (mut s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue);
    p.host.set(MapType::ResponseHeaders, &[(":status", "200")]);
    assert_eq!(s.on_response_headers(true), Verdict::Pause);
    assert_eq!(p.host.replies.borrow()[0].status, 500);
    assert!(error_logs(&p).contains("script error in envoy_on_response: inline_code:1: bad response"));
}

#[test]
fn our_fail_closed_reply_is_not_run_through_the_response_hook() {
    let p = Plugin::with_script(
        "function envoy_on_request(h) error('x') end\nfunction envoy_on_response(h) h:logInfo('ran') end",
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "500")]);
    assert_eq!(s.on_response_headers(true), Verdict::Continue);
    assert!(info_logs(&p).is_empty());
}

#[test]
fn host_failures_become_script_errors_not_traps() {
    let p = Plugin::with_script(
        r#"function envoy_on_request(h)
          local ok, err = pcall(function() local v = h:headers():get("x"); return v end)
          h:logInfo(err)
        end"#,
    );
    *p.host.fail_status.borrow_mut() = Some(2);
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(
        info_logs(&p),
        vec!["script log: inline_code:2: host call get_header_map_pairs failed: bad argument (2)"]
    );
}

#[test]
fn hooks_are_optional() {
    let p = Plugin::with_script("x = 1");
    let (mut s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(s.on_response_headers(true), Verdict::Continue);
}

#[test]
fn sandbox_keeps_only_safe_libraries() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local names = {}
          for _, n in ipairs({"io", "debug", "dofile", "loadfile", "require", "package", "os.execute",
                              "os.exit", "os.remove", "os.getenv", "os.time", "os.clock", "os.date",
                              "os.difftime", "string.format", "table.concat", "math.floor", "utf8.char",
                              "coroutine.wrap", "load", "pcall"}) do
            local v = _G
            for part in n:gmatch("[^.]+") do v = v and v[part] end
            names[#names + 1] = n .. "=" .. type(v)
          end
          h:logInfo(table.concat(names, " "))
          local f, err = load("\27Lua", "bin", "b")
          h:logInfo(tostring(f) .. " " .. err)
          h:logInfo(load("return 1 + 1")() .. " " .. math.type(os.time()))
          local env_f = load("return x", "chunk", "t", {x = 42})
          h:logInfo(tostring(env_f()))
        end
        "#,
    );
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    assert_eq!(
        info_logs(&p),
        vec![
            "script log: io=table debug=nil dofile=nil loadfile=nil require=function package=table os.execute=nil \
             os.exit=nil os.remove=nil os.getenv=function os.time=function os.clock=function os.date=function os.difftime=function \
             string.format=function table.concat=function math.floor=function utf8.char=function \
             coroutine.wrap=function load=function pcall=function",
            "script log: nil attempt to load a b chunk (only text chunks are allowed)",
            "script log: 2 integer",
            "script log: 42",
        ]
    );
}

#[test]
fn config_rejections_name_the_chunk_and_line() {
    let err = |json: serde_json::Value| Plugin::new(&json.to_string()).err().unwrap_or_default();
    assert_eq!(
        err(serde_json::json!({"inline_code": "function envoy_on_request(h)\n  x = = 1\nend"})),
        "script load error: inline_code:2: unexpected symbol near '='"
    );
    assert_eq!(
        err(serde_json::json!({"default_source_code": {"inline_string": "\n\nerror('at load')"}})),
        "script load error: default_source_code:3: at load"
    );
    assert_eq!(
        err(serde_json::json!({"inline_code": "envoy_on_request = 5"})),
        "script load error: inline_code: global 'envoy_on_request' must be a function, got number"
    );
    assert_eq!(
        err(serde_json::json!({"inline_code": "coroutine.yield()"})),
        "script load error: attempt to yield from outside a coroutine"
    );
}

#[test]
fn each_configuration_has_its_own_lua_state() {
    let a = Plugin::with_script("name = 'a' function envoy_on_request(h) h:headers():add('x-name', name) end");
    let b = Plugin::with_script("function envoy_on_request(h) h:headers():add('x-name', tostring(name)) end");
    a.request(GET);
    b.request(GET);
    assert!(a.host.get(MapType::RequestHeaders).contains(&("x-name".into(), "a".into())));
    assert!(b.host.get(MapType::RequestHeaders).contains(&("x-name".into(), "nil".into())));
}

#[test]
fn response_hook_may_edit_the_reply_of_respond() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h) h:respond({[":status"] = "403"}, "no") end
        function envoy_on_response(h) h:headers():add("x-seen", h:headers():get(":status")) end
        "#,
    );
    let (mut s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Pause);
    p.host.set(MapType::ResponseHeaders, &[(":status", "403")]);
    assert_eq!(s.on_response_headers(true), Verdict::Continue, "{}", p.host.all_logs());
    assert_eq!(
        p.host.get(MapType::ResponseHeaders),
        vec![(":status".into(), "403".into()), ("x-seen".into(), "403".into())]
    );
    assert!(p.host.logs_at(LogLevel::Error).is_empty());
}

#[test]
fn plain_userdata_objects_check_self_and_refuse_the_api_markers() {
    // The handle and header maps are plain userdata (src/api/object.rs); a
    // script can get the API's yield marker (a light userdata) by calling a
    // blocking method in its own coroutine. Passed as `self`, it must be refused
    // like any bad self, never read as an object.
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local hd = h:headers()
          local co = coroutine.create(function() return h:body() end)
          local _, marker = coroutine.resume(co)
          local function try(f, ...)
            local ok, e = pcall(f, ...)
            h:logInfo(tostring(ok) .. " " .. tostring(e))
          end
          try(hd.get, marker, "x")
          try(hd.getNumValues, marker, "x")
          try(h.headers, marker)
          try(h.streamInfo, marker)
          try(h.headers, hd)
          try(hd.add, h, "x", "1")
          try(function() for _ in pairs(h) do end end)
          h:logInfo(type(h) .. " " .. type(hd) .. " " .. tostring(getmetatable(h)) .. " "
            .. tostring(h):match("^%a+") .. " " .. tostring(hd):match("^%a+") .. " " .. tostring(h:headers() == hd))
        end
        "#,
    );
    let (_s, _) = p.request_with_body(GET);
    let logs: Vec<String> = info_logs(&p).iter().map(|l| l.trim_start_matches("script log: ").to_string()).collect();
    // pcall calls the method directly, so the error has no script position.
    let long = |m: &str| format!("false calling '{m}' on bad self (use ':' to call methods, e.g. handle:{m}())");
    let expected = [
        long("get"),
        long("getNumValues"),
        long("headers"),
        long("streamInfo"),
        "false calling 'headers' on bad self".into(),
        "false calling 'add' on bad self".into(),
        "false inline_code:16: bad argument #1 to 'for iterator' (table expected, got Handle)".into(),
        "userdata userdata false Handle HeaderMap true".into(),
    ];
    assert_eq!(logs, expected, "{}", p.host.all_logs());
}
