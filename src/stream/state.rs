//! What the Lua objects of one stream share with the driver.
//!
//! Objects (buffers, stream info, ...) hold an `Rc<StreamState>`; the handle and
//! header maps name it by id (api/object.rs). Either way they always look at the
//! current state, so an object obtained before a yield stays usable after it; an
//! operation that is impossible at that moment (editing headers that were
//! already passed on) fails with a message saying why.
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::api::{self, ApiResult};
use crate::budget::Budget;
use crate::host::{BufferType, HeaderPair, Host, LocalReply, MapType, StreamType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request = 0,
    Response = 1,
}

impl Direction {
    pub fn headers_map(self) -> MapType {
        match self {
            Direction::Request => MapType::RequestHeaders,
            Direction::Response => MapType::ResponseHeaders,
        }
    }

    pub fn trailers_map(self) -> MapType {
        match self {
            Direction::Request => MapType::RequestTrailers,
            Direction::Response => MapType::ResponseTrailers,
        }
    }

    pub fn body_buffer(self) -> BufferType {
        match self {
            Direction::Request => BufferType::RequestBody,
            Direction::Response => BufferType::ResponseBody,
        }
    }

    pub fn stream_type(self) -> StreamType {
        match self {
            Direction::Request => StreamType::Request,
            Direction::Response => StreamType::Response,
        }
    }

