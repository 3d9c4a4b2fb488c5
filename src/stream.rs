//! Per-stream state and the coroutine driver that maps Envoy's Lua execution
//! model onto Proxy-Wasm callbacks.
//!
//! `envoy_on_request` / `envoy_on_response` each run as a Lua coroutine per stream.
//! A callback resumes the coroutine; when it finishes the headers continue, when it
//! parks on a blocking API call (`respond()`) the stream pauses, and when it fails
//! the stream fails closed (or open, if configured).
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use mlua::thread::ThreadStatus;
use mlua::{MultiValue, Thread};

use crate::api::{self, handle::Handle, ApiResult};
use crate::host::{HeaderPair, Host, LocalReply, LogLevel, MapType};
use crate::runtime::Runtime;

/// Response details of the fail-closed reply (`%RESPONSE_CODE_DETAILS%`).
pub const SCRIPT_ERROR_DETAILS: &str = "lua_script_error";
/// Body of the fail-closed reply: generic, so no script internals reach clients.
pub const SCRIPT_ERROR_BODY: &str = "Internal Server Error\n";

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

    pub fn hook_name(self) -> &'static str {
        match self {
            Direction::Request => "envoy_on_request",
            Direction::Response => "envoy_on_response",
        }
    }

    fn noun(self) -> &'static str {
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

/// What the shell should tell the host after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Pause,
}

/// Shared by every stream of one Lua state: the host and which stream the host
/// is currently calling into (host calls act on that stream only).
pub struct VmEnv {
    pub host: Rc<dyn Host>,
    current: Cell<u64>,
    next_id: Cell<u64>,
}

impl VmEnv {
    pub fn new(host: Rc<dyn Host>) -> Rc<VmEnv> {
        Rc::new(VmEnv { host, current: Cell::new(0), next_id: Cell::new(1) })
    }
}

/// State of one HTTP stream, shared by the driver and the Lua objects of that
/// stream (which may outlive it, e.g. when a script stores them in a global).
pub struct StreamState {
    pub env: Rc<VmEnv>,
    id: u64,
    alive: Cell<bool>,
    /// Headers of each direction have arrived.
    seen: PerDirection<Cell<bool>>,
    /// Headers of each direction were passed on and can no longer change.
    forwarded: PerDirection<Cell<bool>>,
    /// A local reply (respond() or fail-closed) was sent for this stream.
    responded: Cell<bool>,
    /// Header maps read during the current callback, dropped on every write and
    /// at the next callback (other filters may change them in between).
    cache: RefCell<[Option<Rc<Vec<HeaderPair>>>; 4]>,
}

impl StreamState {
    fn new(env: Rc<VmEnv>) -> Rc<StreamState> {
        let id = env.next_id.get();
        env.next_id.set(id.wrapping_add(1));
        Rc::new(StreamState {
            env,
            id,
            alive: Cell::new(true),
            seen: Default::default(),
            forwarded: Default::default(),
            responded: Cell::new(false),
            cache: RefCell::new(Default::default()),
        })
    }

    pub fn host(&self) -> &dyn Host {
        self.env.host.as_ref()
    }

    pub fn responded(&self) -> bool {
        self.responded.get()
    }

    pub fn forwarded(&self, dir: Direction) -> bool {
        self.forwarded.get(dir).get()
    }

    fn enter(&self) {
        self.env.current.set(self.id);
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            *c = Default::default();
        }
    }

    fn leave(&self) {
        self.env.current.set(0);
    }

    /// Host calls are only valid for the stream the host is calling into.
    pub fn check_active(&self) -> ApiResult<()> {
        if !self.alive.get() {
            return api::script_error(
                "object used after its stream ended (stream objects must not be kept across requests)",
            );
        }
        if self.env.current.get() != self.id {
            return api::script_error(
                "object used outside of its stream (stream objects must not be kept across requests)",
            );
        }
        Ok(())
    }

    fn map_direction(map: MapType) -> Direction {
        match map {
            MapType::RequestHeaders | MapType::RequestTrailers => Direction::Request,
            MapType::ResponseHeaders | MapType::ResponseTrailers => Direction::Response,
        }
    }

    /// The entries of a header map, read once per callback.
    pub fn header_pairs(&self, map: MapType) -> ApiResult<Rc<Vec<HeaderPair>>> {
        self.check_active()?;
        if !self.seen.get(Self::map_direction(map)).get() {
            return api::script_error(format!("the {} headers have not arrived yet", Self::map_direction(map).noun()));
        }
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

    /// Runs a header map change if the map can still change.
    pub fn modify_headers(&self, map: MapType, change: impl FnOnce(&dyn Host) -> ApiResult<()>) -> ApiResult<()> {
        self.check_active()?;
        let dir = Self::map_direction(map);
        // After a local reply the request can no longer change; the reply's own
        // response headers still can (Envoy runs envoy_on_response on it).
        let request_replaced = dir == Direction::Request && self.responded();
        if self.forwarded(dir) || request_replaced {
            return api::script_error(format!(
                "header map can no longer be modified: the {} headers were already forwarded",
                dir.noun()
            ));
        }
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            if let Some(slot) = c.get_mut(map as usize) {
                *slot = None;
            }
        }
        change(self.host())
    }

    /// Sends a local reply for this stream (once).
    pub fn send_local_reply(&self, reply: &LocalReply) -> ApiResult<()> {
        self.check_active()?;
        self.host().send_local_reply(reply)?;
        self.responded.set(true);
        Ok(())
    }
}

