//! An in-memory host for native tests: header maps with Envoy's semantics
//! (lower-case names, replace = remove all + append), recorded logs and replies.
// Test-only code: panicking on a broken fixture is the right failure here.
#![allow(dead_code, clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm_lua::config::Config;
use proxy_wasm_lua::host::{
    BufferType, HeaderPair, Host, HostError, HostResult, HttpCallError, LocalReply, LogLevel, MapType, MetricType,
    StreamType,
};
use proxy_wasm_lua::runtime::Runtime;
use proxy_wasm_lua::scripts::{Choice, Scripts};
use proxy_wasm_lua::stream::{Stream, Verdict};

/// An HTTP call the plugin started.
#[derive(Clone, Debug)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u32,
}

#[derive(Default)]
pub struct FakeHost {
    /// Header maps by ABI map type (0-3 stream maps, 6 = http call response).
    pub maps: RefCell<[Vec<HeaderPair>; 7]>,
    /// Body buffers by ABI buffer type (0 request, 1 response, 4 call response).
    pub buffers: RefCell<[Vec<u8>; 5]>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub replies: RefCell<Vec<LocalReply>>,
    pub continued: RefCell<Vec<StreamType>>,
    pub closed: RefCell<Vec<StreamType>>,
    pub calls: RefCell<Vec<Call>>,
    /// What the next http_call returns instead of a new token.
    pub call_error: RefCell<Option<HttpCallError>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub now: Cell<u64>,
    /// Makes every header-map call fail with this status.
    pub fail_status: RefCell<Option<u32>>,
    /// Foreign functions the host has: name -> result (Err = status).
    pub foreign: RefCell<HashMap<String, Result<Vec<u8>, u32>>>,
    /// Foreign function calls made: (name, arguments).
    pub foreign_calls: RefCell<Vec<(String, Vec<u8>)>>,
    /// Metrics by id - 1: (type, name, value); histogram samples separately.
    pub metrics: RefCell<Vec<(MetricType, String, i64)>>,
    pub samples: RefCell<Vec<(String, u64)>>,
    /// Shared data: key -> (value, cas).
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl FakeHost {
    pub fn set(&self, map: MapType, pairs: &[(&str, &str)]) {
        self.maps.borrow_mut()[map as usize] =
            pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    }

    pub fn get(&self, map: MapType) -> Vec<(String, String)> {
        self.maps.borrow()[map as usize]
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    pub fn set_buffer_bytes(&self, buffer: BufferType, data: &[u8]) {
        self.buffers.borrow_mut()[buffer as usize] = data.to_vec();
    }

    pub fn buffer_bytes(&self, buffer: BufferType) -> Vec<u8> {
        self.buffers.borrow()[buffer as usize].clone()
    }

    pub fn header(&self, map: MapType, name: &str) -> Option<String> {
        self.get(map).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn logs_at(&self, level: LogLevel) -> Vec<String> {
        self.logs.borrow().iter().filter(|(l, _)| *l == level).map(|(_, m)| m.clone()).collect()
    }

    pub fn all_logs(&self) -> String {
        self.logs.borrow().iter().map(|(l, m)| format!("{l:?}: {m}\n")).collect()
    }

    fn check(&self, call: &'static str) -> HostResult<()> {
        match *self.fail_status.borrow() {
            Some(status) => Err(HostError { call, status }),
            None => Ok(()),
        }
    }
}

impl Host for FakeHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn header_pairs(&self, map: MapType) -> HostResult<Vec<HeaderPair>> {
        self.check("get_header_map_pairs")?;
        Ok(self.maps.borrow()[map as usize].clone())
    }
    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
        self.check("add_header_map_value")?;
        self.maps.borrow_mut()[map as usize].push((name.to_string(), value.to_vec()));
        Ok(())
    }
    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
        self.check("replace_header_map_value")?;
        let mut maps = self.maps.borrow_mut();
        maps[map as usize].retain(|(k, _)| k != name);
        maps[map as usize].push((name.to_string(), value.to_vec()));
        Ok(())
    }
    fn remove_header(&self, map: MapType, name: &str) -> HostResult<()> {
        self.check("remove_header_map_value")?;
        self.maps.borrow_mut()[map as usize].retain(|(k, _)| k != name);
        Ok(())
    }
    fn send_local_reply(&self, reply: &LocalReply) -> HostResult<()> {
        self.replies.borrow_mut().push(reply.clone());
        Ok(())
    }
    fn buffer(&self, buffer: BufferType, start: usize, len: usize) -> HostResult<Vec<u8>> {
        let buffers = self.buffers.borrow();
        let data = &buffers[buffer as usize];
        let start = start.min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }
    // Envoy's rules: start 0 replaces a prefix of `len` bytes, start >= size appends.
    fn set_buffer(&self, buffer: BufferType, start: usize, len: usize, new: &[u8]) -> HostResult<()> {
        let mut buffers = self.buffers.borrow_mut();
        let data = &mut buffers[buffer as usize];
        if start == 0 {
            let len = len.min(data.len());
            data.splice(0..len, new.iter().copied());
        } else if start >= data.len() {
            data.extend_from_slice(new);
        } else {
            return Err(HostError { call: "set_buffer_bytes", status: 2 });
        }
        Ok(())
    }
    fn continue_stream(&self, stream: StreamType) -> HostResult<()> {
        self.continued.borrow_mut().push(stream);
        Ok(())
    }
    fn close_stream(&self, stream: StreamType) -> HostResult<()> {
        self.closed.borrow_mut().push(stream);
        Ok(())
    }
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u32,
    ) -> Result<u32, HttpCallError> {
        if let Some(e) = *self.call_error.borrow() {
            return Err(e);
        }
        let mut calls = self.calls.borrow_mut();
        calls.push(Call {
            cluster: cluster.into(),
            headers: headers.to_vec(),
            body: body.map(<[u8]>::to_vec),
            timeout_ms,
        });
        Ok(calls.len() as u32)
    }
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        Ok(self.properties.borrow().get(&path.join(".")).cloned())
    }
    fn now_nanos(&self) -> u64 {
        self.now.get()
    }
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
        self.foreign_calls.borrow_mut().push((name.into(), args.to_vec()));
        match self.foreign.borrow().get(name) {
            Some(Ok(r)) => Ok(r.clone()),
            Some(Err(status)) => Err(HostError { call: "call_foreign_function", status: *status }),
            None => Err(HostError { call: "call_foreign_function", status: 1 }),
        }
    }
    fn define_metric(&self, kind: MetricType, name: &str) -> HostResult<u32> {
        let mut metrics = self.metrics.borrow_mut();
        if let Some(i) = metrics.iter().position(|(k, n, _)| *k == kind && n == name) {
            return Ok(i as u32 + 1);
        }
        metrics.push((kind, name.into(), 0));
        Ok(metrics.len() as u32)
    }
    fn increment_metric(&self, id: u32, offset: i64) -> HostResult<()> {
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize - 1).ok_or(HostError { call: "increment_metric", status: 1 })?;
        if m.0 == MetricType::Histogram || (m.0 == MetricType::Counter && offset < 0) {
            return Err(HostError { call: "increment_metric", status: 2 });
        }
        m.2 += offset;
        Ok(())
    }
    fn record_metric(&self, id: u32, value: u64) -> HostResult<()> {
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize - 1).ok_or(HostError { call: "record_metric", status: 1 })?;
        match m.0 {
            MetricType::Histogram => self.samples.borrow_mut().push((m.1.clone(), value)),
            _ => m.2 = value as i64,
        }
        Ok(())
    }
    fn get_shared_data(&self, key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
        Ok(self.shared.borrow().get(key).cloned())
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|e| e.1);
        if cas != 0 && current.is_some_and(|c| c != cas) {
            return Err(HostError { call: "set_shared_data", status: 7 });
        }
        let next = current.unwrap_or(0) + 1;
        shared.insert(key.into(), (value.to_vec(), next));
        Ok(())
    }
    fn get_metric(&self, id: u32) -> HostResult<u64> {
        let metrics = self.metrics.borrow();
        let m = metrics.get(id as usize - 1).ok_or(HostError { call: "get_metric", status: 1 })?;
        if m.0 == MetricType::Histogram {
            return Err(HostError { call: "get_metric", status: 2 });
        }
        Ok(m.2 as u64)
    }
}

