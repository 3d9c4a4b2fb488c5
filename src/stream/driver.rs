//! The driver of one HTTP stream: runs `envoy_on_request` / `envoy_on_response`
//! as coroutines from the host's callbacks.
//!
//! Blocking API calls (`body()`, the `bodyChunks()` iterator, `trailers()`, a
//! synchronous `httpCall()`, `respond()`) record in the direction's [`Flow`] what
//! they wait for and yield a private marker. After every run the driver decides,
//! from that wait, whether the host holds the direction (Pause) or passes it on
//! (Continue, or `continue_stream` when the run happened in another callback),
//! mirroring the states of Envoy's native filter (see the table in README).
use std::rc::Rc;

use mlua::thread::ThreadStatus;
use mlua::{MultiValue, Thread};

use super::state::{CallResult, Direction, Flow, PerDirection, StreamState, Trailers, Wait};
use crate::api;
use crate::host::{LocalReply, LogLevel, MapType};
use crate::runtime::Runtime;

/// Response details of the fail-closed reply (`%RESPONSE_CODE_DETAILS%`).
pub const SCRIPT_ERROR_DETAILS: &str = "lua_script_error";
/// Body of the fail-closed reply: generic, so no script internals reach clients.
pub const SCRIPT_ERROR_BODY: &str = "Internal Server Error\n";

/// What the shell should tell the host after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Pause,
}

/// Which host callback a coroutine run happens in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Callback {
    Headers,
    Data,
    Trailers,
    /// Not a callback of the direction itself (an HTTP call answer): a release
    /// must go through `continue_stream`.
    Other,
}

enum Run {
    Finished,
    Parked,
    Failed(String),
}

/// The driver of one HTTP stream; owned by the shell's HTTP context.
pub struct Stream {
    runtime: Rc<Runtime>,
    state: Rc<StreamState>,
    /// Coroutines parked on a blocking call.
    threads: PerDirection<Option<Thread>>,
    /// The stream failed closed: no more script code runs on it.
    failed: bool,
}

impl Stream {
    pub fn new(runtime: Rc<Runtime>) -> Stream {
        let state = StreamState::new(runtime.env().clone());
        Stream { runtime, state, threads: PerDirection::default(), failed: false }
    }

    /// A stream on a route whose per-route settings carry a `filter_context`.
    pub fn with_filter_context(runtime: Rc<Runtime>, context: Option<prost_types::Struct>) -> Stream {
        let stream = Stream::new(runtime);
        *stream.state.route_filter_context.borrow_mut() = context;
        stream
    }