/// The driver of one HTTP stream; owned by the shell's HTTP context.
pub struct Stream {
    runtime: Rc<Runtime>,
    state: Rc<StreamState>,
    /// Coroutines parked on a blocking call, kept alive until the stream ends.
    parked: PerDirection<Option<Thread>>,
    /// The stream failed closed: no more script code runs on it.
    failed: bool,
}

impl Stream {
    pub fn new(runtime: Rc<Runtime>) -> Stream {
        let state = StreamState::new(runtime.env().clone());
        Stream { runtime, state, parked: PerDirection::default(), failed: false }
    }

    pub fn on_request_headers(&mut self) -> Verdict {
        self.on_headers(Direction::Request)
    }

    pub fn on_response_headers(&mut self) -> Verdict {
        self.on_headers(Direction::Response)
    }

    fn on_headers(&mut self, dir: Direction) -> Verdict {
        self.state.seen.get(dir).set(true);
        // Our own fail-closed reply passes through the response path: running the
        // script on it could only fail it further.
        if self.failed {
            return self.forward(dir);
        }
        let Some(hook) = self.runtime.hook(dir).cloned() else {
            return self.forward(dir);
        };
        let responded_before = self.state.responded();
        self.state.enter();
        let result = (|| -> mlua::Result<(Thread, MultiValue)> {
            let lua = self.runtime.lua();
            let thread = lua.create_thread(hook)?;
            let handle = lua.create_userdata(Handle::new(self.state.clone(), dir))?;
            let out = thread.resume::<MultiValue>(handle)?;
            Ok((thread, out))
        })();
        self.state.leave();
        match result {
            Err(e) => self.fail(dir, &describe_error(&e)),
            Ok((thread, out)) => {
                if self.state.responded() && !responded_before {
                    // respond(): the coroutine stays parked for the rest of the stream.
                    *self.parked.get_mut(dir) = Some(thread);
                    return Verdict::Pause;
                }
                match thread.status() {
                    ThreadStatus::Resumable => {
                        let ours = matches!(out.front(), Some(v) if *v == api::yield_marker());
                        let msg = if ours {
                            "internal error: script parked without a pending operation"
                        } else {
                            "script performed an unexpected yield"
                        };
                        self.fail(dir, msg)
                    }
                    _ => self.forward(dir),
                }
            }
        }
    }

    fn forward(&mut self, dir: Direction) -> Verdict {
        self.state.forwarded.get(dir).set(true);
        Verdict::Continue
    }

    /// A script error: logged with its position; then fail closed (local reply
    /// 500) unless `fail_open`, which continues as Envoy's native filter does.
    fn fail(&mut self, dir: Direction, message: &str) -> Verdict {
        let host = self.state.host();
        host.log(LogLevel::Error, &format!("script error in {}: {message}", dir.hook_name()));
        if self.runtime.config().fail_open {
            return self.forward(dir);
        }
        self.failed = true;
        if self.state.forwarded(dir) || self.state.responded() {
            // Nothing left to replace: later issues reset the stream here.
            return Verdict::Continue;
        }
        let reply = LocalReply {
            status: 500,
            details: SCRIPT_ERROR_DETAILS.into(),
            headers: Vec::new(),
            body: SCRIPT_ERROR_BODY.as_bytes().to_vec(),
        };
        self.state.enter();
        let sent = self.state.send_local_reply(&reply);
        self.state.leave();
        if let Err(e) = sent {
            // Fail closed all the same: holding the stream is safer than passing it.
            host.log(LogLevel::Critical, &format!("cannot send the fail-closed reply: {e:?}"));
        }
        Verdict::Pause
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.state.alive.set(false);
    }
}

/// A one-line description of a Lua error: the message with its chunk name and
/// line, without mlua's wrapping.
pub fn describe_error(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => {
            m.split("\nstack traceback:").next().unwrap_or_default().to_string()
        }
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => describe_error(cause),
        mlua::Error::WithContext { context, cause } => format!("{context}: {}", describe_error(cause)),
        other => other.to_string(),
    }
}