    pub fn hook_name(self) -> &'static str {
        match self {
            Direction::Request => "envoy_on_request",
            Direction::Response => "envoy_on_response",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// One value per direction (indexing by direction cannot go out of bounds).
#[derive(Default)]
pub struct PerDirection<T> {
    request: T,
    response: T,
}

impl<T> PerDirection<T> {
    pub fn get(&self, dir: Direction) -> &T {
        match dir {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    pub fn get_mut(&mut self, dir: Direction) -> &mut T {
        match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }
}

/// Shared by every stream of one Lua state.
pub struct VmEnv {
    pub host: Rc<dyn Host>,
    /// The host honours StopIteration on headers (Envoy's PluginConfig
    /// `allow_on_headers_stop_iteration`): headers can be held while the body is
    /// read. Without it Envoy turns a headers pause into StopAll, which also holds
    /// the body back, so `body()` must let the headers go first.
    pub hold_headers_for_body: bool,
    /// The script calls `downstreamRequestHeaders()`: request headers are copied
    /// when they are passed on (the host forgets them then).
    pub keep_request_headers: bool,
    /// Configuration the API reads (filter name, filter context, stat prefix).
    pub settings: ApiSettings,
    /// The namespace `metadata()` and `route():metadata()` look in first, found
    /// on first use (the plugin name is a host property).
    filter_name: RefCell<Option<Rc<str>>>,
    /// `stats()` metric ids by (type, full name): Envoy defines each once per VM.
    pub metrics: RefCell<HashMap<(u32, String), u32>>,
    /// Lua instructions left in the current callback.
    pub budget: Rc<Budget>,
    /// Which stream the host is calling into (host calls act on that stream only).
    current: Cell<u64>,
    next_id: Cell<u64>,
    /// Ids of the streams not yet ended (api/object.rs tells a kept object of a
    /// live stream from one of an ended stream by it).
    live: RefCell<HashSet<u64>>,
}

/// The parts of the configuration the Lua API needs at request time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiSettings {
    /// `filter_name`: the namespace of route metadata meant for this filter;
    /// the plugin name (`plugin_name` property) when unset.
    pub filter_name: Option<String>,
    /// `filter_context`: what `handle:filterContext()` returns.
    pub filter_context: Option<serde_json::Map<String, serde_json::Value>>,
    /// `stat_prefix`: extra segment in `stats()` metric names.
    pub stat_prefix: Option<String>,
}

impl VmEnv {
    pub fn new(
        host: Rc<dyn Host>,
        hold_headers_for_body: bool,
        keep_request_headers: bool,
        settings: ApiSettings,
        budget: Rc<Budget>,
    ) -> Rc<VmEnv> {
        Rc::new(VmEnv {
            host,
            hold_headers_for_body,
            keep_request_headers,
            settings,
            budget,
            filter_name: RefCell::new(None),
            metrics: RefCell::new(HashMap::new()),
            current: Cell::new(0),
            next_id: Cell::new(1),
            live: RefCell::new(HashSet::new()),
        })
    }

    /// The id of the stream the host is calling into (0: none).
    pub fn current_stream(&self) -> u64 {
        self.current.get()
    }

    /// Whether stream `id` has not ended yet.
    pub fn is_live(&self, id: u64) -> bool {
        self.live.try_borrow().is_ok_and(|l| l.contains(&id))
    }

    /// The configured `filter_name`, else the plugin's name as Envoy knows it
    /// (Istio: `<namespace>.<WasmPlugin name>`), else "" when the host has none.
    pub fn filter_name(&self) -> Rc<str> {
        if let Some(name) = self.filter_name.borrow().as_ref() {
            return name.clone();
        }
        let name: Rc<str> = match &self.settings.filter_name {
            Some(n) => n.as_str().into(),
            None => match self.host.property(&["plugin_name"]) {
                Ok(Some(v)) => String::from_utf8_lossy(&v).as_ref().into(),
                // Not cached: a host failure may be transient.
                _ => return "".into(),
            },
        };
        *self.filter_name.borrow_mut() = Some(name.clone());
        name
    }
}

/// What a direction's coroutine is parked on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Not parked (running, finished, or not started).
    #[default]
    Nothing,
    /// `body()`: the whole body.
    Body,
    /// The `bodyChunks()` iterator: the next data frame.
    Chunk,
    /// `trailers()`.
    Trailers,
    /// A synchronous `httpCall()` with this token.
    HttpCall(u32),
    /// `respond()` sent a local reply: parked for the rest of the stream.
    Responded,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trailers {
    #[default]
    None,
    /// Arrived and held by the current callback (editable).
    Held,
    Forwarded,
}

/// The answer to a synchronous `httpCall()`.
#[derive(Debug, Default)]
pub struct CallResult {
    pub headers: Vec<HeaderPair>,
    pub body: Vec<u8>,
    pub return_duplicate_headers: bool,
}

/// The progress of one direction of the stream.
#[derive(Default)]
pub struct Flow {
    /// Headers arrived.
    pub seen: Cell<bool>,
    /// Headers were passed on and can no longer change.
    pub forwarded: Cell<bool>,
    /// The message ended (end of stream in headers or data, or trailers).
    pub end: Cell<bool>,
    /// Some body data arrived.
    pub body_seen: Cell<bool>,
    /// Some body data was passed on without being buffered.
    pub body_passed: Cell<bool>,
    /// The host buffers this direction's data for us (the last data callback paused).
    pub buffering: Cell<bool>,
    /// The whole buffered body, once the message ended while buffering.
    pub body: RefCell<Option<Vec<u8>>>,
    /// `body(true)` on a message without a body: what `setBytes` put there.
    pub injected: RefCell<Option<Vec<u8>>>,
    /// The buffered body was passed on: `setBytes` is no longer possible.
    pub body_forwarded: Cell<bool>,
    /// A `bodyChunks()` iteration started.
    pub streaming: Cell<bool>,
    /// Size of the host's body buffer in the current data callback.
    pub frame_len: Cell<usize>,
    /// Id of the data frame readable now (only inside its data callback).
    pub frame: Cell<Option<u64>>,
    pub frame_seq: Cell<u64>,
    /// A frame was delivered to the `bodyChunks()` iterator and not yet taken.
    pub chunk_pending: Cell<bool>,
    pub trailers: Cell<Trailers>,
    /// Copies of the headers / trailers taken when they were passed on.
    pub kept_headers: RefCell<Option<Rc<Vec<HeaderPair>>>>,
    pub kept_trailers: RefCell<Option<Rc<Vec<HeaderPair>>>>,
    pub wait: Cell<Wait>,
    /// We told the host to hold this direction and have not released it yet.
    pub paused: Cell<bool>,
    pub call: RefCell<Option<CallResult>>,
    pub call_duplicates: Cell<bool>,
}

impl Flow {
    /// Forgets everything (a local reply replaced this direction's message).
    pub fn reset(&self) {
        self.seen.set(false);
        self.forwarded.set(false);
        self.end.set(false);
        self.body_seen.set(false);
        self.body_passed.set(false);
        self.buffering.set(false);
        self.body.replace(None);
        self.injected.replace(None);
        self.body_forwarded.set(false);
        self.streaming.set(false);
        self.frame_len.set(0);
        self.frame.set(None);
        self.chunk_pending.set(false);
        self.trailers.set(Trailers::None);
        self.kept_headers.replace(None);
        self.kept_trailers.replace(None);
        self.wait.set(Wait::Nothing);
        self.paused.set(false);
        self.call.replace(None);
    }
}

/// State of one HTTP stream, shared by the driver and the Lua objects of that
/// stream (which may outlive it, e.g. when a script stores them in a global).
pub struct StreamState {
    pub env: Rc<VmEnv>,
    id: u64,
    pub(super) alive: Cell<bool>,
    pub flows: PerDirection<Flow>,
    /// A local reply (respond() or fail-closed) was sent for this stream.
    responded: Cell<bool>,
    /// Header maps read during the current callback, dropped on every write and
    /// at the next callback (other filters may change them in between).
    cache: RefCell<[Option<Rc<Vec<HeaderPair>>>; 4]>,
    /// `streamInfo():dynamicMetadata()`: namespace -> table, created on first use.
    dynamic_metadata: RefCell<Option<mlua::Table>>,
    /// Keys `importPublicKey()` parsed, by the handle string its `get()` returns
    /// (what `verifySignature()` takes), for this stream only, as in Envoy.
    pub public_keys: RefCell<Vec<(String, rsa::RsaPublicKey)>>,
    /// The route's per-route `filter_context`, which replaces the configured one.
    pub route_filter_context: RefCell<Option<prost_types::Struct>>,
}

impl StreamState {
    pub(super) fn new(env: Rc<VmEnv>) -> Rc<StreamState> {
        let id = env.next_id.get();
        env.next_id.set(id.wrapping_add(1));
        if let Ok(mut live) = env.live.try_borrow_mut() {
            live.insert(id);
        }
        Rc::new(StreamState {
            env,
            id,
            alive: Cell::new(true),
            flows: PerDirection::default(),
            responded: Cell::new(false),
            cache: RefCell::new(Default::default()),
            dynamic_metadata: RefCell::new(None),
            public_keys: RefCell::new(Vec::new()),
            route_filter_context: RefCell::new(None),
        })
    }

    /// This stream's number within the VM (unique while the VM lives).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn host(&self) -> &dyn Host {
        self.env.host.as_ref()
    }

    pub fn flow(&self, dir: Direction) -> &Flow {
        self.flows.get(dir)
    }

    /// The stream's dynamic metadata store (shared by both directions).
    pub fn dynamic_metadata(&self, lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
        if let Some(t) = self.dynamic_metadata.borrow().as_ref() {
            return Ok(t.clone());
        }
        let t = lua.create_table()?;
        self.dynamic_metadata.replace(Some(t.clone()));
        Ok(t)
    }

    pub fn responded(&self) -> bool {
        self.responded.get()
    }

    pub fn forwarded(&self, dir: Direction) -> bool {
        self.flow(dir).forwarded.get()
    }

    /// The stream is over: its objects stop working, and the Lua objects this
    /// state holds (which may hold it in turn) are let go.
    pub(super) fn end(&self) {
        self.alive.set(false);
        if let Ok(mut live) = self.env.live.try_borrow_mut() {
            live.remove(&self.id);
        }
        if let Ok(mut md) = self.dynamic_metadata.try_borrow_mut() {
            *md = None;
        }
    }

    pub(super) fn enter(&self) {
        self.env.current.set(self.id);
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            *c = Default::default();
        }
    }

    pub(super) fn leave(&self) {
        self.env.current.set(0);
    }

    /// Host calls are only valid for the stream the host is calling into.
    pub fn check_active(&self) -> ApiResult<()> {
        if !self.alive.get() {
            return api::script_error(Self::AFTER_ITS_STREAM);
        }
        if self.env.current.get() != self.id {
            return api::script_error(Self::OUTSIDE_ITS_STREAM);
        }
        Ok(())
    }

    pub const AFTER_ITS_STREAM: &'static str =
        "object used after its stream ended (stream objects must not be kept across requests)";
    pub const OUTSIDE_ITS_STREAM: &'static str =
        "object used outside of its stream (stream objects must not be kept across requests)";

    fn map_direction(map: MapType) -> Direction {
        match map {
            MapType::RequestHeaders | MapType::RequestTrailers => Direction::Request,
            MapType::ResponseHeaders | MapType::ResponseTrailers | MapType::HttpCallResponseHeaders => {
                Direction::Response
            }
        }
    }

    fn is_trailers(map: MapType) -> bool {
        matches!(map, MapType::RequestTrailers | MapType::ResponseTrailers)
    }

    /// The entries of a header map, read once per callback.
    pub fn header_pairs(&self, map: MapType) -> ApiResult<Rc<Vec<HeaderPair>>> {
        self.check_active()?;
        let dir = Self::map_direction(map);
        if !self.flow(dir).seen.get() {
            return api::script_error(format!("the {} headers have not arrived yet", dir.noun()));
        }
        if Self::is_trailers(map) && self.flow(dir).trailers.get() == Trailers::None {
            return api::script_error(format!("the {} has no trailers", dir.noun()));
        }
        let flow = self.flow(dir);
        let kept = if Self::is_trailers(map) { &flow.kept_trailers } else { &flow.kept_headers };
        if let Some(kept) = kept.borrow().as_ref() {
            return Ok(kept.clone());
        }
        self.fresh_header_pairs(map)
    }

    /// Reads a header map through the per-callback cache.
    fn fresh_header_pairs(&self, map: MapType) -> ApiResult<Rc<Vec<HeaderPair>>> {
        if let Some(Some(cached)) = self.cache.try_borrow().ok().map(|c| c.get(map as usize).cloned().flatten()) {
            return Ok(cached);
        }
        let pairs = Rc::new(self.host().header_pairs(map)?);
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            if let Some(slot) = c.get_mut(map as usize) {
                *slot = Some(pairs.clone());
            }
        }
        Ok(pairs)
    }

