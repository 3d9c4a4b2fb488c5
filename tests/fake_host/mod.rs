//! An in-memory host for native tests: header maps with Envoy's semantics
//! (lower-case names, replace = remove all + append), recorded logs and replies.
// Test-only code: panicking on a broken fixture is the right failure here.
#![allow(dead_code, clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm_lua::config::Config;
use proxy_wasm_lua::host::{HeaderPair, Host, HostError, HostResult, LocalReply, LogLevel, MapType};
use proxy_wasm_lua::runtime::Runtime;
use proxy_wasm_lua::stream::{Stream, Verdict};

#[derive(Default)]
pub struct FakeHost {
    pub maps: RefCell<[Vec<HeaderPair>; 4]>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub replies: RefCell<Vec<LocalReply>>,
    /// Makes every header-map call fail with this status.
    pub fail_status: RefCell<Option<u32>>,
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
}

/// A configured plugin (one Lua state) over a fake host.
pub struct Plugin {
    pub host: Rc<FakeHost>,
    pub runtime: Rc<Runtime>,
}

impl Plugin {
    pub fn new(config_json: &str) -> Result<Plugin, String> {
        let host = Rc::new(FakeHost::default());
        let config = Config::parse(config_json.as_bytes())?;
        let runtime = Runtime::new(config, host.clone())?;
        Ok(Plugin { host, runtime })
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
        let verdict = stream.on_request_headers();
        (stream, verdict)
    }
}

pub const GET: &[(&str, &str)] = &[(":method", "GET"), (":path", "/p"), (":authority", "example.com")];