    fn flow(&self, dir: Direction) -> &Flow {
        self.state.flow(dir)
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Verdict {
        self.on_headers(Direction::Request, end_of_stream)
    }

    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Verdict {
        self.on_headers(Direction::Response, end_of_stream)
    }

    fn on_headers(&mut self, dir: Direction, end_of_stream: bool) -> Verdict {
        let flow = self.state.flow(dir);
        if flow.seen.get() {
            // A second set of response headers is a local reply replacing the
            // response after our hook ran (respond() on the response path): it
            // passes through untouched.
            flow.reset();
            *self.threads.get_mut(dir) = None;
            flow.seen.set(true);
            flow.forwarded.set(true);
            return Verdict::Continue;
        }
        flow.seen.set(true);
        flow.end.set(end_of_stream);
        // Our own fail-closed reply passes through the response path: running the
        // script on it could only fail it further.
        if self.failed || self.runtime.hook(dir).is_none() {
            return self.release(dir, Callback::Headers);
        }
        let run = self.resume(dir);
        self.after_run(dir, Callback::Headers, run)
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Verdict {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Verdict {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_body(&mut self, dir: Direction, size: usize, end_of_stream: bool) -> Verdict {
        let flow = self.state.flow(dir);
        flow.frame_len.set(size);
        if size > 0 {
            flow.body_seen.set(true);
        }
        if end_of_stream {
            flow.end.set(true);
        }
        if self.threads.get(dir).is_none() {
            return self.idle(dir, Callback::Data);
        }
        match flow.wait.get() {
            Wait::Body => {
                flow.buffering.set(true);
                if !end_of_stream {
                    return self.hold(dir, Callback::Data);
                }
                if let Err(msg) = self.snapshot_body(dir, size) {
                    return self.fail(dir, Callback::Data, &msg);
                }
                let run = self.resume(dir);
                self.after_run(dir, Callback::Data, run)
            }
            // Envoy's native filter hands the iterator every frame, even the empty
            // one that ends a chunked message.
            Wait::Chunk => {
                let seq = flow.frame_seq.get().wrapping_add(1);
                flow.frame_seq.set(seq);
                flow.frame.set(Some(seq));
                flow.chunk_pending.set(true);
                let run = self.resume(dir);
                self.flow(dir).frame.set(None);
                self.after_run(dir, Callback::Data, run)
            }
            Wait::Trailers if end_of_stream => {
                let run = self.resume(dir);
                self.after_run(dir, Callback::Data, run)
            }
            Wait::HttpCall(_) => {
                flow.buffering.set(true);
                if end_of_stream {
                    if let Err(msg) = self.snapshot_body(dir, size) {
                        return self.fail(dir, Callback::Data, &msg);
                    }
                }
                self.hold(dir, Callback::Data)
            }
            Wait::Responded => Verdict::Pause,
            Wait::Trailers | Wait::Nothing => self.release(dir, Callback::Data),
        }
    }

    pub fn on_request_trailers(&mut self) -> Verdict {
        self.on_trailers(Direction::Request)
    }

    pub fn on_response_trailers(&mut self) -> Verdict {
        self.on_trailers(Direction::Response)
    }

    fn on_trailers(&mut self, dir: Direction) -> Verdict {
        let flow = self.state.flow(dir);
        flow.end.set(true);
        flow.trailers.set(Trailers::Held);
        if self.threads.get(dir).is_none() {
            return self.idle(dir, Callback::Trailers);
        }
        match flow.wait.get() {
            Wait::Body => {
                if flow.buffering.get() {
                    if let Err(msg) = self.snapshot_body(dir, usize::MAX) {
                        return self.fail(dir, Callback::Trailers, &msg);
                    }
                }
                let run = self.resume(dir);
                self.after_run(dir, Callback::Trailers, run)
            }
            Wait::Chunk | Wait::Trailers => {
                let run = self.resume(dir);
                self.after_run(dir, Callback::Trailers, run)
            }
            Wait::HttpCall(_) => {
                if flow.buffering.get() {
                    if let Err(msg) = self.snapshot_body(dir, usize::MAX) {
                        return self.fail(dir, Callback::Trailers, &msg);
                    }
                }
                self.hold(dir, Callback::Trailers)
            }
            Wait::Responded => Verdict::Pause,
            Wait::Nothing => self.release(dir, Callback::Trailers),
        }
    }

    /// The answer to an HTTP call: resumes the coroutine waiting for it, if any
    /// (asynchronous calls have none).
    pub fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let Some(dir) = [Direction::Request, Direction::Response]
            .into_iter()
            .find(|d| self.flow(*d).wait.get() == Wait::HttpCall(token) && self.threads.get(*d).is_some())
        else {
            return;
        };
        let host = self.state.host();
        let duplicates = self.flow(dir).call_duplicates.get();
        let result = if num_headers == 0 {
            // The call failed without a response (reset, connection failure).
            Ok(CallResult::failure(duplicates))
        } else {
            host.header_pairs(MapType::HttpCallResponseHeaders).and_then(|headers| {
                let body = if body_size > 0 {
                    host.buffer(crate::host::BufferType::HttpCallResponseBody, 0, body_size)?
                } else {
                    Vec::new()
                };
                Ok(CallResult { headers, body, return_duplicate_headers: duplicates })
            })
        };
        match result {
            Ok(r) => {
                self.flow(dir).call.replace(Some(r));
                let run = self.resume(dir);
                self.after_run(dir, Callback::Other, run);
            }
            Err(e) => {
                self.fail(dir, Callback::Other, &format!("cannot read the httpCall response: {e}"));
            }
        }
    }

    /// Runs (or starts) the direction's coroutine until it finishes or parks.
    fn resume(&mut self, dir: Direction) -> Run {
        self.flow(dir).wait.set(Wait::Nothing);
        let parked = self.threads.get_mut(dir).take();
        self.state.env.budget.reset();
        self.state.enter();
        let result = (|| -> mlua::Result<(Thread, MultiValue)> {
            match parked {
                Some(thread) => {
                    let out = thread.resume::<MultiValue>(())?;
                    Ok((thread, out))
                }
                None => {
                    let hook = self.runtime.hook(dir).ok_or_else(|| mlua::Error::runtime("no hook"))?;
                    let thread = self.runtime.thread(hook)?;
                    // The runner (lua/hook.lua) makes the handle from these.
                    let stream = mlua::LightUserData(Rc::as_ptr(&self.state).cast_mut().cast());
                    let out = thread.resume::<MultiValue>((stream, dir as i64))?;
                    Ok((thread, out))
                }
            }
        })();
        self.state.leave();
        match result {
            Err(e) => Run::Failed(describe_error(&e)),
            Ok((thread, out)) => {
                if thread.status() != ThreadStatus::Resumable {
                    self.runtime.recycle(thread);
                    return Run::Finished;
                }
                let ours = matches!(out.front(), Some(v) if *v == api::yield_marker());
                if !ours {
                    return Run::Failed("script performed an unexpected yield".into());
                }
                if self.flow(dir).wait.get() == Wait::Nothing {
                    return Run::Failed("internal error: script parked without a pending operation".into());
                }
                *self.threads.get_mut(dir) = Some(thread);
                Run::Parked
            }
        }
    }

    fn after_run(&mut self, dir: Direction, cb: Callback, run: Run) -> Verdict {
        match run {
            Run::Failed(msg) => return self.fail(dir, cb, &msg),
            Run::Finished => {
                if let Some(verdict) = self.send_injected_body(dir, cb) {
                    return verdict;
                }
            }
            Run::Parked => {}
        }
        let flow = self.flow(dir);
        let hold = match flow.wait.get() {
            Wait::Responded | Wait::HttpCall(_) => true,
            // Without StopIteration support a held header blocks the body too, so
            // body() lets the headers go first (see VmEnv::hold_headers_for_body).
            Wait::Body => self.state.env.hold_headers_for_body || flow.forwarded.get(),
            Wait::Chunk | Wait::Trailers | Wait::Nothing => false,
        };
        if hold {
            self.hold(dir, cb)
        } else {
            self.release(dir, cb)
        }
    }

    /// The direction has no coroutine to run: pass it on (or drop it after a
    /// local reply replaced it).
    fn idle(&mut self, dir: Direction, cb: Callback) -> Verdict {
        if dir == Direction::Request && self.state.responded() {
            return Verdict::Pause;
        }
        self.release(dir, cb)
    }

    fn hold(&mut self, dir: Direction, cb: Callback) -> Verdict {
        let flow = self.flow(dir);
        flow.paused.set(true);
        if cb == Callback::Data {
            flow.buffering.set(true);
        }
        Verdict::Pause
    }

    /// Passes the direction on: Continue from its own callback, or
    /// `continue_stream` when it was paused and the run happened elsewhere.
    fn release(&mut self, dir: Direction, cb: Callback) -> Verdict {
        // Envoy's Wasm context forgets a header map once it continues; keep a copy
        // for a coroutine that may still read it (or a response hook reading the
        // request headers).
        let keep_request = dir == Direction::Request && self.state.env.keep_request_headers;
        if !self.flow(dir).forwarded.get() && (self.threads.get(dir).is_some() || keep_request) {
            self.state.keep_headers(dir.headers_map());
        }
        if self.flow(dir).trailers.get() == Trailers::Held && self.threads.get(dir).is_some() {
            self.state.keep_headers(dir.trailers_map());
        }
        let flow = self.flow(dir);
        if cb == Callback::Other {
            if !flow.paused.get() {
                return Verdict::Continue;
            }
            if let Err(e) = self.state.host().continue_stream(dir.stream_type()) {
                self.state.host().log(LogLevel::Error, &format!("lua: cannot resume the {}: {e}", dir.noun()));
            }
        }
        if cb == Callback::Data && !flow.buffering.get() && flow.frame_len.get() > 0 {
            flow.body_passed.set(true);
        }
        flow.paused.set(false);
        flow.buffering.set(false);
        flow.forwarded.set(true);
        if flow.end.get() {
            flow.body_forwarded.set(true);
        }
        if flow.trailers.get() == Trailers::Held {
            flow.trailers.set(Trailers::Forwarded);
        }
        Verdict::Continue
    }

    /// Keeps a copy of the whole buffered body (the host's buffer is only
    /// readable from some callbacks; `body()` objects stay usable after).
    fn snapshot_body(&mut self, dir: Direction, len: usize) -> Result<(), String> {
        let bytes = self
            .state
            .host()
            .buffer(dir.body_buffer(), 0, len)
            .map_err(|e| format!("cannot read the {} body: {e}", dir.noun()))?;
        self.flow(dir).body.replace(Some(bytes));
        Ok(())
    }

    /// `body(true)` on a response without a body, then `setBytes`: Proxy-Wasm
    /// cannot add a body to a headers-only message, so the response is replaced
    /// by a local reply with the same status and headers and the new body.
    fn send_injected_body(&mut self, dir: Direction, cb: Callback) -> Option<Verdict> {
        let body = self.flow(dir).injected.borrow_mut().take()?;
        if dir != Direction::Response || self.flow(dir).forwarded.get() {
            return None;
        }
        self.state.enter();
        let reply = self.state.header_pairs(MapType::ResponseHeaders).map(|pairs| {
            let status = pairs
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
                .unwrap_or(200);
            let headers = pairs.iter().filter(|(k, _)| !k.starts_with(':') && k != "content-length").cloned().collect();
            LocalReply { status, details: api::handle::RESPOND_DETAILS.into(), headers, body }
        });
        let sent = reply.and_then(|r| self.state.send_local_reply(&r));
        self.state.leave();
        match sent {
            Ok(()) => {
                self.flow(dir).wait.set(Wait::Responded);
                Some(self.hold(dir, cb))
            }
            Err(e) => Some(self.fail(dir, cb, &format!("cannot send the response with its new body: {}", e.message()))),
        }
    }

    /// A script error: logged with its position; then fail closed (a 500 local
    /// reply, or a reset when the response already started) unless `fail_open`,
    /// which continues as Envoy's native filter does.
    fn fail(&mut self, dir: Direction, cb: Callback, message: &str) -> Verdict {
        let host = self.state.host();
        host.log(LogLevel::Error, &format!("script error in {}: {message}", dir.hook_name()));
        *self.threads.get_mut(dir) = None;
        // Give back at once what a failed run (e.g. one that hit the memory
        // limit) allocated; failures are rare, a full collection is affordable.
        let _ = self.runtime.lua().gc_collect();
        self.flow(dir).wait.set(Wait::Nothing);
        if self.runtime.script().fail_open {
            return self.release(dir, cb);
        }
        self.failed = true;
        *self.threads.get_mut(Direction::Request) = None;
        *self.threads.get_mut(Direction::Response) = None;
        let response_started = self.state.forwarded(Direction::Response) || self.state.responded();
        if response_started {
            // Nothing left to replace: reset rather than pass on a half-processed message.
            if let Err(e) = host.close_stream(dir.stream_type()) {
                host.log(LogLevel::Critical, &format!("lua: cannot reset the stream: {e}"));
            }
            return Verdict::Pause;
        }
        let configured = &self.runtime.config().fail_closed_reply;
        let reply = LocalReply {
            status: configured.status,
            details: SCRIPT_ERROR_DETAILS.into(),
            headers: configured.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into_bytes())).collect(),
            body: configured.body.clone().into_bytes(),
        };
        self.state.enter();
        let sent = self.state.send_local_reply(&reply);
        self.state.leave();
        if let Err(e) = sent {
            // Fail closed all the same: holding the stream is safer than passing it.
            host.log(LogLevel::Critical, &format!("lua: cannot send the fail-closed reply: {}", e.message()));
        }
        Verdict::Pause
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.state.end();
    }
}

impl CallResult {
    /// What Envoy's native filter hands the script when a call fails outright.
    pub fn failure(return_duplicate_headers: bool) -> CallResult {
        CallResult {
            headers: vec![(":status".into(), b"503".to_vec())],
            body: b"upstream failure".to_vec(),
            return_duplicate_headers,
        }
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
