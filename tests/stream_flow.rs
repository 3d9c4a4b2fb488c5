//! The blocking API (body, bodyChunks, trailers, httpCall, respond) against a fake
//! host: which callbacks pause, what reaches the host, what the script sees.
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used)]
mod fake_host;

use fake_host::{Plugin, GET};
use proxy_wasm_lua::host::{BufferType, HttpCallError, LogLevel, MapType, StreamType};
use proxy_wasm_lua::stream::Verdict;

const POST: &[(&str, &str)] =
    &[(":method", "POST"), (":path", "/p"), (":authority", "example.com"), ("content-length", "10")];

fn plugin(script: &str, hold: bool) -> Plugin {
    let json = serde_json::json!({ "inline_code": script, "allow_on_headers_stop_iteration": hold }).to_string();
    Plugin::new(&json).unwrap_or_else(|e| panic!("config rejected: {e}"))
}

fn infos(p: &Plugin) -> Vec<String> {
    p.host.logs_at(LogLevel::Info)
}

const BODY_SCRIPT: &str = r#"
function envoy_on_request(h)
  local hd = h:headers()
  local b = h:body()
  h:logInfo("len " .. b:length() .. " " .. b:getBytes(0, b:length()))
  hd:add("x-len", b:length())
  b:setBytes("new body")
end
"#;

#[test]
fn body_holds_headers_when_the_host_allows_stop_iteration() {
    let p = plugin(BODY_SCRIPT, true);
    let (mut s, v) = p.request_with_body(POST);
    assert_eq!(v, Verdict::Pause, "{}", p.host.all_logs());
    assert_eq!(p.request_data(&mut s, b"hello", false, false), Verdict::Pause);
    assert_eq!(p.request_data(&mut s, b"world", true, true), Verdict::Continue, "{}", p.host.all_logs());
    assert_eq!(infos(&p), vec!["script log: len 10 helloworld"]);
    // The header object from before the yield still works; setBytes updated content-length.
    assert_eq!(p.host.header(MapType::RequestHeaders, "x-len").as_deref(), Some("10"));
    assert_eq!(p.host.header(MapType::RequestHeaders, "content-length").as_deref(), Some("8"));
    assert_eq!(p.host.buffer_bytes(BufferType::RequestBody), b"new body");
    assert!(p.host.replies.borrow().is_empty());
}

#[test]
fn body_without_stop_iteration_forwards_headers_first_and_says_why_edits_fail() {
    let p = plugin(BODY_SCRIPT, false);
    let (mut s, v) = p.request_with_body(POST);
    assert_eq!(v, Verdict::Continue, "headers must go on so the host delivers the body");
    assert_eq!(p.request_data(&mut s, b"hello", false, false), Verdict::Pause);
    assert_eq!(p.request_data(&mut s, b"world", true, true), Verdict::Pause, "fail closed");
    let errors = p.host.logs_at(LogLevel::Error).join("\n");
    assert!(
        errors.contains(
            "inline_code:6: header map can no longer be modified: the request headers were already forwarded"
        ),
        "{errors}"
    );
    assert_eq!(p.host.replies.borrow()[0].status, 500);
}

#[test]
fn body_length_change_after_headers_left_with_content_length_is_refused() {
    let p = plugin(
        r#"function envoy_on_request(h)
             local b = h:body()
             local ok, err = pcall(b.setBytes, b, "longer than ten bytes")
             h:logInfo(tostring(err))
             b:setBytes("0123456789")
           end"#,
        false,
    );
    let (mut s, _) = p.request_with_body(POST);
    p.request_data(&mut s, b"abcdefghij", true, false);
    let logs = infos(&p);
    assert!(logs[0].contains("cannot change the request body length from 10 to 21"), "{logs:?}");
    assert_eq!(p.host.buffer_bytes(BufferType::RequestBody), b"0123456789");
}

#[test]
fn body_of_a_headers_only_message_is_nil_or_an_empty_wrapper() {
    let p = plugin(
        r#"function envoy_on_request(h)
             h:logInfo(tostring(h:body()))
             h:logInfo(tostring(h:body(true):length()))
             local ok, err = pcall(h.body, h, "yes")
             h:logInfo(err)
           end"#,
        false,
    );
    let (_s, v) = p.request(GET);
    assert_eq!(v, Verdict::Continue);
    let logs = infos(&p);
    assert_eq!(logs[0..2], ["script log: nil".to_string(), "script log: 0".to_string()]);
    assert!(logs[2].ends_with("bad argument #1 to 'body' (boolean expected, got string)"), "{logs:?}");
}

