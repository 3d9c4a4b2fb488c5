//! The Proxy-Wasm host calls the plugin makes, with every status mapped to a
//! `Result`. The SDK's `hostcalls` wrappers `panic!` on statuses they do not
//! expect (a trap in Wasm, and then 503 for every later request); these return
//! the status instead. Signatures are those of the ABI v0.2.1 (`env.proxy_*`).
use std::ptr::null_mut;

use crate::host::{BufferType, HostError, HostResult, LocalReply, LogLevel, MapType, MetricType, StreamType};
use crate::pairs;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const EMPTY: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;

fn check(call: &'static str, status: u32) -> HostResult<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { call, status })
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host filled `size` bytes it obtained from proxy_on_memory_allocate(size).
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub fn log(level: LogLevel, message: &str) {
    // SAFETY: pointer and length describe a live string.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// The plugin configuration bytes; empty when there is none.
pub fn plugin_configuration() -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid for writes.
    let status = unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size) };
    match status {
        OK => Ok(take_host_buffer(data, size)),
        NOT_FOUND | EMPTY => Ok(Vec::new()),
        status => Err(HostError { call: "get_buffer_bytes(plugin_configuration)", status }),
    }
}

pub fn header_pairs(map: MapType) -> HostResult<Vec<(String, Vec<u8>)>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid for writes.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    check("get_header_map_pairs", status)?;
    let bytes = take_host_buffer(data, size);
    pairs::decode(&bytes).ok_or(HostError { call: "get_header_map_pairs", status: 3 })
}

pub fn add_header(map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths describe live buffers.
    let status =
        unsafe { proxy_add_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    check("add_header_map_value", status)
}

pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths describe live buffers.
    let status =
        unsafe { proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    check("replace_header_map_value", status)
}

pub fn remove_header(map: MapType, name: &str) -> HostResult<()> {
    // SAFETY: pointer and length describe a live string.
    let status = unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) };
    check("remove_header_map_value", status)
}

pub fn send_local_reply(reply: &LocalReply) -> HostResult<()> {
    let headers = pairs::encode(reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    // SAFETY: pointers and lengths describe live buffers; -1 = no gRPC status.
    let status = unsafe {
        proxy_send_local_response(
            reply.status,
            reply.details.as_ptr(),
            reply.details.len(),
            reply.body.as_ptr(),
            reply.body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    check("send_local_response", status)
}

/// Bytes of a body buffer; an absent or empty buffer reads as empty.
pub fn buffer(buffer: BufferType, start: usize, len: usize) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid for writes.
    let status = unsafe { proxy_get_buffer_bytes(buffer as u32, start, len, &mut data, &mut size) };
    match status {
        OK => Ok(take_host_buffer(data, size)),
        NOT_FOUND | EMPTY => Ok(Vec::new()),
        status => Err(HostError { call: "get_buffer_bytes", status }),
    }
}

pub fn set_buffer(buffer: BufferType, start: usize, len: usize, data: &[u8]) -> HostResult<()> {
    // SAFETY: pointer and length describe a live buffer.
    let status = unsafe { proxy_set_buffer_bytes(buffer as u32, start, len, data.as_ptr(), data.len()) };
    check("set_buffer_bytes", status)
}

pub fn continue_stream(stream: StreamType) -> HostResult<()> {
    // SAFETY: plain value arguments.
    check("continue_stream", unsafe { proxy_continue_stream(stream as u32) })
}

pub fn close_stream(stream: StreamType) -> HostResult<()> {
    // SAFETY: plain value arguments.
    check("close_stream", unsafe { proxy_close_stream(stream as u32) })
}

/// A property by path (parts joined with NUL, as the ABI wants); `None` if unset.
pub fn property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let joined = path.join("\0");
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointer and length describe a live string; out-pointers are valid.
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(take_host_buffer(data, size))),
        NOT_FOUND | EMPTY => Ok(None),
        status => Err(HostError { call: "get_property", status }),
    }
}

pub fn now_nanos() -> u64 {
    let mut t = 0u64;
    // SAFETY: out-pointer is valid for writes.
    let _ = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    t
}

/// Calls a host extension (Envoy registers e.g. `clear_route_cache`,
/// `set_envoy_filter_state`); NotFound when this host has no such function.
pub fn call_foreign_function(name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers and lengths describe live buffers; out-pointers are valid.
    let status = unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), &mut data, &mut size)
    };
    check("call_foreign_function", status)?;
    Ok(take_host_buffer(data, size))
}

pub fn define_metric(kind: MetricType, name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: pointer and length describe a live string; out-pointer is valid.
    let status = unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
    check("define_metric", status)?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
    // SAFETY: plain value arguments.
    check("increment_metric", unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: plain value arguments.
    check("record_metric", unsafe { proxy_record_metric(id, value) })
}

pub fn get_metric(id: u32) -> HostResult<u64> {
    let mut value = 0u64;
    // SAFETY: out-pointer is valid for writes.
    check("get_metric", unsafe { proxy_get_metric(id, &mut value) })?;
    Ok(value)
}

/// A shared-data entry and its CAS token; `None` when the key is not set.
pub fn get_shared_data(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0u32;
    // SAFETY: pointer and length describe a live string; out-pointers are valid.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok(Some((take_host_buffer(data, size), cas))),
        NOT_FOUND => Ok(None),
        status => Err(HostError { call: "get_shared_data", status }),
    }
}

/// Sets a shared-data entry; with `cas` != 0 only if it still has that token
/// (status 7, CasMismatch, otherwise).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
    // SAFETY: pointers and lengths describe live buffers.
    let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    check("set_shared_data", status)
}
