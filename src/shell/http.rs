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
}

impl HttpStream {
    pub fn new(runtime: Option<Rc<Runtime>>) -> HttpStream {
        HttpStream { stream: runtime.map(Stream::new) }
    }

    fn run(&mut self, f: impl FnOnce(&mut Stream) -> Verdict) -> Action {
        match self.stream.as_mut() {
            Some(stream) => match f(stream) {
                Verdict::Continue => Action::Continue,
                Verdict::Pause => Action::Pause,
            },
            None => {
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

impl Context for HttpStream {}

impl HttpContext for HttpStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.run(Stream::on_request_headers)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.run(Stream::on_response_headers)
    }
}