#[test]
fn body_true_on_a_bodyless_response_replaces_it_with_a_local_reply() {
    let p = plugin(r#"function envoy_on_response(h) h:body(true):setBytes("added") end"#, false);
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "404"), ("x-a", "1"), ("content-length", "0")]);
    assert_eq!(s.on_response_headers(true), Verdict::Pause, "{}", p.host.all_logs());
    let reply = p.host.replies.borrow()[0].clone();
    assert_eq!((reply.status, reply.body.as_slice()), (404, &b"added"[..]));
    assert_eq!(reply.headers, vec![("x-a".to_string(), b"1".to_vec())]);
    // The reply's own headers pass through untouched.
    assert_eq!(s.on_response_headers(false), Verdict::Continue);
    assert_eq!(p.response_data(&mut s, b"added", true, false), Verdict::Continue);
}

#[test]
fn body_chunks_stream_each_frame_and_can_rewrite_it() {
    let p = plugin(
        r#"function envoy_on_response(h)
             h:headers():remove("content-length")
             for chunk in h:bodyChunks() do
               h:logInfo("chunk " .. chunk:length())
               chunk:setBytes(chunk:getBytes(0, chunk:length()):upper())
             end
             h:logInfo("done")
           end"#,
        false,
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "200"), ("content-length", "6")]);
    assert_eq!(s.on_response_headers(false), Verdict::Continue);
    assert_eq!(p.response_data(&mut s, b"abc", false, false), Verdict::Continue);
    assert_eq!(p.host.buffer_bytes(BufferType::ResponseBody), b"ABC");
    assert_eq!(p.response_data(&mut s, b"def", true, false), Verdict::Continue);
    assert_eq!(p.host.buffer_bytes(BufferType::ResponseBody), b"DEF");
    assert_eq!(infos(&p), vec!["script log: chunk 3", "script log: chunk 3", "script log: done"]);
}

#[test]
fn a_chunk_kept_past_its_iteration_fails_clearly() {
    let p = plugin(
        r#"function envoy_on_request(h)
             local first
             for chunk in h:bodyChunks() do
               if first then
                 local ok, err = pcall(first.length, first)
                 h:logInfo(err)
               end
               first = first or chunk
             end
           end"#,
        false,
    );
    let (mut s, _) = p.request_with_body(POST);
    p.request_data(&mut s, b"abc", false, false);
    p.request_data(&mut s, b"def", true, false);
    assert!(infos(&p)[0].contains("body chunk is no longer available"), "{:?}", infos(&p));
}

#[test]
fn body_chunks_after_body_data_and_body_after_streaming_are_errors() {
    let p = plugin(
        r#"function envoy_on_request(h)
             for c in h:bodyChunks() do
               local ok, err = pcall(h.body, h)
               h:logInfo(err)
             end
           end"#,
        false,
    );
    let (mut s, _) = p.request_with_body(POST);
    p.request_data(&mut s, b"abc", true, false);
    assert!(infos(&p)[0].ends_with("cannot call body() after body streaming has started"), "{:?}", infos(&p));
}

#[test]
fn trailers_wait_while_data_passes_and_are_editable() {
    let p = plugin(
        r#"function envoy_on_request(h)
             local t = h:trailers()
             h:logInfo("grpc " .. tostring(t:get("x-t")))
             t:add("x-added", "1")
           end"#,
        false,
    );
    let (mut s, v) = p.request_with_body(POST);
    assert_eq!(v, Verdict::Continue);
    assert_eq!(p.request_data(&mut s, b"abc", false, false), Verdict::Continue);
    p.host.set(MapType::RequestTrailers, &[("x-t", "v")]);
    assert_eq!(s.on_request_trailers(), Verdict::Continue);
    assert_eq!(infos(&p), vec!["script log: grpc v"]);
    assert_eq!(p.host.header(MapType::RequestTrailers, "x-added").as_deref(), Some("1"));
}

