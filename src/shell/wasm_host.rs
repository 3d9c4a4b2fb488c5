//! [`Host`] over the Proxy-Wasm ABI.
use std::time::Duration;

use proxy_wasm::types::Status;

use crate::host::{
    BufferType, HeaderPair, Host, HostResult, HttpCallError, LocalReply, LogLevel, MapType, MetricType, StreamType,
};

use super::abi;

pub struct WasmHost;

impl Host for WasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        abi::log(level, message)
    }
    fn header_pairs(&self, map: MapType) -> HostResult<Vec<HeaderPair>> {
        abi::header_pairs(map)
    }
    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
        abi::add_header(map, name, value)
    }
    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
        abi::replace_header(map, name, value)
    }
    fn remove_header(&self, map: MapType, name: &str) -> HostResult<()> {
        abi::remove_header(map, name)
    }
    fn send_local_reply(&self, reply: &LocalReply) -> HostResult<()> {
        abi::send_local_reply(reply)
    }
    fn buffer(&self, buffer: BufferType, start: usize, len: usize) -> HostResult<Vec<u8>> {
        abi::buffer(buffer, start, len)
    }
    fn set_buffer(&self, buffer: BufferType, start: usize, len: usize, data: &[u8]) -> HostResult<()> {
        abi::set_buffer(buffer, start, len, data)
    }
    fn continue_stream(&self, stream: StreamType) -> HostResult<()> {
        abi::continue_stream(stream)
    }
    fn close_stream(&self, stream: StreamType) -> HostResult<()> {
        abi::close_stream(stream)
    }
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u32,
    ) -> Result<u32, HttpCallError> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // The SDK's dispatch registers the token so the answer is routed back to
        // this stream's context. It panics only on statuses Envoy never returns
        // from http_call (Envoy: Ok, BadArgument, InternalFailure).
        match proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers,
            body,
            Vec::new(),
            Duration::from_millis(u64::from(timeout_ms)),
        ) {
            Ok(token) => Ok(token),
            Err(Status::BadArgument) => Err(HttpCallError::BadArgument),
            Err(_) => Err(HttpCallError::Failed),
        }
    }
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        abi::property(path)
    }
    fn now_nanos(&self) -> u64 {
        abi::now_nanos()
    }
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
        abi::call_foreign_function(name, args)
    }
    fn define_metric(&self, kind: MetricType, name: &str) -> HostResult<u32> {
        abi::define_metric(kind, name)
    }
    fn increment_metric(&self, id: u32, offset: i64) -> HostResult<()> {
        abi::increment_metric(id, offset)
    }
    fn record_metric(&self, id: u32, value: u64) -> HostResult<()> {
        abi::record_metric(id, value)
    }
    fn get_metric(&self, id: u32) -> HostResult<u64> {
        abi::get_metric(id)
    }
    fn get_shared_data(&self, key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
        abi::get_shared_data(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        abi::set_shared_data(key, value, cas)
    }
}
