//! The host-call seam: everything the Lua API needs from the proxy.
//!
//! The proxy-wasm shell implements [`Host`] over the real ABI (`shell::wasm_host`);
//! unit tests implement it with an in-memory fake. Every call returns a `Result`:
//! a host failure becomes a Lua error or a fail-closed reply, never a trap.
use std::fmt;

/// Proxy-Wasm header map types (ABI `MapType` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
    HttpCallResponseHeaders = 6,
}

/// Proxy-Wasm buffer types (ABI `BufferType` values) the API reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    RequestBody = 0,
    ResponseBody = 1,
    HttpCallResponseBody = 4,
}

/// Which half of the stream a `continue_stream` / `close_stream` acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    Request = 0,
    Response = 1,
}

/// Why a `dispatch_http_call` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpCallError {
    /// The cluster is not configured (or the headers lack a pseudo-header).
    BadArgument,
    /// The host could not start the request.
    Failed,
}

/// Proxy-Wasm metric types (ABI values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// Proxy-Wasm log levels (ABI values), also the six `handle:log*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// One header entry; values are bytes because Lua strings are.
pub type HeaderPair = (String, Vec<u8>);

/// A local reply the plugin asks the host to send instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    /// Envoy response code details (`%RESPONSE_CODE_DETAILS%`); no whitespace.
    pub details: String,
    pub headers: Vec<HeaderPair>,
    pub body: Vec<u8>,
}

/// A host call that did not succeed: the ABI status code and the call's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.status {
            1 => "not found",
            2 => "bad argument",
            3 => "serialization failure",
            4 => "parse failure",
            6 => "empty",
            7 => "CAS mismatch",
            8 => "internal failure",
            9 => "unimplemented",
            _ => "unexpected status",
        };
        write!(f, "host call {} failed: {} ({})", self.call, what, self.status)
    }
}

pub type HostResult<T> = Result<T, HostError>;

pub trait Host {
    fn log(&self, level: LogLevel, message: &str);
    /// All entries of a header map, in wire order (repeated names appear repeatedly).
    fn header_pairs(&self, map: MapType) -> HostResult<Vec<HeaderPair>>;
    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()>;
    /// Removes every entry of `name` and sets a single one.
    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()>;
    /// Removes every entry of `name`.
    fn remove_header(&self, map: MapType, name: &str) -> HostResult<()>;
    fn send_local_reply(&self, reply: &LocalReply) -> HostResult<()>;
    /// `len` bytes from `start` of a body buffer (fewer if the buffer is shorter).
    fn buffer(&self, buffer: BufferType, start: usize, len: usize) -> HostResult<Vec<u8>>;
    /// Replaces `len` bytes from `start` (Envoy: start 0 = replace a prefix,
    /// start >= size = append) with `data`.
    fn set_buffer(&self, buffer: BufferType, start: usize, len: usize, data: &[u8]) -> HostResult<()>;
    /// Resumes a direction the plugin paused.
    fn continue_stream(&self, stream: StreamType) -> HostResult<()>;
    /// Resets a stream whose headers were already sent (nothing left to replace).
    fn close_stream(&self, stream: StreamType) -> HostResult<()>;
    /// Starts an HTTP call; the answer arrives in `on_http_call_response` with the token.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u32,
    ) -> Result<u32, HttpCallError>;
    /// A host property (`source.address`, ...); `None` when the host has no value.
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    /// Wall-clock time, nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
    /// A host extension function by name (status NotFound: the host has none).
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>>;
    /// Defines (or finds) a metric; the id is stable for the VM's lifetime.
    fn define_metric(&self, kind: MetricType, name: &str) -> HostResult<u32>;
    /// Adds `offset` to a counter (offset >= 0) or gauge.
    fn increment_metric(&self, id: u32, offset: i64) -> HostResult<()>;
    /// Sets a gauge, or records a histogram sample.
    fn record_metric(&self, id: u32, value: u64) -> HostResult<()>;
    /// The current value of a counter or gauge.
    fn get_metric(&self, id: u32) -> HostResult<u64>;
    /// A shared-data entry (shared by every worker's VM of this vm_id) and its
    /// CAS token; `None` when the key is not set.
    fn get_shared_data(&self, key: &str) -> HostResult<Option<(Vec<u8>, u32)>>;
    /// Sets a shared-data entry; `cas` != 0 makes it conditional (status 7).
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> HostResult<()>;
}
