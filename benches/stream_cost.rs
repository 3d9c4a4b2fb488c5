//! Per-request cost of the Lua API, native, through the fake host: how many host
//! calls each script of scripts/bench.py makes per request and, under callgrind,
//! how many instructions. Host calls cross the Wasm boundary in Envoy, so their
//! count matters as much as the instructions.
//!
//!   cargo bench --bench stream_cost -- [script] [requests]
//!
//! Instructions per request: the difference of two callgrind runs (which cancels
//! the set-up), e.g. for `header`:
//!   valgrind --tool=callgrind target/release/deps/stream_cost-<hash> header 2000
//!   valgrind --tool=callgrind target/release/deps/stream_cost-<hash> header 12000
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/fake_host/mod.rs"]
mod fake_host;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use fake_host::FakeHost;
use proxy_wasm_lua::config::Config;
use proxy_wasm_lua::host::{
    BufferType, HeaderPair, Host, HostResult, HttpCallError, LocalReply, LogLevel, MapType, MetricType, StreamType,
};
use proxy_wasm_lua::scripts::{Choice, Scripts};

/// The scripts of scripts/bench.py.
const SCRIPTS: &[(&str, &str)] = &[
    ("noop", "function envoy_on_request(h) end"),
    (
        "header",
        "function envoy_on_request(h) h:headers():add(\"x-bench\", \"1\") end\n\
         function envoy_on_response(h) h:headers():add(\"x-bench-response\", \"1\") end",
    ),
    ("body", "function envoy_on_request(h) local b = h:body() h:headers():add(\"x-body-length\", b:length()) end"),
    (
        "httpcall",
        "function envoy_on_request(h)\n\
           local rh = h:httpCall(\"callout\", {[\":method\"] = \"GET\", [\":path\"] = \"/callout\", [\":authority\"] = \"callout\"}, nil, 5000)\n\
           h:headers():add(\"x-call-status\", rh[\":status\"])\n\
         end",
    ),
];

/// The fake host, counting the calls made through it.
struct Counting {
    inner: FakeHost,
    counts: RefCell<BTreeMap<&'static str, u64>>,
}

impl Counting {
    fn count(&self, name: &'static str) {
        *self.counts.borrow_mut().entry(name).or_default() += 1;
    }
}

impl Host for Counting {
    fn log(&self, level: LogLevel, message: &str) {
        self.count("log");
        self.inner.log(level, message)
    }
    fn header_pairs(&self, map: MapType) -> HostResult<Vec<HeaderPair>> {
        self.count("get_header_map_pairs");
        self.inner.header_pairs(map)
    }
    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
        self.count("add_header_map_value");
        self.inner.add_header(map, name, value)
    }
    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
        self.count("replace_header_map_value");
        self.inner.replace_header(map, name, value)
    }
    fn remove_header(&self, map: MapType, name: &str) -> HostResult<()> {
        self.count("remove_header_map_value");
        self.inner.remove_header(map, name)
    }
    fn send_local_reply(&self, reply: &LocalReply) -> HostResult<()> {
        self.count("send_local_response");
        self.inner.send_local_reply(reply)
    }
    fn buffer(&self, buffer: BufferType, start: usize, len: usize) -> HostResult<Vec<u8>> {
        self.count("get_buffer_bytes");
        self.inner.buffer(buffer, start, len)
    }
    fn set_buffer(&self, buffer: BufferType, start: usize, len: usize, data: &[u8]) -> HostResult<()> {
        self.count("set_buffer_bytes");
        self.inner.set_buffer(buffer, start, len, data)
    }
    fn continue_stream(&self, stream: StreamType) -> HostResult<()> {
        self.count("continue_stream");
        self.inner.continue_stream(stream)
    }
    fn close_stream(&self, stream: StreamType) -> HostResult<()> {
        self.count("close_stream");
        self.inner.close_stream(stream)
    }
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u32,
    ) -> Result<u32, HttpCallError> {
        self.count("http_call");
        self.inner.http_call(cluster, headers, body, timeout_ms)
    }
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        self.count("get_property");
        self.inner.property(path)
    }
    fn now_nanos(&self) -> u64 {
        self.count("get_current_time_nanoseconds");
        self.inner.now_nanos()
    }
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
        self.count("call_foreign_function");
        self.inner.call_foreign_function(name, args)
    }
    fn define_metric(&self, kind: MetricType, name: &str) -> HostResult<u32> {
        self.count("define_metric");
        self.inner.define_metric(kind, name)
    }
    fn increment_metric(&self, id: u32, offset: i64) -> HostResult<()> {
        self.count("increment_metric");
        self.inner.increment_metric(id, offset)
    }
    fn record_metric(&self, id: u32, value: u64) -> HostResult<()> {
        self.count("record_metric");
        self.inner.record_metric(id, value)
    }
    fn get_metric(&self, id: u32) -> HostResult<u64> {
        self.count("get_metric");
        self.inner.get_metric(id)
    }
    fn get_shared_data(&self, key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
        self.count("get_shared_data");
        self.inner.get_shared_data(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        self.count("set_shared_data");
        self.inner.set_shared_data(key, value, cas)
    }
}

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/"),
    (":authority", "127.0.0.1"),
    (":scheme", "http"),
    ("user-agent", "wrk"),
    ("x-forwarded-proto", "http"),
    ("x-request-id", "0b7c8a52-4bd6-4d48-9d1f-4c2cf4b3b0d5"),
];
const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-length", "2"), ("content-type", "text/plain")];