#[test]
fn trailers_are_nil_when_the_message_ends_without() {
    let p = plugin(r#"function envoy_on_request(h) h:logInfo(tostring(h:trailers())) end"#, false);
    let (mut s, _) = p.request_with_body(POST);
    assert_eq!(p.request_data(&mut s, b"abc", true, false), Verdict::Continue);
    assert_eq!(infos(&p), vec!["script log: nil"]);
}

const CALL_SCRIPT: &str = r#"
function envoy_on_request(h)
  local hd = h:headers()
  local headers, body = h:httpCall("authz", {[":method"] = "POST", [":path"] = "/check",
      [":authority"] = "authz", ["x-multi"] = {"a", "b"}}, "payload", 250)
  h:logInfo(headers[":status"] .. " " .. tostring(body) .. " " .. tostring(headers["x-dup"]))
  hd:add("x-authz", headers[":status"])
end
"#;

#[test]
fn sync_http_call_pauses_then_resumes_the_stream() {
    let p = plugin(CALL_SCRIPT, false);
    p.host.properties.borrow_mut().insert("source.address".into(), b"10.1.2.3:4567".to_vec());
    let (mut s, v) = p.request(GET);
    assert_eq!(v, Verdict::Pause);
    let call = p.host.calls.borrow()[0].clone();
    assert_eq!((call.cluster.as_str(), call.timeout_ms, call.body.as_deref()), ("authz", 250, Some(&b"payload"[..])));
    let find = |n: &str| call.headers.iter().filter(|(k, _)| k == n).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert_eq!(find("x-multi"), vec!["a", "b"]);
    assert_eq!(find("content-length"), vec!["7"]);
    assert_eq!(find("x-forwarded-for"), vec!["10.1.2.3"]);

    p.host.set(MapType::HttpCallResponseHeaders, &[(":status", "200"), ("x-dup", "1"), ("x-dup", "2")]);
    p.host.set_buffer_bytes(BufferType::HttpCallResponseBody, b"ok");
    s.on_http_call_response(1, 3, 2);
    assert_eq!(infos(&p), vec!["script log: 200 ok 2"], "{}", p.host.all_logs());
    assert_eq!(p.host.header(MapType::RequestHeaders, "x-authz").as_deref(), Some("200"));
    assert_eq!(*p.host.continued.borrow(), vec![StreamType::Request]);
}

#[test]
fn http_call_options_table_and_duplicate_headers() {
    let p = plugin(
        r#"function envoy_on_request(h)
             local headers, body = h:httpCall("c", {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"},
                 nil, {timeout_ms = 0, return_duplicate_headers = true, send_xff = false})
             h:logInfo(type(headers["x-dup"]) .. " " .. headers["x-dup"][2] .. " " .. tostring(body))
           end"#,
        false,
    );
    p.host.properties.borrow_mut().insert("source.address".into(), b"10.1.2.3:4567".to_vec());
    let (mut s, _) = p.request(GET);
    let call = p.host.calls.borrow()[0].clone();
    assert!(call.headers.iter().all(|(k, _)| k != "x-forwarded-for" && k != "content-length"), "{call:?}");
    assert_eq!(call.body, None);
    p.host.set(MapType::HttpCallResponseHeaders, &[(":status", "200"), ("x-dup", "1"), ("x-dup", "2")]);
    p.host.set_buffer_bytes(BufferType::HttpCallResponseBody, b"");
    s.on_http_call_response(1, 3, 0);
    assert_eq!(infos(&p), vec!["script log: table 2 nil"], "{}", p.host.all_logs());
}

#[test]
fn http_call_failures_and_argument_errors() {
    let p = plugin(
        r#"function envoy_on_request(h)
             local hs = {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"}
             local function try(...)
               local ok, a, b = pcall(h.httpCall, h, ...)
               h:logInfo(tostring(ok) .. " " .. (type(a) == "table" and (a[":status"] .. " " .. b) or tostring(a)))
             end
             try("c", hs, nil, 100)
             try("c", {[":method"] = "GET"}, nil, 100)
             try("c", hs, nil, -1)
             try("c", hs, nil, 100, "yes")
             try("c", hs, nil, {bogus = true})
             try("c", hs, nil)
             try(5, hs, nil, 1)
           end"#,
        false,
    );
    *p.host.call_error.borrow_mut() = Some(HttpCallError::Failed);
    let (_s, v) = p.request(GET);
    assert_eq!(v, Verdict::Continue, "{}", p.host.all_logs());
    let logs = infos(&p);
    assert_eq!(logs[0], "script log: true 503 upstream failure");
    assert!(logs[1].ends_with("http call headers must include ':path', ':method', and ':authority'"), "{logs:?}");
    assert!(logs[2].ends_with("http call timeout must be >= 0"), "{logs:?}");
    assert!(logs[3].ends_with("http call asynchronous flag must be 'true', 'false', or empty"), "{logs:?}");
    assert!(logs[4].ends_with("\"bogus\" is not valid key for httpCall() options"), "{logs:?}");
    assert!(logs[5].ends_with("bad argument #4 to 'httpCall' (number expected, got no value)"), "{logs:?}");
    assert!(logs[6].ends_with("bad argument #1 to 'httpCall' (string expected, got number)"), "{logs:?}");

    *p.host.call_error.borrow_mut() = Some(HttpCallError::BadArgument);
    let p2 = plugin(
        r#"function envoy_on_request(h)
             h:httpCall("nope", {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"}, nil, 1)
           end"#,
        true,
    );
    *p2.host.call_error.borrow_mut() = Some(HttpCallError::BadArgument);
    p2.request(GET);
    assert!(
        p2.host.logs_at(LogLevel::Error)[0].ends_with("inline_code:2: http call cluster invalid. Must be configured")
    );
}

#[test]
fn async_http_call_returns_nothing_and_does_not_pause() {
    let p = plugin(
        r##"function envoy_on_request(h)
             h:logInfo(select("#", h:httpCall("c", {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"},
                 "x", 0, true)))
           end"##,
        false,
    );
    let (mut s, v) = p.request(GET);
    assert_eq!(v, Verdict::Continue);
    assert_eq!(infos(&p), vec!["script log: 0"]);
    // Its answer, if delivered, is ignored.
    s.on_http_call_response(1, 0, 0);
    assert!(p.host.continued.borrow().is_empty());
}

#[test]
fn failed_http_call_resumes_with_503() {
    let p = plugin(CALL_SCRIPT, false);
    let (mut s, _) = p.request(GET);
    s.on_http_call_response(1, 0, 0);
    assert_eq!(infos(&p), vec!["script log: 503 upstream failure nil"]);
}

#[test]
fn respond_on_the_response_path_replaces_the_response() {
    let p = plugin(
        r#"function envoy_on_response(h)
             if h:headers():get(":status") == "404" then
               h:respond({[":status"] = "200", ["x-r"] = "1"}, "replaced")
             end
           end"#,
        false,
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "404")]);
    assert_eq!(s.on_response_headers(false), Verdict::Pause);
    assert_eq!(p.host.replies.borrow()[0].body, b"replaced");
    assert_eq!(p.response_data(&mut s, b"upstream", true, false), Verdict::Pause, "upstream body dropped");
    // The reply itself passes through without running the hook again.
    p.host.set(MapType::ResponseHeaders, &[(":status", "200")]);
    assert_eq!(s.on_response_headers(false), Verdict::Continue);
    assert_eq!(p.response_data(&mut s, b"replaced", true, false), Verdict::Continue);
    assert_eq!(p.host.replies.borrow().len(), 1);
}

#[test]
fn error_after_response_headers_left_resets_the_stream() {
    let p = plugin(
        r#"function envoy_on_response(h)
             for c in h:bodyChunks() do error("boom") end
           end"#,
        false,
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "200")]);
    assert_eq!(s.on_response_headers(false), Verdict::Continue);
    assert_eq!(p.response_data(&mut s, b"abc", false, false), Verdict::Pause);
    assert_eq!(*p.host.closed.borrow(), vec![StreamType::Response]);
    assert!(p.host.replies.borrow().is_empty());
    assert!(p.host.logs_at(LogLevel::Error)[0].contains("inline_code:2: boom"));
}

#[test]
fn base64_and_timestamps() {
    let p = plugin(
        r#"function envoy_on_request(h)
             h:logInfo(h:base64Escape("foobar") .. " " .. h:base64Decode("Zm9vYmFy") .. " " .. tostring(h:base64Decode("!!")))
             h:logInfo(tostring(h:timestamp()) .. " " .. h:timestampString(EnvoyTimestampResolution.MICROSECOND))
             h:logInfo(tostring(h:timestamp(EnvoyTimestampResolution.MILLISECOND)) .. " " .. h:timestampString())
             local ok, err = pcall(h.timestamp, h, EnvoyTimestampResolution.MICROSECOND)
             h:logInfo(err)
             ok, err = pcall(h.timestampString, h, 7)
             h:logInfo(err)
           end"#,
        false,
    );
    p.host.now.set(1_583_879_145_572_123_456);
    p.request(GET);
    let logs = infos(&p);
    assert_eq!(logs[0], "script log: Zm9vYmFy foobar nil");
    assert_eq!(logs[1], "script log: 1583879145572 1583879145572123");
    assert_eq!(logs[2], "script log: 1583879145572 1583879145572");
    assert!(logs[3].ends_with("timestamp format must be MILLISECOND."));
    assert!(logs[4].ends_with("timestamp format must be MILLISECOND or MICROSECOND."));
}

#[test]
fn downstream_request_headers_are_read_only() {
    let p = plugin(
        r#"function envoy_on_response(h)
             local r = h:downstreamRequestHeaders()
             h:logInfo(r:get(":path"))
             local ok, err = pcall(r.add, r, "x", "y")
             h:logInfo(err)
           end"#,
        false,
    );
    let (mut s, _) = p.request(GET);
    p.host.set(MapType::ResponseHeaders, &[(":status", "200")]);
    s.on_response_headers(true);
    let logs = infos(&p);
    assert_eq!(logs[0], "script log: /p");
    assert!(logs[1].ends_with("read-only"), "{logs:?}");
}