    /// Keeps a copy of a map about to be passed on (Envoy's Wasm context stops
    /// exposing it then). A failed read keeps nothing: later reads go to the host.
    pub(super) fn keep_headers(&self, map: MapType) {
        let dir = Self::map_direction(map);
        let flow = self.flow(dir);
        let slot = if Self::is_trailers(map) { &flow.kept_trailers } else { &flow.kept_headers };
        if let Ok(pairs) = self.fresh_header_pairs(map) {
            slot.replace(Some(pairs));
        }
    }

    /// The value of one header (joined with "," when repeated), if present.
    pub fn header_value(&self, map: MapType, name: &str) -> ApiResult<Option<Vec<u8>>> {
        let pairs = self.header_pairs(map)?;
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_slice());
        let Some(first) = values.next() else { return Ok(None) };
        let mut out = first.to_vec();
        for v in values {
            out.push(b',');
            out.extend_from_slice(v);
        }
        Ok(Some(out))
    }

    /// Runs a header map change if the map can still change.
    pub fn modify_headers(&self, map: MapType, change: impl FnOnce(&dyn Host) -> ApiResult<()>) -> ApiResult<()> {
        self.check_active()?;
        let dir = Self::map_direction(map);
        if Self::is_trailers(map) {
            if self.flow(dir).trailers.get() != Trailers::Held {
                return api::script_error(format!(
                    "trailers can no longer be modified: the {} trailers were already forwarded",
                    dir.noun()
                ));
            }
        } else {
            // After a local reply the request can no longer change; the reply's own
            // response headers still can (Envoy runs envoy_on_response on it).
            let request_replaced = dir == Direction::Request && self.responded();
            if self.forwarded(dir) || request_replaced {
                return api::script_error(format!(
                    "header map can no longer be modified: the {} headers were already forwarded",
                    dir.noun()
                ));
            }
        }
        self.drop_cached(map);
        change(self.host())
    }

    pub fn drop_cached(&self, map: MapType) {
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            if let Some(slot) = c.get_mut(map as usize) {
                *slot = None;
            }
        }
    }

    /// Sends a local reply for this stream.
    pub fn send_local_reply(&self, reply: &LocalReply) -> ApiResult<()> {
        self.check_active()?;
        self.host().send_local_reply(reply)?;
        self.responded.set(true);
        Ok(())
    }
}