/// One request and response through the plugin, as Envoy's callbacks deliver them.
fn one_request(host: &Counting, scripts: &Scripts, script: &str) {
    let body = script == "body";
    host.inner.set(MapType::RequestHeaders, REQUEST);
    let Ok(Choice::Run(runtime, context)) = scripts.choose(host) else { panic!("no script") };
    let mut stream = proxy_wasm_lua::stream::Stream::with_filter_context(runtime, context);
    stream.on_request_headers(!body);
    if body {
        host.inner.set_buffer_bytes(BufferType::RequestBody, &[b'x'; 4096]);
        stream.on_request_body(4096, true);
    }
    if script == "httpcall" {
        host.inner.set(MapType::HttpCallResponseHeaders, RESPONSE);
        host.inner.set_buffer_bytes(BufferType::HttpCallResponseBody, b"ok");
        stream.on_http_call_response(1, RESPONSE.len(), 2);
    }
    host.inner.set(MapType::ResponseHeaders, RESPONSE);
    stream.on_response_headers(false);
    host.inner.set_buffer_bytes(BufferType::ResponseBody, b"ok");
    stream.on_response_body(2, true);
    drop(stream);
    scripts.stream_done(host, 0);
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let only = args.next();
    let requests: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    for (name, script) in SCRIPTS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let host = Rc::new(Counting { inner: FakeHost::default(), counts: RefCell::new(BTreeMap::new()) });
        let config = serde_json::json!({ "inline_code": script, "allow_on_headers_stop_iteration": true }).to_string();
        let scripts = Scripts::new(Config::parse(config.as_bytes()).unwrap(), host.clone()).unwrap();
        // Warm up, then count.
        one_request(&host, &scripts, name);
        host.counts.borrow_mut().clear();
        let started = std::time::Instant::now();
        for _ in 0..requests {
            one_request(&host, &scripts, name);
            host.inner.logs.borrow_mut().clear();
            host.inner.calls.borrow_mut().clear();
            host.inner.continued.borrow_mut().clear();
        }
        let per = started.elapsed().as_nanos() as f64 / requests as f64 / 1000.0;
        let counts = host.counts.borrow();
        let calls: u64 = counts.values().sum();
        let detail: Vec<String> =
            counts.iter().map(|(k, v)| format!("{k} {:.2}", *v as f64 / requests as f64)).collect();
        println!(
            "{name:9} {per:7.2} us/request (native)  host calls/request {:.2}: {}",
            calls as f64 / requests as f64,
            detail.join(", ")
        );
    }
}
