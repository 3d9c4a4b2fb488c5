//! [`Host`] over the Proxy-Wasm ABI.
use crate::host::{HeaderPair, Host, HostResult, LocalReply, LogLevel, MapType};

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
}