impl FakeHost {
    /// The value of the metric with this full name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics.borrow().iter().find(|(_, n, _)| n == name).map(|m| m.2)
    }
}

/// A configured plugin (one Lua state) over a fake host.
pub struct Plugin {
    pub host: Rc<FakeHost>,
    pub scripts: Scripts,
    /// The default script's state (the first `source_codes` one without a default).
    pub runtime: Rc<Runtime>,
}

impl Plugin {
    pub fn new(config_json: &str) -> Result<Plugin, String> {
        let host = Rc::new(FakeHost::default());
        let config = Config::parse(config_json.as_bytes())?;
        let first_named = config.source_codes.keys().next().cloned();
        let scripts = Scripts::new(config, host.clone())?;
        let runtime = match (scripts.default_runtime(), first_named) {
            (Some(rt), _) => rt.clone(),
            (None, Some(name)) => scripts.named(&name).cloned().ok_or("no script")?,
            (None, None) => return Err("no script".into()),
        };
        Ok(Plugin { host, scripts, runtime })
    }

    /// A request through the per-route choice, as the shell does it: `None`
    /// when the route runs no script.
    pub fn routed_request(&self, headers: &[(&str, &str)]) -> Result<Option<(Stream, Verdict)>, String> {
        self.host.set(MapType::RequestHeaders, headers);
        match self.scripts.choose(self.host.as_ref())? {
            Choice::Run(runtime, context) => {
                let mut stream = Stream::with_filter_context(runtime, context);
                let verdict = stream.on_request_headers(true);
                Ok(Some((stream, verdict)))
            }
            Choice::Skip => Ok(None),
        }
    }

