//! HTTP context: one per stream, forwarding the header callbacks to the driver.
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::abi;
use super::wasm_host::WasmHost;
use crate::host::{LocalReply, LogLevel};
use crate::scripts::{Choice, Scripts};
use crate::stream::{Stream, Verdict, SCRIPT_ERROR_BODY, SCRIPT_ERROR_DETAILS};

pub struct HttpStream {
    scripts: Option<Rc<Scripts>>,
    state: State,
}

enum State {
    /// Request headers not seen yet.
    New,
    Running(Stream),
    /// No script for this route (disabled, unknown name, or no default script).
    Skipped,
    /// The fail-closed reply was sent without a script (no valid configuration,
    /// or the per-route settings could not be read).
    Replied,
}

impl HttpStream {
    pub fn new(scripts: Option<Rc<Scripts>>) -> HttpStream {
        HttpStream { scripts, state: State::New }
    }

    fn fail_without_script(&mut self, why: &str) -> Action {
        self.state = State::Replied;
        abi::log(LogLevel::Error, &format!("lua: {why}; failing the request closed"));
        let reply = LocalReply {
            status: 500,
            details: SCRIPT_ERROR_DETAILS.into(),
            headers: Vec::new(),
            body: SCRIPT_ERROR_BODY.as_bytes().to_vec(),
        };
        let _ = abi::send_local_reply(&reply);
        Action::Pause
    }

    fn run(&mut self, f: impl FnOnce(&mut Stream) -> Verdict) -> Action {
        if let State::New = self.state {
            // The host should not create streams without a valid configuration;
            // if it does, fail closed.
            let Some(scripts) = self.scripts.clone() else {
                return self.fail_without_script("no valid configuration");
            };
            match scripts.choose(&WasmHost) {
                Ok(Choice::Run(runtime, context)) => {
                    self.state = State::Running(Stream::with_filter_context(runtime, context))
                }
                Ok(Choice::Skip) => self.state = State::Skipped,
                Err(e) => return self.fail_without_script(&format!("cannot read the per-route settings: {e}")),
            }
        }
        match &mut self.state {
            State::Running(stream) => match f(stream) {
                Verdict::Continue => Action::Continue,
                Verdict::Pause => Action::Pause,
            },
            State::Skipped => Action::Continue,
            State::New | State::Replied => Action::Pause,
        }
    }

    /// Without a stream only our own fail-closed reply reaches the response path.
    fn run_response(&mut self, f: impl FnOnce(&mut Stream) -> Verdict) -> Action {
        match self.state {
            State::Running(_) => self.run(f),
            _ => Action::Continue,
        }
    }
}

impl Context for HttpStream {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let State::Running(stream) = &mut self.state {
            stream.on_http_call_response(token_id, num_headers, body_size);
        }
    }
}

impl HttpContext for HttpStream {
    fn on_log(&mut self) {
        if let Some(scripts) = &self.scripts {
            let pages = core::arch::wasm32::memory_size(0) as u64;
            scripts.stream_done(&WasmHost, pages * 65536);
        }
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.run(|s| s.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(|s| s.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.run(Stream::on_request_trailers)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.run_response(|s| s.on_response_headers(end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run_response(|s| s.on_response_body(body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.run_response(Stream::on_response_trailers)
    }
}
