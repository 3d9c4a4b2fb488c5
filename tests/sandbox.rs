//! Native tests of the sandbox: instruction budget, memory limit, and scripts
//! that misbehave in every way a Lua script can, each followed by a good request.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod fake_host;

use fake_host::{Plugin, GET};
use proxy_wasm_lua::host::LogLevel;
use proxy_wasm_lua::stream::Verdict;

/// Runs `body` as the request hook when the request has `x-bad`, and checks the
/// request fails closed with `expected` (alternatives separated by " | ") in the
/// log and a good request follows.
fn misbehaves(body: &str, expected: &str, config: serde_json::Value) {
    let script = format!(
        r#"
        function envoy_on_request(h)
          if h:headers():get("x-bad") then
            {body}
          end
          h:headers():add("x-good", "yes")
        end
        "#
    );
    let mut cfg = config;
    cfg["inline_code"] = serde_json::Value::String(script);
    let p = Plugin::new(&cfg.to_string()).unwrap();
    let mut bad = GET.to_vec();
    bad.push(("x-bad", "1"));
    let (_s, verdict) = p.request(&bad);
    assert_eq!(verdict, Verdict::Pause, "{}", p.host.all_logs());
    let errors = p.host.logs_at(LogLevel::Error).join("\n");
    assert!(expected.split(" | ").any(|e| errors.contains(e)), "expected {expected:?} in:\n{errors}");
    assert_eq!(p.host.replies.borrow().last().map(|r| r.status), Some(500));
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    assert_eq!(p.host.header(proxy_wasm_lua::host::MapType::RequestHeaders, "x-good").as_deref(), Some("yes"));
}

fn none() -> serde_json::Value {
    serde_json::json!({})
}

const BUDGET: &str =
    "instruction budget exceeded: more than 10000000 Lua instructions in one callback (instruction_budget)";

#[test]
fn an_endless_loop_is_stopped_by_the_instruction_budget() {
    misbehaves("while true do end", &format!("inline_code:4: {BUDGET}"), none());
}

#[test]
fn pcall_cannot_swallow_the_budget_error() {
    misbehaves("while true do pcall(function() while true do end end) end", BUDGET, none());
    misbehaves(
        "while true do xpcall(function() while true do end end, debug and debug.traceback or print) end",
        BUDGET,
        none(),
    );
    misbehaves(
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        BUDGET,
        none(),
    );
    misbehaves("coroutine.wrap(function() while true do end end)()", BUDGET, none());
    misbehaves("table.sort({3, 2, 1, 5, 4}, function(a, b) while true do end end)", BUDGET, none());
}

#[test]
fn the_budget_is_per_callback_and_configurable() {
    // 2000 iterations of a short loop fit in a 100k budget; 200k do not.
    misbehaves(
        "for i = 1, 200000 do local x = i * 2 end",
        "more than 100000 Lua instructions",
        serde_json::json!({"instruction_budget": 100000}),
    );
    let p = Plugin::new(
        &serde_json::json!({"instruction_budget": 100000, "inline_code":
            "function envoy_on_request(h) for i = 1, 2000 do local x = i * 2 end end"})
        .to_string(),
    )
    .unwrap();
    for _ in 0..100 {
        assert_eq!(p.request(GET).1, Verdict::Continue, "{}", p.host.all_logs());
    }
}

#[test]
fn an_endless_loop_at_load_time_rejects_the_configuration() {
    let err = Plugin::new(&serde_json::json!({"inline_code": "local n = 0\nwhile true do n = n + 1 end"}).to_string())
        .err()
        .unwrap();
    assert!(err.contains("script load error: inline_code:2: instruction budget exceeded"), "{err}");
    let err =
        Plugin::new(&serde_json::json!({"inline_code": "x = 1", "instruction_budget": 5}).to_string()).err().unwrap();
    assert!(err.contains("`instruction_budget` 5 is below the minimum of 10000 (0 = unlimited)"), "{err}");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit_and_the_memory_comes_back() {
    let body = r#"local t = {} while true do t[#t + 1] = string.rep("x", 4096) .. #t end"#;
    misbehaves(body, "not enough memory", serde_json::json!({"memory_limit_bytes": 8 << 20}));
    // The failed run's garbage is collected at once.
    let script = format!("function envoy_on_request(h) {body} end");
    let p =
        Plugin::new(&serde_json::json!({"memory_limit_bytes": 8 << 20, "inline_code": script}).to_string()).unwrap();
    let before = p.runtime.lua().used_memory();
    assert_eq!(p.request(GET).1, Verdict::Pause);
    let after = p.runtime.lua().used_memory();
    assert!(after < before + (256 << 10), "used {before} bytes before, {after} after the failure");
    misbehaves(r#"local s = string.rep("x", 1 << 40)"#, "not enough memory | resulting string too large", none());
}

#[test]
fn runaway_recursion_and_bad_errors_are_plain_lua_errors() {
    // Lua's stack limit or the memory limit, whichever comes first.
    misbehaves("local function f() return 1 + f() end f()", "stack overflow | not enough memory", none());
    misbehaves(
        "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) local x = t.x",
        "stack overflow",
        none(),
    );
    misbehaves("error({code = 1})", "script error in envoy_on_request: table: 0x", none());
    misbehaves("error()", "nil", none());
    misbehaves(
        "local t = setmetatable({}, {__add = function() error('boom in add') end}) local x = t + 1",
        "boom in add",
        none(),
    );
    misbehaves(
        r#"local x = string.find(string.rep("a", 20), string.rep("(", 40) .. "a" .. string.rep(")", 40))"#,
        "too many captures",
        none(),
    );
    misbehaves(r#"string.find("a", "%")"#, "malformed pattern", none());
    misbehaves("coroutine.yield()", "script performed an unexpected yield", none());
}

#[test]
fn coroutines_reused_across_requests_keep_the_budget_and_start_clean() {
    // Finished request coroutines are reset and reused: a runaway request on a
    // reused one is still stopped, and the next request runs normally.
    let p = Plugin::new(
        &serde_json::json!({"instruction_budget": 100000, "inline_code": r#"
            local runs = 0
            function envoy_on_request(h, extra)
              runs = runs + 1
              if h:headers():get("x-bad") then while true do end end
              h:headers():add("x-run", tostring(runs) .. ":" .. tostring(extra))
            end"#})
        .to_string(),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(p.request(GET).1, Verdict::Continue, "{}", p.host.all_logs());
    }
    let mut bad = GET.to_vec();
    bad.push(("x-bad", "1"));
    assert_eq!(p.request(&bad).1, Verdict::Pause);
    assert!(p.host.logs_at(LogLevel::Error).join("\n").contains("more than 100000 Lua instructions"));
    assert_eq!(p.request(GET).1, Verdict::Continue, "{}", p.host.all_logs());
    // The hook got exactly its handle each time: no stale arguments on a reused coroutine.
    assert_eq!(p.host.header(proxy_wasm_lua::host::MapType::RequestHeaders, "x-run").as_deref(), Some("5:nil"));
}