    pub fn with_script(script: &str) -> Plugin {
        let json = serde_json::json!({ "inline_code": script }).to_string();
        match Plugin::new(&json) {
            Ok(p) => p,
            Err(e) => panic!("config rejected: {e}"),
        }
    }

    /// Runs one request's headers through a new stream with these request headers.
    pub fn request(&self, headers: &[(&str, &str)]) -> (Stream, Verdict) {
        self.host.set(MapType::RequestHeaders, headers);
        let mut stream = Stream::new(self.runtime.clone());
        let verdict = stream.on_request_headers(true);
        (stream, verdict)
    }

    /// A new stream whose request headers are followed by a body.
    pub fn request_with_body(&self, headers: &[(&str, &str)]) -> (Stream, Verdict) {
        self.host.set(MapType::RequestHeaders, headers);
        let mut stream = Stream::new(self.runtime.clone());
        let verdict = stream.on_request_headers(false);
        (stream, verdict)
    }

    /// Delivers one request data frame: appends it to the host's buffer when the
    /// previous frame was buffered (Pause), replaces it otherwise.
    pub fn request_data(&self, stream: &mut Stream, data: &[u8], eos: bool, buffered: bool) -> Verdict {
        let size = self.fill(BufferType::RequestBody, data, buffered);
        stream.on_request_body(size, eos)
    }

    pub fn response_data(&self, stream: &mut Stream, data: &[u8], eos: bool, buffered: bool) -> Verdict {
        let size = self.fill(BufferType::ResponseBody, data, buffered);
        stream.on_response_body(size, eos)
    }

    fn fill(&self, buffer: BufferType, data: &[u8], buffered: bool) -> usize {
        let mut buffers = self.host.buffers.borrow_mut();
        let buf = &mut buffers[buffer as usize];
        if !buffered {
            buf.clear();
        }
        buf.extend_from_slice(data);
        buf.len()
    }
}

pub const GET: &[(&str, &str)] = &[(":method", "GET"), (":path", "/p"), (":authority", "example.com")];
