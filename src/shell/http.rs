//! HTTP context: one per stream, forwarding the header callbacks to the driver.
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::abi;
use crate::host::{LocalReply, LogLevel};
use crate::runtime::Runtime;
use crate::stream::{Stream, Verdict, SCRIPT_ERROR_BODY, SCRIPT_ERROR_DETAILS};

pub struct HttpStream {
    stream: Option<Stream>,
    /// Without a runtime: the fail-closed reply was sent.
    replied: bool,
}

impl HttpStream {
    pub fn new(runtime: Option<Rc<Runtime>>) -> HttpStream {
        HttpStream { stream: runtime.map(Stream::new), replied: false }
    }

    fn run(&mut self, f: impl FnOnce(&mut Stream) -> Verdict) -> Action {
        match self.stream.as_mut() {
            Some(stream) => match f(stream) {
                Verdict::Continue => Action::Continue,
                Verdict::Pause => Action::Pause,
            },
            None if self.replied => Action::Pause,
            None => {
                self.replied = true;
                // No valid configuration: the host should not create streams at
                // all then, but if it does, fail closed.
                abi::log(LogLevel::Error, "lua: no valid configuration; failing the request closed");
                let reply = LocalReply {
                    status: 500,
                    details: SCRIPT_ERROR_DETAILS.into(),
                    headers: Vec::new(),
                    body: SCRIPT_ERROR_BODY.as_bytes().to_vec(),
                };
                let _ = abi::send_local_reply(&reply);
                Action::Pause
            }
        }
    }
}

impl HttpStream {
    fn run_response(&mut self, f: impl FnOnce(&mut Stream) -> Verdict) -> Action {
        if self.stream.is_none() {
            return Action::Continue;
        }
        self.run(f)
    }
}

impl Context for HttpStream {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(stream) = self.stream.as_mut() {
            stream.on_http_call_response(token_id, num_headers, body_size);
        }
    }
}

impl HttpContext for HttpStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.run(|s| s.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(|s| s.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.run(Stream::on_request_trailers)
    }

    // Without a runtime only our own fail-closed reply reaches the response path.
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
